package grpcresolver_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/musterhq/muster/client/grpcresolver"
)

// TestResolver_NilResolver: a Builder without a client.Resolver
// (NewBuilder(nil), Register(nil)) fails the channel's resolution with an
// error, never with a panic in the resolver's goroutine that would end
// the process; run in a child process, so that such an end fails the
// test instead of ending it.
func TestResolver_NilResolver(t *testing.T) {
	if os.Getenv("MUSTER_TEST_CHILD") == "1" {
		conn, err := grpc.NewClient("muster:///greeter", grpc.WithResolvers(grpcresolver.NewBuilder(nil)),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			os.Exit(0)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		time.Sleep(200 * time.Millisecond)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestResolver_NilResolver$")
	cmd.Env = append(os.Environ(), "MUSTER_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("a channel over NewBuilder(nil) ended the process (%v):\n%.1500s", err, out)
	}
}
