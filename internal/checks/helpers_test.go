package checks

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/verify"
)

// guard returns the verify callback's guard with the given allowlist;
// none is the default (loopback and private ranges).
func guard(tb testing.TB, allow ...string) *verify.Verifier {
	tb.Helper()
	cfg := verify.DefaultConfig()
	if len(allow) > 0 {
		var err error
		if cfg.Allow, err = verify.ParseAllow(allow); err != nil {
			tb.Fatal(err)
		}
	}
	v, err := verify.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// serveHTTP starts h on 127.0.0.1, port 0, and returns its address and
// port.
func serveHTTP(tb testing.TB, h http.Handler) (string, int) {
	tb.Helper()
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return hostPort(tb, srv.Listener.Addr().String())
}

func hostPort(tb testing.TB, addr string) (string, int) {
	tb.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	return ap.Addr().String(), int(ap.Port())
}

// closedPort returns a port on 127.0.0.1 that nothing listens on.
func closedPort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	_, port := hostPort(tb, ln.Addr().String())
	ln.Close()
	return port
}

// silent is a listener that accepts connections and never answers. It
// counts the connections it accepted.
type silent struct {
	ln       net.Listener
	accepted atomic.Int64
}

func listenSilent(tb testing.TB) *silent {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &silent{ln: ln}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return s
}

func (s *silent) port(tb testing.TB) int {
	_, p := hostPort(tb, s.ln.Addr().String())
	return p
}

// httpCheck returns an HTTP check of path with the given interval and
// timeout, and the default thresholds.
func httpCheck(path string, interval, timeout time.Duration) Check {
	return Check{Type: api.CheckHTTP, Path: path, Interval: interval, Timeout: timeout,
		FailuresBeforeCritical: DefaultFailuresBeforeCritical, SuccessesBeforePassing: DefaultSuccessesBeforePassing}
}

// waitFor polls cond until it holds, failing after d.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: still waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
