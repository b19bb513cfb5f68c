package checks

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
)

func TestProber_httpGet(t *testing.T) {
	var redirected atomic.Int64
	_, otherPort := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirected.Add(1)
	}))
	var gotURI, gotUA atomic.Value
	addr, port := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotURI.Store(r.URL.RequestURI())
		gotUA.Store(r.UserAgent())
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, "ok\n")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "down: \x1b[31mdisk\x1b[0m\nfull\x00 \xff!")
		case "/missing":
			http.NotFound(w, r)
		case "/redirect":
			http.Redirect(w, r, "http://127.0.0.1:"+itoa(otherPort)+"/", http.StatusFound)
		case "/chunked":
			io.WriteString(w, "chunk1 ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "chunk2")
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusMovedPermanently)
		case "/huge", "/huge-error":
			if r.URL.Path == "/huge-error" {
				w.WriteHeader(http.StatusInternalServerError)
			}
			chunk := []byte(strings.Repeat("x", 64<<10))
			for range 1024 { // 64 MiB, unless the probe hangs up first
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}
	}))
	p := newProber(guard(t), nil)
	for _, tc := range []struct {
		path   string
		ok     bool
		output string
	}{
		{"/ok", true, "HTTP 200 OK"},
		{"/ok?verbose=1&x=%20", true, "HTTP 200 OK"},
		{"/empty", true, "HTTP 204 No Content"},
		{"/down", false, "HTTP 503 Service Unavailable"}, // the body is never shown
		{"/missing", false, "HTTP 404 Not Found"},
		{"/redirect", false, "HTTP 302: redirects are not followed"},
		{"/moved", false, "HTTP 301: redirects are not followed"},
		{"/chunked", true, "HTTP 200 OK"},
		{"/huge", true, "HTTP 200 OK"},
		{"/huge-error", false, "HTTP 500 Internal Server Error"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c := httpCheck(tc.path, time.Second, time.Second)
			start := time.Now()
			res := p.probe(context.Background(), Target{Address: addr, Port: port}, c)
			if res.ok != tc.ok || res.output != tc.output {
				t.Errorf("probe = %v %q, want %v %q", res.ok, res.output, tc.ok, tc.output)
			}
			if len(res.output) > MaxOutput {
				t.Errorf("output is %d bytes, more than %d", len(res.output), MaxOutput)
			}
			if took := time.Since(start); took > 900*time.Millisecond {
				t.Errorf("probe took %s", took)
			}
			if got, _ := gotURI.Load().(string); got != tc.path {
				t.Errorf("server saw %q, want %q", got, tc.path)
			}
			if got, _ := gotUA.Load().(string); got != userAgent {
				t.Errorf("User-Agent %q", got)
			}
		})
	}
	if n := redirected.Load(); n != 0 {
		t.Errorf("the redirect's target was contacted %d times", n)
	}
}

// TestProber_httpAnswers: what the HTTP probe makes of answers that
// net/http's server would not give.
func TestProber_httpAnswers(t *testing.T) {
	p := newProber(guard(t), nil)
	for _, tc := range []struct {
		name   string
		answer string
		ok     bool
		output string
	}{
		{"1xx first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, "HTTP 200 OK"},
		{"HTTP/1.0 until close", "HTTP/1.0 200 OK\r\n\r\nlegacy", true, "HTTP 200 OK"},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", false, "HTTP 101 Switching Protocols"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n", false, "malformed HTTP answer"},
		{"closed at once", "", false, "connection closed before a complete answer"},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", false, "HTTP 200 but connection closed before a complete answer"},
		{"endless headers", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("a", 100)+"\r\n", 10_000), false, "HTTP answer headers too large"},
		{"endless 1xx", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 10_000), false, "HTTP answer headers too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := answerOnce(t, tc.answer)
			res := p.probe(context.Background(), Target{Address: "127.0.0.1", Port: port}, httpCheck("/", time.Second, time.Second))
			if res.ok != tc.ok || res.output != tc.output {
				t.Errorf("probe = %v %q, want %v %q", res.ok, res.output, tc.ok, tc.output)
			}
		})
	}
}

// answerOnce serves one connection on 127.0.0.1: it reads the request's
// head, writes answer and closes.
func answerOnce(tb testing.TB, answer string) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		io.WriteString(c, answer)
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
	})
	_, port := hostPort(tb, ln.Addr().String())
	return port
}

// TestProber_timeout: a probe of a server that never answers, or stops
// half-way through its answer, ends at the check's timeout.
func TestProber_timeout(t *testing.T) {
	s := listenSilent(t)
	release := make(chan struct{})
	addr, stallPort := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "starting")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	// Before the server's Close, which waits for its handlers: a
	// handler that never reads the request body (the HTTP/2 preface of
	// the gRPC probe is one) does not see its client go.
	t.Cleanup(func() { close(release) })
	const timeout = 200 * time.Millisecond
	p := newProber(guard(t), nil)
	for _, tc := range []struct {
		name   string
		port   int
		check  Check
		output string
	}{
		{"http silent", s.port(t), httpCheck("/", time.Second, timeout), "timed out after 200ms"},
		{"http stalled body", stallPort, httpCheck("/", time.Second, timeout), "HTTP 200 but timed out after 200ms"},
		{"grpc silent", s.port(t), Check{Type: api.CheckGRPC, Interval: time.Second, Timeout: timeout}, "timed out after 200ms"},
		{"grpc on a stalled HTTP/1 server", stallPort, Check{Type: api.CheckGRPC, Interval: time.Second, Timeout: timeout}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tc.check.Timeout)
			defer cancel()
			start := time.Now()
			res := p.probe(ctx, Target{Address: addr, Port: tc.port}, tc.check)
			took := time.Since(start)
			if res.ok || (tc.output != "" && res.output != tc.output) || res.output == "" {
				t.Errorf("probe = %v %q, want a failure %q", res.ok, res.output, tc.output)
			}
			if took > timeout+time.Second {
				t.Errorf("probe took %s with a timeout of %s", took, timeout)
			}
			t.Logf("%s: %q after %s", tc.name, res.output, took.Round(time.Millisecond))
		})
	}
}

// TestProber_closedPort: every type fails on a port nothing listens on.
func TestProber_closedPort(t *testing.T) {
	port := closedPort(t)
	p := newProber(guard(t), nil)
	for _, typ := range []string{api.CheckHTTP, api.CheckTCP, api.CheckGRPC} {
		c := Check{Type: typ, Interval: time.Second, Timeout: time.Second}
		if typ == api.CheckHTTP {
			c.Path = "/"
		}
		res := p.probe(context.Background(), Target{Address: "127.0.0.1", Port: port}, c)
		if res.ok || res.output != "connection refused" {
			t.Errorf("%s: probe = %v %q, want a failure \"connection refused\"", typ, res.ok, res.output)
		}
	}
}

// TestProber_notAllowed: with an allowlist that excludes loopback, no
// probe of any type connects to a loopback listener, whether the target
// is an IP address or a host name that resolves to one.
func TestProber_notAllowed(t *testing.T) {
	s := listenSilent(t)
	p := newProber(guard(t, "10.0.0.0/8"), nil)
	for _, typ := range []string{api.CheckHTTP, api.CheckTCP, api.CheckGRPC} {
		for _, host := range []string{"127.0.0.1", "localhost", "::1"} {
			c := Check{Type: typ, Interval: time.Second, Timeout: time.Second}
			if typ == api.CheckHTTP {
				c.Path = "/"
			}
			res := p.probe(context.Background(), Target{Address: host, Port: s.port(t)}, c)
			if res.ok || !strings.HasPrefix(res.output, "address not allowed") {
				t.Errorf("%s %s: probe = %v %q, want a refusal", typ, host, res.ok, res.output)
			}
		}
	}
	if n := s.accepted.Load(); n != 0 {
		t.Errorf("the listener accepted %d connections", n)
	}
}

// TestProber_port: a check's own port overrides the instance's.
func TestProber_port(t *testing.T) {
	addr, port := serveHTTP(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	c := Check{Type: api.CheckTCP, Port: port, Interval: time.Second, Timeout: time.Second}
	if res := newProber(guard(t), nil).probe(context.Background(), Target{Address: addr, Port: closedPort(t)}, c); !res.ok || res.output != "connected" {
		t.Errorf("probe = %v %q", res.ok, res.output)
	}
}

func TestExcerpt(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"ok", "ok"},
		{"  two\r\n\tlines  \n", "two lines"},
		{"be\a e\x1b\x00", "be e"},
		{"bad \xff\xfe utf8", "bad utf8"},
		{"bidi \u202eevil", "bidi evil"},
		{"hé ✓", "hé ✓"},
		{strings.Repeat("a", 10), "aaaaaaaaaa"},
		{strings.Repeat("a", 11), "aaaaaaa…"},
		{strings.Repeat("é", 6), "ééé…"},
		{"abcdefg   \x00  ", "abcdefg"},
	} {
		if got := excerpt(tc.in, 10); got != tc.want {
			t.Errorf("excerpt(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestProber_noLeak: a probe leaves no goroutine or connection behind
// (the registry keeps nothing per instance between probes), over TLS
// too.
func TestProber_noLeak(t *testing.T) {
	_, grpcPort := serveGRPC(t, false)
	addr, httpPort := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	httpsPort := serveHTTPS(t, selfSigned(t), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil)
	grpcsPort := serveGRPCTLS(t, selfSigned(t))
	p := newProber(guard(t), nil)
	probes := []struct {
		port   int
		scheme string
		c      Check
	}{
		{httpPort, "http", httpCheck("/", time.Second, time.Second)},
		{httpPort, "http", Check{Type: api.CheckTCP, Interval: time.Second, Timeout: time.Second}},
		{grpcPort, "http", Check{Type: api.CheckGRPC, Interval: time.Second, Timeout: time.Second}},
		{httpsPort, "https", httpCheck("/", time.Second, time.Second)},
		{grpcsPort, "https", Check{Type: api.CheckGRPC, Interval: time.Second, Timeout: time.Second}},
	}
	run := func() {
		for _, pr := range probes {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			tg := Target{Address: addr, Port: pr.port, Scheme: pr.scheme, AnyCertificate: true}
			if res := p.probe(ctx, tg, pr.c); !res.ok {
				t.Fatalf("%s: %s", pr.c.Type, res.output)
			}
			cancel()
		}
	}
	run() // servers' first connections start their goroutines
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 20 {
		run()
	}
	waitFor(t, 5*time.Second, "goroutines to settle", func() bool { return runtime.NumGoroutine() <= before })
}
