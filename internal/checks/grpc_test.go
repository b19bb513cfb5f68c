package checks

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/musterhq/muster/api"
)

// serveGRPC starts a grpc-go server on 127.0.0.1, port 0, with the
// standard health service unless bare, and returns its health server
// (nil if bare) and port.
func serveGRPC(tb testing.TB, bare bool) (*health.Server, int) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	var hs *health.Server
	if !bare {
		hs = health.NewServer()
		healthpb.RegisterHealthServer(s, hs)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	tb.Cleanup(func() {
		s.Stop()
		<-done
	})
	_, port := hostPort(tb, ln.Addr().String())
	return hs, port
}

// TestProber_grpcHealth runs the gRPC check against grpc-go's own health
// server.
func TestProber_grpcHealth(t *testing.T) {
	hs, port := serveGRPC(t, false)
	hs.SetServingStatus("orders.v1.Orders", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus("pay.Pay", healthpb.HealthCheckResponse_SERVING)
	_, barePort := serveGRPC(t, true)
	_, httpPort := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	p := newProber(guard(t), nil)
	for _, tc := range []struct {
		name    string
		port    int
		service string
		ok      bool
		output  string
	}{
		{"server", port, "", true, "SERVING"},
		{"serving service", port, "pay.Pay", true, "SERVING"},
		{"not serving", port, "orders.v1.Orders", false, "NOT_SERVING"},
		{"unknown service", port, "nope.Nope", false, "gRPC 5 NOT_FOUND"}, // never the server's message
		{"no health service", barePort, "", false, "gRPC 12 UNIMPLEMENTED"},
		{"HTTP/1 server", httpPort, "", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Check{Type: api.CheckGRPC, GRPCService: tc.service, Interval: time.Second, Timeout: time.Second}
			ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
			defer cancel()
			res := p.probe(ctx, Target{Address: "127.0.0.1", Port: tc.port}, c)
			if res.ok != tc.ok || (tc.output != "" && res.output != tc.output) || res.output == "" {
				t.Errorf("probe = %v %q, want %v %q", res.ok, res.output, tc.ok, tc.output)
			}
			if strings.Contains(res.output, "127.0.0.1") {
				t.Errorf("output %q names the address", res.output)
			}
			t.Logf("%q", res.output)
		})
	}
	// The server going down is seen at the next probe.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	c := Check{Type: api.CheckGRPC, Interval: time.Second, Timeout: time.Second}
	if res := p.probe(context.Background(), Target{Address: "127.0.0.1", Port: port}, c); res.ok || res.output != "NOT_SERVING" {
		t.Errorf("after NOT_SERVING: probe = %v %q", res.ok, res.output)
	}
}

func TestHealthRequest(t *testing.T) {
	for _, tc := range []struct {
		service string
		want    string
	}{
		{"", "\x00\x00\x00\x00\x00"},
		{"a.B", "\x00\x00\x00\x00\x05\x0a\x03a.B"},
	} {
		if got := string(healthRequest(tc.service)); got != tc.want {
			t.Errorf("healthRequest(%q) = %q, want %q", tc.service, got, tc.want)
		}
	}
}

func TestHealthResponse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		data   string
		status uint64
		ok     bool
	}{
		{"serving", "\x00\x00\x00\x00\x02\x08\x01", serving, true},
		{"not serving", "\x00\x00\x00\x00\x02\x08\x02", notServing, true},
		{"empty message is UNKNOWN", "\x00\x00\x00\x00\x00", servingUnknown, true},
		{"unknown fields skipped", "\x00\x00\x00\x00\x16\x12\x02hi\x08\x01\x19\x00\x00\x00\x00\x00\x00\x00\x00\x25\x00\x00\x00\x00\x28\x07", serving, true},
		{"last value wins", "\x00\x00\x00\x00\x04\x08\x02\x08\x01", serving, true},
		{"compressed", "\x01\x00\x00\x00\x02\x08\x01", 0, false},
		{"short prefix", "\x00\x00\x00", 0, false},
		{"length too long", "\x00\x00\x00\x00\x03\x08\x01", 0, false},
		{"two messages", "\x00\x00\x00\x00\x02\x08\x01\x00\x00\x00\x00\x00", 0, false},
		{"truncated varint", "\x00\x00\x00\x00\x02\x08\x80", 0, false},
		{"bad wire type", "\x00\x00\x00\x00\x02\x0b\x01", 0, false},
		{"string overruns", "\x00\x00\x00\x00\x03\x12\x05h", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := healthResponse([]byte(tc.data))
			if (err == nil) != tc.ok || got != tc.status {
				t.Errorf("healthResponse = %d, %v; want %d, ok %v", got, err, tc.status, tc.ok)
			}
		})
	}
}

func TestGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{time.Second, "1000m"},
		{1500 * time.Microsecond, "2m"},
		{0, "1m"},
		{-time.Second, "1m"},
		{1000 * time.Hour, "99999999m"},
	} {
		if got := grpcTimeout(tc.d); got != tc.want {
			t.Errorf("grpcTimeout(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func FuzzHealthResponse(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x02\x08\x01"))
	f.Add([]byte("\x00\x00\x00\x00\x16\x12\x02hi\x08\x01\x19\x00\x00\x00\x00\x00\x00\x00\x00\x25\x00\x00\x00\x00\x28\x07"))
	f.Fuzz(func(t *testing.T, data []byte) {
		healthResponse(data) // must not panic
	})
}
