package grpcresolver_test

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/client/grpcresolver"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// grpcInstance is a grpc-go server (the standard health service) on a
// free port of 127.0.0.1, registered with muster as service, its host
// proven by a callback responder of its own (verify_port).
type grpcInstance struct {
	addr, id, token string
}

func startInstance(t *testing.T, h *testserver.Harness, service, secret string) grpcInstance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	port := ln.Addr().(*net.TCPAddr).Port
	proof := testutil.NewInstance(t, secret, verify.Proof)
	reg, err := h.Anon.Register(context.Background(), service, secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: port, VerifyPort: proof.Port(), TTL: "1h", Tags: []string{"grpc"}})
	if err != nil {
		t.Fatal(err)
	}
	return grpcInstance{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), id: reg.ID, token: proof.TokenOf(reg.ID)}
}

// setup starts a registry with one registered instance of greeter and a
// client.Resolver of it, closed when the test ends; secret is the key
// that registered it.
func setup(t *testing.T) (h *testserver.Harness, secret string, a grpcInstance, res *client.Resolver) {
	t.Helper()
	h = testserver.NewHarness(t, nil)
	secret = h.Key(t, "greeter").Secret
	a = startInstance(t, h, "greeter", secret)
	res, err := client.NewResolver(client.ResolverConfig{Client: h.Anon})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	return h, secret, a, res
}

// TestResolver_FollowsTheService: a channel dialled as muster:///greeter
// reaches the registered gRPC server; a second instance is used soon
// after it registers (within a second here; the log says how soon), and
// once the first is drained every call goes to the second.
func TestResolver_FollowsTheService(t *testing.T) {
	h, secret, a, res := setup(t)
	conn, err := grpc.NewClient("muster:///greeter", grpc.WithResolvers(grpcresolver.NewBuilder(res)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	call := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var p peer.Peer
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true)); err != nil {
			t.Fatalf("Check through muster:///greeter: %v", err)
		}
		return p.Addr.String()
	}
	if got := call(); got != a.addr {
		t.Fatalf("the call reached %s, want the registered instance %s", got, a.addr)
	}

	b := startInstance(t, h, "greeter", secret)
	registered := time.Now()
	for {
		if call() == b.addr {
			t.Logf("the second instance was called %s after it registered", time.Since(registered).Round(time.Millisecond))
			break
		}
		if time.Since(registered) > time.Second {
			t.Fatal("the second instance was not called within a second of its registration")
		}
	}

	if _, err := h.Anon.Drain(context.Background(), a.id, a.token); err != nil {
		t.Fatal(err)
	}
	drained := time.Now()
	for time.Since(drained) < time.Second {
		call()
	}
	for range 20 {
		if got := call(); got != b.addr {
			t.Fatalf("a call a second after the first instance drained reached %s", got)
		}
	}
}

// TestResolver_Attributes: each address carries the instance's ID,
// quality and tags.
func TestResolver_Attributes(t *testing.T) {
	_, _, a, res := setup(t)
	cc := &recorder{states: make(chan resolver.State, 4)}
	r, err := grpcresolver.NewBuilder(res).Build(resolver.Target{URL: *mustURL(t, "muster:///greeter")}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	select {
	case st := <-cc.states:
		if len(st.Endpoints) != 1 || len(st.Endpoints[0].Addresses) != 1 {
			t.Fatalf("state: %+v", st)
		}
		addr := st.Endpoints[0].Addresses[0]
		id, _ := grpcresolver.InstanceIDOf(addr)
		q, ok := grpcresolver.QualityOf(addr)
		tags := grpcresolver.TagsOf(addr)
		if addr.Addr != a.addr || id != a.id || !ok || q < 0 || q > 1 || len(tags) != 1 || tags[0] != "grpc" {
			t.Errorf("address %s: id %q, quality %v (%v), tags %v", addr.Addr, id, q, ok, tags)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no state")
	}
	if _, err := grpcresolver.NewBuilder(res).Build(resolver.Target{URL: *mustURL(t, "muster://host/greeter")}, cc, resolver.BuildOptions{}); err == nil {
		t.Error("a target with an authority was accepted")
	}
}

// recorder is a resolver.ClientConn that keeps the states it is given.
type recorder struct {
	states chan resolver.State
}

func (r *recorder) UpdateState(s resolver.State) error {
	select {
	case r.states <- s:
	default:
	}
	return nil
}
func (r *recorder) ReportError(error)             {}
func (r *recorder) NewAddress([]resolver.Address) {}
func (r *recorder) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestResolver_NoInstanceSaysSo: a call to a service with no passing
// instance fails with Unavailable naming the service, not with the
// balancer's own words for an empty set; and once its only instance
// drains, calls say so too.
func TestResolver_NoInstanceSaysSo(t *testing.T) {
	h, _, a, res := setup(t)
	for _, target := range []string{"nothing", "greeter"} {
		conn, err := grpc.NewClient("muster:///"+target, grpc.WithResolvers(grpcresolver.NewBuilder(res)),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if target == "greeter" {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			// The instance drains: no passing instance is left.
			if _, err := h.Anon.Drain(context.Background(), a.id, a.token); err != nil {
				t.Fatal(err)
			}
		}
		if target == "nothing" {
			// A call that waits for ready waits for an instance, and
			// fails only at its deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
			cancel()
			if status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("a call that waits for ready, with no instance: %v; want it to wait until its deadline", err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "no passing instance of "+target) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("muster:///%s: %v; want Unavailable, no passing instance", target, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
