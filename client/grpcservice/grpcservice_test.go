package grpcservice_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/client/grpcservice"
	"github.com/musterhq/muster/internal/testserver"
)

// TestRegister_HealthCheckFollowsTheServer: a grpc-go server registered
// through Register is verified (its callback on its VerifyPort), passes
// its gRPC health check, turns critical in the registry once it reports
// NOT_SERVING, and passing again once it serves.
func TestRegister_HealthCheckFollowsTheServer(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	k := h.Key(t, "greeter")
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	vlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	reg, hs, err := grpcservice.Register(srv, client.ServiceConfig{
		Name: "greeter", Address: "127.0.0.1", Port: glis.Addr().(*net.TCPAddr).Port,
		VerifyPort: vlis.Addr().(*net.TCPAddr).Port, Registry: h.Srv.URL(), Key: k.Secret, TTL: time.Minute,
		Checks: []api.CheckDecl{{Type: api.CheckGRPC, Interval: "1s", FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(glis)
	defer srv.Stop()
	vs := &http.Server{Handler: reg.VerifyHandler()}
	go vs.Serve(vlis)
	defer vs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if _, err := reg.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	status := func() (string, []api.CheckState) {
		res, err := h.Anon.Lookup(context.Background(), "greeter", client.WithStatus("any"))
		if err != nil || len(res.Instances) != 1 {
			t.Fatalf("lookup: %+v, %v", res, err)
		}
		return res.Instances[0].Status, res.Instances[0].Checks
	}
	wait := func(want string) {
		t.Helper()
		testserver.Eventually(t, 10*time.Second, "the instance "+want, func() bool {
			st, checks := status()
			return st == want && len(checks) == 1 && checks[0].Type == api.CheckGRPC && checks[0].LastRunMS >= 0
		})
	}
	wait(api.StatusPassing)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	wait(api.StatusCritical)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	wait(api.StatusPassing)
}

// TestRegister_NeedsAVerifyPort: a gRPC port cannot answer the HTTP
// callback, so Register refuses a configuration without VerifyPort.
func TestRegister_NeedsAVerifyPort(t *testing.T) {
	if _, _, err := grpcservice.Register(grpc.NewServer(), client.ServiceConfig{Name: "greeter", Address: "127.0.0.1", Port: 9090}); err == nil {
		t.Fatal("Register without VerifyPort succeeded")
	}
}
