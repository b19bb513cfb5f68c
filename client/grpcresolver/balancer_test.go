package grpcresolver_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/client/grpcresolver"
)

// The tests of the policy count the calls each server gets over a run of
// calls made one after another, once every server is READY. The policy's
// picks are a deterministic schedule, so each count is within a couple of
// its share of the run; the tests allow 20 in 2,000 (1%), which no
// timing can exceed, and which is far below the differences they look
// for.
const (
	runCalls  = 2000
	tolerance = 20
)

// startServer starts a grpc-go server with the standard health service on
// a free port of 127.0.0.1, stopped when the test ends, and returns its
// address.
func startServer(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	tb.Cleanup(s.Stop)
	return ln.Addr().String()
}

// withQuality is the address of the server at addr as the muster resolver
// makes it for an instance of quality q (its ID the address).
func withQuality(tb testing.TB, addr string, q float64) resolver.Address {
	tb.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		tb.Fatal(err)
	}
	a := grpcresolver.AddressOf(client.Instance{Instance: api.Instance{ID: addr, Address: host, Port: p, Quality: q}})
	if a.Addr != addr {
		tb.Fatalf("the resolver made %s of %s", a.Addr, addr)
	}
	return a
}

func stateOf(addrs ...resolver.Address) resolver.State {
	eps := make([]resolver.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = resolver.Endpoint{Addresses: []resolver.Address{a}}
	}
	return resolver.State{Endpoints: eps}
}

// dialManual dials a channel whose addresses come from grpc-go's manual
// resolver, starting with state, under the policy of the muster
// resolver's service config (the manual resolver gives none, so the
// channel's default applies). The channel is closed when the test ends.
func dialManual(tb testing.TB, state resolver.State) (*grpc.ClientConn, *manual.Resolver) {
	tb.Helper()
	r := manual.NewBuilderWithScheme("qualitytest")
	r.InitialState(state)
	conn, err := grpc.NewClient(r.Scheme()+":///greeter", grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(grpcresolver.DefaultServiceConfig),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn, r
}

// call makes one health check through conn and returns the address of the
// server that answered.
func call(tb testing.TB, conn *grpc.ClientConn) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true)); err != nil {
		tb.Fatalf("Check: %v", err)
	}
	return p.Addr.String()
}

// run makes n calls through conn and counts them by server.
func run(tb testing.TB, conn *grpc.ClientConn, n int) map[string]int {
	tb.Helper()
	got := map[string]int{}
	for range n {
		got[call(tb, conn)]++
	}
	return got
}

// warm makes calls through conn until each of addrs has answered one, so
// that all are READY and the channel's picker holds them all; within 10 s.
func warm(tb testing.TB, conn *grpc.ClientConn, addrs ...string) {
	tb.Helper()
	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < len(addrs) {
		if time.Now().After(deadline) {
			tb.Fatalf("within 10 s, calls reached only %v of %v", seen, addrs)
		}
		seen[call(tb, conn)] = true
	}
}

// expect checks that each server got its share of a run of runCalls, for
// servers of the given weights, within tolerance.
func expect(t *testing.T, got map[string]int, weights map[string]float64) {
	t.Helper()
	t.Logf("weights %v: calls %v", weights, got)
	total := 0.0
	for _, w := range weights {
		total += w
	}
	for addr, w := range weights {
		want := runCalls * w / total
		if d := float64(got[addr]) - want; d > tolerance || d < -tolerance {
			t.Errorf("%s (weight %v) got %d of %d calls, want %.0f ± %d; all: %v", addr, w, got[addr], runCalls, want, tolerance, got)
		}
	}
	sum := 0
	for addr, n := range got {
		if _, ok := weights[addr]; !ok {
			t.Errorf("%s, not among the servers, got %d calls", addr, n)
		}
		sum += n
	}
	if sum != runCalls {
		t.Errorf("%d calls counted, want %d", sum, runCalls)
	}
}

// TestBalancer_PrefersHigherQuality: of servers of quality 1, 0.5 and 0,
// the first gets twice the calls of the second, and the third, weighed at
// the floor, still gets 1 in 31 (64 of 2,000).
func TestBalancer_PrefersHigherQuality(t *testing.T) {
	hi, mid, lo := startServer(t), startServer(t), startServer(t)
	conn, _ := dialManual(t, stateOf(withQuality(t, hi, 1), withQuality(t, mid, 0.5), withQuality(t, lo, 0)))
	warm(t, conn, hi, mid, lo)
	got := run(t, conn, runCalls)
	expect(t, got, map[string]float64{hi: 1, mid: 0.5, lo: grpcresolver.WeightFloor})
	if got[lo] == 0 {
		t.Error("the server of quality 0 got no call")
	}
}

// TestBalancer_EqualQualities: servers of equal quality take turns.
func TestBalancer_EqualQualities(t *testing.T) {
	a, b, c := startServer(t), startServer(t), startServer(t)
	conn, _ := dialManual(t, stateOf(withQuality(t, a, 0.8), withQuality(t, b, 0.8), withQuality(t, c, 0.8)))
	warm(t, conn, a, b, c)
	expect(t, run(t, conn, runCalls), map[string]float64{a: 1, b: 1, c: 1})
}

// TestBalancer_NoQuality: an address without a quality (not made by the
// muster resolver) weighs DefaultQuality, 0.5: as much as one of quality
// 0.5, half as much as one of quality 1.
func TestBalancer_NoQuality(t *testing.T) {
	if grpcresolver.DefaultQuality != 0.5 {
		t.Fatalf("DefaultQuality is %v; the docs say 0.5", grpcresolver.DefaultQuality)
	}
	hi, half, none := startServer(t), startServer(t), startServer(t)
	conn, _ := dialManual(t, stateOf(withQuality(t, hi, 1), withQuality(t, half, 0.5), resolver.Address{Addr: none}))
	warm(t, conn, hi, half, none)
	expect(t, run(t, conn, runCalls), map[string]float64{hi: 1, half: 0.5, none: 0.5})
}

// TestBalancer_ResolverUpdates: an address the resolver leaves out gets
// no call from then on, and a quality the resolver changes weighs from
// then on, on the connection already up.
func TestBalancer_ResolverUpdates(t *testing.T) {
	a, b, c := startServer(t), startServer(t), startServer(t)
	conn, r := dialManual(t, stateOf(withQuality(t, a, 1), withQuality(t, b, 1), withQuality(t, c, 0.5)))
	warm(t, conn, a, b, c)
	expect(t, run(t, conn, runCalls), map[string]float64{a: 1, b: 1, c: 0.5})

	// UpdateState returns once the channel's policy has its new picker.
	r.UpdateState(stateOf(withQuality(t, a, 1), withQuality(t, c, 0.5)))
	expect(t, run(t, conn, runCalls), map[string]float64{a: 1, c: 0.5})

	r.UpdateState(stateOf(withQuality(t, a, 0.25), withQuality(t, c, 1)))
	expect(t, run(t, conn, runCalls), map[string]float64{a: 0.25, c: 1})
}

// TestResolver_BalancesByQuality: through muster:///greeter, with two
// instances registered in a real registry, both of quality 0.5 (newly
// registered) when the channel is built, calls alternate; once one has
// heartbeaten eight times at once (quality 1), which changes no instance
// and so brings no set from the Watch, the resolver's look at the
// qualities hands it over, and it gets two calls of every three. A
// channel that opts out (WithDisableServiceConfig, RoundRobinServiceConfig)
// alternates all the same.
func TestResolver_BalancesByQuality(t *testing.T) {
	h, secret, a, res := setup(t)
	b := startInstance(t, h, "greeter", secret)
	dial := func(opts ...grpc.DialOption) *grpc.ClientConn {
		t.Helper()
		opts = append(opts, grpc.WithResolvers(grpcresolver.NewBuilderRefreshing(res, 100*time.Millisecond)),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		conn, err := grpc.NewClient("muster:///greeter", opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	quality := func(id string) float64 {
		t.Helper()
		got, err := h.Anon.Lookup(context.Background(), "greeter")
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range got.Instances {
			if in.ID == id {
				return in.Quality
			}
		}
		t.Fatalf("no instance %s in %+v", id, got)
		return 0
	}
	if qa, qb := quality(a.id), quality(b.id); qa != 0.5 || qb != 0.5 {
		t.Fatalf("qualities %v and %v before any heartbeat, want 0.5", qa, qb)
	}

	conn := dial()
	warm(t, conn, a.addr, b.addr)
	expect(t, run(t, conn, runCalls), map[string]float64{a.addr: 1, b.addr: 1})

	for range 8 {
		if _, err := h.Anon.Heartbeat(context.Background(), a.id, a.token); err != nil {
			t.Fatal(err)
		}
	}
	if qa, qb := quality(a.id), quality(b.id); qa != 1 || qb != 0.5 {
		t.Fatalf("qualities %v and %v after a's heartbeats, want 1 and 0.5", qa, qb)
	}
	// The Resolver's cache answers Lookup for MaxAge (2 s) after the
	// stream's last message; the channel has the new qualities soon after.
	changed := time.Now()
	for {
		if got := run(t, conn, 300); got[a.addr] > 180 {
			t.Logf("a got %v of 300 calls %s after its heartbeats", got[a.addr], time.Since(changed).Round(time.Millisecond))
			break
		}
		if time.Since(changed) > 10*time.Second {
			t.Fatal("10 s after a's heartbeats, calls still alternate")
		}
	}
	expect(t, run(t, conn, runCalls), map[string]float64{a.addr: 1, b.addr: 0.5})

	rr := dial(grpc.WithDisableServiceConfig(), grpc.WithDefaultServiceConfig(grpcresolver.RoundRobinServiceConfig))
	warm(t, rr, a.addr, b.addr)
	expect(t, run(t, rr, runCalls), map[string]float64{a.addr: 1, b.addr: 1})
}
