// Command grpc is muster's gRPC example: a tiny gRPC service that
// registers itself with muster (client/grpcservice), and a client that
// reaches it by name through muster (client/grpcresolver). The service's
// RPC is the standard health check, so that the example needs no
// generated code; the client prints which instance answered each call.
//
//	go build -o grpc-example ./examples/grpc
//	./grpc-example server --port 18888   # MUSTER_ADDR, MUSTER_KEY
//	./grpc-example client --calls 3      # MUSTER_ADDR
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/client/grpcresolver"
	"github.com/musterhq/muster/client/grpcservice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "grpc example:", err)
		os.Exit(1)
	}
}

// run runs the example's server or client, as args say.
func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: grpc server [--port N] | grpc client [--calls N]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	service := fs.String("service", "greeter", "the service name")
	switch args[0] {
	case "server":
		port := fs.Int("port", 18888, "the gRPC port, on 127.0.0.1; the registry's callback goes to the next one")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return serve(ctx, *service, *port, out)
	case "client":
		calls := fs.Int("calls", 3, "how many calls to make")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return call(ctx, *service, *calls, out)
	}
	return fmt.Errorf("unknown command %q: server or client", args[0])
}

// serve runs a gRPC server on 127.0.0.1:port, registered with muster as
// service (the callback answered on port+1), until ctx ends; then it
// drains, deregisters and stops.
func serve(ctx context.Context, service string, port int, out io.Writer) error {
	glis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	vlis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
	if err != nil {
		glis.Close()
		return err
	}
	srv := grpc.NewServer()
	reg, hs, err := grpcservice.Register(srv, client.ServiceConfig{
		Name: service, Address: "127.0.0.1", Port: port, VerifyPort: port + 1})
	if err != nil {
		glis.Close()
		vlis.Close()
		return err
	}
	verify := &http.Server{Handler: reg.VerifyHandler(), ReadHeaderTimeout: 5 * time.Second}
	go verify.Serve(vlis)
	defer verify.Close()
	go srv.Serve(glis)
	defer srv.Stop()
	go func() {
		if st, err := reg.WaitRegistered(ctx); err == nil {
			fmt.Fprintf(out, "registered %s as %s at 127.0.0.1:%d\n", service, st.InstanceID, port)
		}
	}()
	err = reg.Run(ctx) // drains and deregisters once ctx ends
	hs.Shutdown()
	return err
}

// call dials muster:///service and makes calls calls, printing who
// answered each.
func call(ctx context.Context, service string, calls int, out io.Writer) error {
	c, err := client.New(client.Config{})
	if err != nil {
		return err
	}
	res, err := client.NewResolver(client.ResolverConfig{Client: c})
	if err != nil {
		return err
	}
	defer res.Close()
	conn, err := grpc.NewClient("muster:///"+service, grpc.WithResolvers(grpcresolver.NewBuilder(res)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for range calls {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var p peer.Peer
		ans, err := hc.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		cancel()
		if err != nil {
			return fmt.Errorf("call %s: %w", service, err)
		}
		fmt.Fprintf(out, "called %s at %s: %s\n", service, p.Addr, ans.GetStatus())
	}
	return nil
}
