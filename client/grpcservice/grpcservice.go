// Package grpcservice is the service side of gRPC with muster: it serves
// the standard gRPC health protocol on a grpc-go server and registers the
// service with an active gRPC health check, so that the registry marks an
// instance critical when its server reports NOT_SERVING or stops
// answering, as well as when its heartbeats stop.
//
//	srv := grpc.NewServer()
//	reg, hs, err := grpcservice.Register(srv, client.ServiceConfig{
//		Name: "fetch_url", Address: "10.0.0.7", Port: 9090, VerifyPort: 9091,
//	})
//	go http.ListenAndServe(":9091", reg.VerifyHandler()) // the callback is HTTP
//	go srv.Serve(lis)
//	err = reg.Run(ctx) // hs.Shutdown() as it stops turns the check critical
//
// The registry's callback is HTTP, which a gRPC port does not answer: the
// service serves reg.VerifyHandler on a port of its own (VerifyPort), as
// here, or runs the muster register sidecar. It imports only the SDK and
// grpc-go.
package grpcservice

import (
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// Register serves the standard health service on srv (its overall status
// SERVING, for the empty service name) and returns a Registration of cfg
// with a gRPC health check on cfg's port added, unless cfg declares one
// already (with its own interval and thresholds). The health server is
// returned so that the service can report NOT_SERVING (SetServingStatus)
// and Shutdown as it stops. Call Register before srv.Serve: grpc-go takes
// services only before it serves. A server that already serves the
// health service is refused with an error (grpc-go would end the process
// on a second one): give such a server a Registration with a grpc check.
func Register(srv *grpc.Server, cfg client.ServiceConfig) (*client.Registration, *health.Server, error) {
	if srv == nil {
		return nil, nil, errors.New("grpcservice: no grpc.Server")
	}
	if _, ok := srv.GetServiceInfo()[healthpb.Health_ServiceDesc.ServiceName]; ok {
		// grpc-go ends the process on a second registration of a service.
		return nil, nil, errors.New("grpcservice: the server already serves grpc.health.v1.Health: register it with client.NewRegistration and a check of type grpc instead, which asks that health service")
	}
	if cfg.VerifyPort == 0 {
		return nil, nil, errors.New("grpcservice: a gRPC port cannot answer the registry's HTTP callback: set VerifyPort, and serve the Registration's VerifyHandler there")
	}
	hasGRPC := false
	for _, c := range cfg.Checks {
		if c.Type == api.CheckGRPC {
			hasGRPC = true
		}
	}
	if !hasGRPC {
		cfg.Checks = append(append([]api.CheckDecl(nil), cfg.Checks...), api.CheckDecl{Type: api.CheckGRPC, Interval: "5s"})
	}
	reg, err := client.NewRegistration(cfg)
	if err != nil {
		return nil, nil, err
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	return reg, hs, nil
}
