package leanhttp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen is what the test handler tells of a request, in its answer.
type seen struct {
	By     string            `json:"by"` // "lean" or "net/http"
	Method string            `json:"method"`
	Path   string            `json:"path"`
	Host   string            `json:"host"`
	Header map[string]string `json:"header"`
	Body   string            `json:"body"`
	Remote string            `json:"remote"`
	Conn   bool              `json:"conn"` // the ConnContext value was there
}

type connMark struct{}

// echo answers every request with what it saw, and tells which server
// read it: net/http puts itself in the request's context, this package
// does not.
func echo(w http.ResponseWriter, r *http.Request) {
	s := seen{By: "lean", Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: map[string]string{}, Remote: r.RemoteAddr,
		Conn: r.Context().Value(connMark{}) != nil}
	if r.Context().Value(http.ServerContextKey) != nil {
		s.By = "net/http"
	}
	for k := range r.Header {
		s.Header[k] = r.Header.Get(k)
	}
	b, _ := io.ReadAll(r.Body)
	s.Body = string(b)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s)
}

// beatPath is the test route: PUT /beat/{one segment}.
func beatPath(p []byte) bool {
	rest, ok := bytes.CutPrefix(p, []byte("/beat/"))
	return ok && len(rest) > 0 && bytes.IndexByte(rest, '/') < 0
}

// testConfig is the test route over h with short times.
func testConfig(h http.Handler) Config {
	cfg := DefaultConfig()
	cfg.Handler, cfg.Method, cfg.Prefix, cfg.Path = h, "PUT", "/beat/", beatPath
	cfg.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connMark{}, true)
	}
	cfg.ReadHeaderTimeout, cfg.IdleTimeout, cfg.WriteTimeout = 2*time.Second, 5*time.Second, 5*time.Second
	return cfg
}

// serve starts a Listener on 127.0.0.1:0 with cfg, and a net/http server
// with the same handler on it; both stop when the test ends.
func serve(tb testing.TB, cfg Config) (*Listener, *http.Server) {
	tb.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l := New(inner, cfg)
	srv := &http.Server{Handler: cfg.Handler, ReadHeaderTimeout: cfg.ReadHeaderTimeout, ConnContext: cfg.ConnContext}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		l.Wait(ctx)
		<-done
	})
	return l, srv
}

// client is a raw connection to a server and a reader of its answers.
type client struct {
	tb testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(tb testing.TB, l *Listener) *client {
	tb.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{tb: tb, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(raw string) {
	c.tb.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.tb.Fatal(err)
	}
}

// answer reads the next answer, and what the echo handler said in it.
func (c *client) answer() (*http.Response, seen) {
	c.tb.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.tb.Fatalf("reading an answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatal(err)
	}
	var s seen
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(b, &s); err != nil {
			c.tb.Fatalf("answer %q: %v", b, err)
		}
	}
	return resp, s
}

const beat = "PUT /beat/i1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: t\r\nAuthorization: Bearer tok\r\nContent-Length: 0\r\n\r\n"

func TestListener_AnswersTheStrictShape(t *testing.T) {
	l, _ := serve(t, testConfig(http.HandlerFunc(echo)))
	c := dial(t, l)
	for i := range 3 { // one connection, keep-alive
		c.send(beat)
		resp, s := c.answer()
		if resp.StatusCode != 200 || s.By != "lean" {
			t.Fatalf("request %d: status %d, read by %q; want 200 from lean", i, resp.StatusCode, s.By)
		}
		if s.Method != "PUT" || s.Path != "/beat/i1" || s.Host != "127.0.0.1" || s.Header["Authorization"] != "Bearer tok" ||
			s.Header["User-Agent"] != "t" || s.Header["Host"] != "" || !s.Conn || s.Remote != c.c.LocalAddr().String() {
			t.Fatalf("the handler saw %+v", s)
		}
		if resp.ContentLength <= 0 || resp.Header.Get("Date") == "" || resp.Close {
			t.Fatalf("answer headers %v, length %d, close %v", resp.Header, resp.ContentLength, resp.Close)
		}
	}
}

// TestListener_HandsOffTheRest: every request not in the strict shape is
// answered by net/http, and so is every later request on its connection.
func TestListener_HandsOffTheRest(t *testing.T) {
	l, _ := serve(t, testConfig(http.HandlerFunc(echo)))
	cases := []struct{ name, raw, body string }{
		{"another method", "GET /beat/i1 HTTP/1.1\r\nHost: h\r\n\r\n", ""},
		{"another path", "PUT /other HTTP/1.1\r\nHost: h\r\n\r\n", ""},
		{"a path the route refuses", "PUT /beat/a/b HTTP/1.1\r\nHost: h\r\n\r\n", ""},
		{"a query", "PUT /beat/i1?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", ""},
		{"an escape", "PUT /beat/i%31 HTTP/1.1\r\nHost: h\r\n\r\n", ""},
		{"HTTP/1.0", "PUT /beat/i1 HTTP/1.0\r\nHost: h\r\n\r\n", ""},
		{"a header of its own", "PUT /beat/i1 HTTP/1.1\r\nHost: h\r\nX-Mine: 1\r\n\r\n", ""},
		{"a body", "PUT /beat/i1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", "hi"},
		{"chunked", "PUT /beat/i1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", "hi"},
		{"Connection: close", "PUT /beat/i1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", ""},
		{"a header twice", "PUT /beat/i1 HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\n\r\n", ""},
		{"a folded header", "PUT /beat/i1 HTTP/1.1\r\nHost: h\r\nAccept: a\r\n b\r\n\r\n", ""},
		{"bare LF", "PUT /beat/i1 HTTP/1.1\nHost: h\n\n", ""},
		{"a byte over 0x7f", "PUT /beat/i1 HTTP/1.1\r\nHost: h\r\nUser-Agent: \xe9\r\n\r\n", ""},
		{"a head over 4 KiB", "PUT /beat/i1 HTTP/1.1\r\nHost: h\r\nUser-Agent: " + strings.Repeat("a", 5000) + "\r\n\r\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, l)
			c.send(beat) // answered here first
			if _, s := c.answer(); s.By != "lean" {
				t.Fatalf("the first beat was read by %q", s.By)
			}
			c.send(tc.raw)
			resp, s := c.answer()
			if s.By != "net/http" {
				t.Fatalf("status %d, read by %q; want net/http", resp.StatusCode, s.By)
			}
			if s.Body != tc.body {
				t.Fatalf("net/http read body %q; want %q", s.Body, tc.body)
			}
			if resp.Close {
				return
			}
			c.send(beat) // the connection is net/http's from now on
			if _, s := c.answer(); s.By != "net/http" {
				t.Fatalf("a beat after the hand-off was read by %q", s.By)
			}
		})
	}
	t.Run("malformed", func(t *testing.T) {
		// net/http's answer to what it cannot parse, not the handler's.
		for _, raw := range []string{
			"PUT /beat/i1 HTTP/1.1\r\n\r\n", // no Host
			"PUT /beat/i1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
			"PUT /beat/i1 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n",
			"PUT /beat/i1 HTTP/1.1\r\nHost: h\r\nBad Name: 1\r\n\r\n",
		} {
			c := dial(t, l)
			c.send(raw)
			resp, s := c.answer()
			if resp.StatusCode != http.StatusBadRequest || s.By != "" {
				t.Fatalf("%q: status %d, read by %q; want net/http's 400", raw, resp.StatusCode, s.By)
			}
		}
	})
	t.Run("HTTP/2 preface", func(t *testing.T) {
		c := dial(t, l)
		c.send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		if _, s := c.answer(); s.By == "lean" {
			t.Fatal("an HTTP/2 preface was answered here")
		}
	})
}

// TestListener_Pipelined: requests sent in one write are answered in
// order, the lean ones and, after the hand-off, net/http's.
func TestListener_Pipelined(t *testing.T) {
	l, _ := serve(t, testConfig(http.HandlerFunc(echo)))
	c := dial(t, l)
	post := "POST /beat/i1 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody"
	c.send(beat + strings.Replace(beat, "i1", "i2", 1) + post + strings.Replace(beat, "i1", "i3", 1))
	want := []struct{ by, path string }{{"lean", "/beat/i1"}, {"lean", "/beat/i2"}, {"net/http", "/beat/i1"}, {"net/http", "/beat/i3"}}
	for i, w := range want {
		resp, s := c.answer()
		if resp.StatusCode != 200 || s.By != w.by || s.Path != w.path {
			t.Fatalf("answer %d: status %d by %q for %q; want %q for %q", i, resp.StatusCode, s.By, s.Path, w.by, w.path)
		}
	}
}

// TestListener_SameAnswer: the handler's answer is written as net/http
// writes it: status, headers (a newline in a value made a space), a
// sniffed Content-Type, no body for 204.
func TestListener_SameAnswer(t *testing.T) {
	cases := map[string]http.HandlerFunc{
		"json": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Add("X-Two", "a")
			w.Header().Add("X-Two", "b")
			w.WriteHeader(201)
			w.Write([]byte(`{"a":1}`))
		},
		"sniffed": func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html><body>x</body></html>")) },
		"empty":   func(w http.ResponseWriter, r *http.Request) {},
		"204": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(204)
			if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrBodyNotAllowed) {
				panic("a body was taken for a 204")
			}
		},
		"header injection": func(w http.ResponseWriter, r *http.Request) {
			w.Header()["X-Evil"] = []string{"a\r\nSet-Cookie: b"}
			w.WriteHeader(401)
			w.WriteHeader(500) // the first status holds
		},
		"error": func(w http.ResponseWriter, r *http.Request) { http.Error(w, "nope", 403) },
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			l, _ := serve(t, testConfig(h))
			lean := roundTrip(t, l, beat)
			// The same request made not lean: a header of its own.
			std := roundTrip(t, l, strings.Replace(beat, "\r\n\r\n", "\r\nX-Mine: 1\r\n\r\n", 1))
			if lean != std {
				t.Fatalf("lean answer:\n%s\nnet/http's:\n%s", lean, std)
			}
		})
	}
}

// roundTrip sends raw on a fresh connection and returns the answer's
// status, headers without Date, and body.
func roundTrip(tb testing.TB, l *Listener, raw string) string {
	c := dial(tb, l)
	c.send(raw)
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Header.Del("Date")
	var out strings.Builder
	out.WriteString(resp.Status + "\n")
	resp.Header.Write(&out)
	fmt.Fprintf(&out, "length %d, close %v\n", len(b), resp.Close)
	out.Write(b)
	return out.String()
}

func TestListener_Timeouts(t *testing.T) {
	cfg := testConfig(http.HandlerFunc(echo))
	cfg.ReadHeaderTimeout, cfg.IdleTimeout = 300*time.Millisecond, 600*time.Millisecond
	l, _ := serve(t, cfg)
	t.Run("idle", func(t *testing.T) {
		c := dial(t, l)
		c.send(beat)
		c.answer()
		start := time.Now()
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("an idle connection read %v; want EOF", err)
		}
		if d := time.Since(start); d < 500*time.Millisecond || d > 3*time.Second {
			t.Fatalf("an idle connection was closed after %v; want the idle timeout, 600ms", d)
		}
	})
	t.Run("silent", func(t *testing.T) {
		// A connection that never sends a byte has the header timeout,
		// as net/http gives it, not the idle timeout.
		c := dial(t, l)
		start := time.Now()
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("a silent connection read %v; want EOF", err)
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 500*time.Millisecond {
			t.Fatalf("a silent connection was closed after %v; want the header timeout, 300ms", d)
		}
	})
	t.Run("slow head", func(t *testing.T) {
		c := dial(t, l)
		c.send(beat[:30]) // plausible, never finished
		start := time.Now()
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("a slow head read %v; want EOF", err)
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
			t.Fatalf("a slow head was cut after %v; want the header timeout, 300ms", d)
		}
	})
}

// TestListener_Close: Close ends Accept, closes the connections waiting
// for a request, and lets one in its handler answer (with Connection:
// close) before Wait returns.
func TestListener_Close(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/beat/slow" {
			close(entered)
			<-release
		}
		w.Write([]byte("ok"))
	})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, testConfig(h))
	idleC := dial(t, l)
	idleC.send(beat)
	idleC.answer()
	busyC := dial(t, l)
	busyC.send(strings.Replace(beat, "i1", "slow", 1))
	<-entered
	accepted := make(chan error, 1)
	go func() { _, err := l.Accept(); accepted <- err }()
	l.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if _, err := idleC.br.ReadByte(); err != io.EOF {
		t.Fatalf("an idle connection after Close read %v; want EOF", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- l.Wait(context.Background()) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while a request was being answered")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	resp, err := http.ReadResponse(busyC.br, nil)
	if err != nil || resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("the answer in flight: %v, %+v", err, resp)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", inner.Addr().String()); err == nil {
		t.Fatal("the listener still accepts")
	}
}

// TestListener_WaitCutsOff: when Wait's context ends first, the
// connections still answering are closed.
func TestListener_WaitCutsOff(t *testing.T) {
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(time.Second)
	})
	inner, _ := net.Listen("tcp", "127.0.0.1:0")
	l := New(inner, testConfig(h))
	c := dial(t, l)
	c.send(beat)
	<-entered
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait: %v", err)
	}
	if _, err := c.br.ReadByte(); err == nil {
		t.Fatal("the connection answering was not closed")
	}
}

// TestListener_Panics: a handler's panic closes its connection without
// an answer, as net/http does, and the listener goes on.
func TestListener_Panics(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/beat/panic":
			panic("boom")
		case "/beat/abort":
			panic(http.ErrAbortHandler)
		}
		w.Write([]byte("ok"))
	})
	l, _ := serve(t, testConfig(h))
	for _, p := range []string{"panic", "abort"} {
		c := dial(t, l)
		c.send(strings.Replace(beat, "i1", p, 1))
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("%s: read %v; want EOF", p, err)
		}
	}
	c := dial(t, l)
	c.send(beat)
	if resp, _ := c.answer(); resp.StatusCode != 200 {
		t.Fatalf("after the panics: status %d", resp.StatusCode)
	}
}

// TestListener_ManyClients: concurrent connections each get their own
// answers.
func TestListener_ManyClients(t *testing.T) {
	l, _ := serve(t, testConfig(http.HandlerFunc(echo)))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			id := "c" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			for range 50 {
				io.WriteString(c, strings.Replace(beat, "i1", id, 1))
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				var s seen
				json.NewDecoder(resp.Body).Decode(&s)
				resp.Body.Close()
				if s.Path != "/beat/"+id || s.By != "lean" {
					errs <- errors.New("answer of another request: " + s.Path)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// bufferedConn records the send buffer asked of it.
type bufferedConn struct {
	*net.TCPConn
	asked int
}

func (b *bufferedConn) SetWriteBuffer(n int) error { b.asked = n; return b.TCPConn.SetWriteBuffer(n) }

// TestHanded_PassesThrough: a connection given to net/http reads the
// bytes read here first, still sets its send buffer (event streams bound
// theirs) and half-closes (net/http does before closing a connection
// whose body it did not read).
func TestHanded_PassesThrough(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	bc := &bufferedConn{TCPConn: c.(*net.TCPConn)}
	h := &handed{Conn: bc, pending: []byte("ab")}
	defer h.Close()
	io.WriteString(peer, "c")
	got := make([]byte, 0, 3)
	for len(got) < 3 {
		var b [2]byte
		n, err := h.Read(b[:])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b[:n]...)
	}
	if string(got) != "abc" {
		t.Fatalf("read %q; want the bytes read here first: abc", got)
	}
	if err := h.SetWriteBuffer(8192); err != nil || bc.asked != 8192 {
		t.Fatalf("SetWriteBuffer: %v, asked of the connection beneath: %d", err, bc.asked)
	}
	if err := h.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the peer read %v after CloseWrite; want EOF", err)
	}
}

// TestListener_WritesAfterAnIdleSpell: answers that outgrow the write
// buffer in one go, on a connection idle for longer than the write
// timeout, are all sent (each write gets a fresh deadline).
func TestListener_WritesAfterAnIdleSpell(t *testing.T) {
	cfg := testConfig(http.HandlerFunc(echo))
	cfg.WriteTimeout = 200 * time.Millisecond
	l, _ := serve(t, cfg)
	c := dial(t, l)
	c.send(beat)
	c.answer()
	time.Sleep(400 * time.Millisecond)
	c.send(strings.Repeat(beat, 40)) // about 12 KiB of answers
	for i := range 40 {
		if resp, s := c.answer(); resp.StatusCode != 200 || s.By != "lean" {
			t.Fatalf("answer %d: %d by %q", i, resp.StatusCode, s.By)
		}
	}
}

// TestListener_PartialHeads: an answer is sent before the wait for the
// rest of the next head; a client that ends inside a head gets net/http's
// 400; and Close closes a connection waiting for the rest of a head.
func TestListener_PartialHeads(t *testing.T) {
	l, _ := serve(t, testConfig(http.HandlerFunc(echo)))
	t.Run("answer first", func(t *testing.T) {
		c := dial(t, l)
		c.send(beat + beat[:30])
		start := time.Now()
		if resp, s := c.answer(); resp.StatusCode != 200 || s.By != "lean" {
			t.Fatalf("%d by %q", resp.StatusCode, s.By)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("the answer came after %v, behind the next head's wait", d)
		}
	})
	t.Run("end inside a head", func(t *testing.T) {
		c := dial(t, l)
		c.send(beat[:30])
		c.c.(*net.TCPConn).CloseWrite()
		if resp, _ := c.answer(); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d; want net/http's 400", resp.StatusCode)
		}
	})
}

// TestListener_CloseCutsPartialHeads: Close closes a connection waiting
// for the rest of a head (no request is being answered there), and Wait
// does not wait for it.
func TestListener_CloseCutsPartialHeads(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(inner, testConfig(http.HandlerFunc(echo)))
	first := dial(t, l)
	first.send(beat[:30])
	later := dial(t, l)
	later.send(beat)
	later.answer()
	later.send(beat[:30])
	time.Sleep(100 * time.Millisecond) // both are waiting for the rest
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	for _, c := range []*client{first, later} {
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("read %v; want EOF", err)
		}
	}
}
