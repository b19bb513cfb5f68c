package grpcservice_test

import (
	"os"
	"os/exec"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/client/grpcservice"
)

// TestRegister_ServerWithAHealthServiceAlready: Register on a server that
// already serves grpc.health.v1.Health (or called twice on one server)
// returns an error, where grpc-go's RegisterService would end the whole
// process (logger.Fatalf); run in a child process, so that such an end
// fails the test instead of ending it.
func TestRegister_ServerWithAHealthServiceAlready(t *testing.T) {
	if os.Getenv("MUSTER_TEST_CHILD") == "1" {
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, health.NewServer())
		_, _, err := grpcservice.Register(srv, client.ServiceConfig{
			Name: "greeter", Address: "127.0.0.1", Port: 9090, VerifyPort: 9091, Registry: "http://127.0.0.1:1", Key: "k"})
		if err == nil {
			os.Exit(3) // accepted without a word: a second health service was not registered
		}
		os.Exit(0) // refused with an error: fine
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRegister_ServerWithAHealthServiceAlready$")
	cmd.Env = append(os.Environ(), "MUSTER_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Register on a server that already serves the health service ended the process (%v):\n%s", err, out)
	}
}
