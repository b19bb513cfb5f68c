package verify_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/verify"
)

// counted is an instance that also counts the connections made to it
// and those open.
type counted struct {
	*instance
	conns, open atomic.Int64
}

func serveCounted(tb testing.TB, h http.HandlerFunc) *counted {
	tb.Helper()
	c := &counted{instance: &instance{}}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		h(w, r)
	}))
	c.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			c.conns.Add(1)
			c.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			c.open.Add(-1)
		}
	}
	c.srv.Start()
	tb.Cleanup(c.srv.Close)
	return c
}

// TestVerifier_Verify_keptConnection: pinned plain-HTTP callbacks to one
// address and port share a connection when the answers allow it, and
// each callback reaches the instance exactly once whatever became of the
// connection in between.
func TestVerifier_Verify_keptConnection(t *testing.T) {
	t.Run("kept", func(t *testing.T) {
		in := serveCounted(t, answer(keySecret))
		v := newVerifier(t, nil)
		for i := range 5 {
			if err := v.Verify(context.Background(), pin(target(t, in.srv)), request(), keySecret); err != nil {
				t.Fatalf("callback %d: %v", i, err)
			}
		}
		if n := in.conns.Load(); n != 1 {
			t.Errorf("5 callbacks made %d connections, want 1", n)
		}
		if n := in.hits.Load(); n != 5 {
			t.Errorf("instance received %d requests, want 5", n)
		}
	})
	t.Run("not pinned", func(t *testing.T) {
		in := serveCounted(t, answer(keySecret))
		v := newVerifier(t, nil)
		for i := range 3 {
			if err := v.Verify(context.Background(), target(t, in.srv), request(), keySecret); err != nil {
				t.Fatalf("callback %d: %v", i, err)
			}
		}
		if n := in.conns.Load(); n != 3 {
			t.Errorf("3 callbacks without a pinned address made %d connections, want one each", n)
		}
	})
	for _, tt := range []struct {
		name    string
		handler http.HandlerFunc
		ok      bool
	}{
		{"Connection: close", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			answer(keySecret)(w, r)
		}, true},
		{"failed status", reply(500, "no"), false},
		{"redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }, false},
		{"body over the cap", reply(200, `{"proof":"`+strings.Repeat("A", 70<<10)+`"}`), false},
	} {
		t.Run("not kept after "+tt.name, func(t *testing.T) {
			in := serveCounted(t, tt.handler)
			v := newVerifier(t, nil)
			for i := range 3 {
				err := v.Verify(context.Background(), pin(target(t, in.srv)), request(), keySecret)
				if (err == nil) != tt.ok {
					t.Fatalf("callback %d: %v", i, err)
				}
			}
			if n := in.conns.Load(); n != 3 {
				t.Errorf("3 callbacks made %d connections, want one each", n)
			}
			if n := in.hits.Load(); n != 3 {
				t.Errorf("instance received %d requests, want 3", n)
			}
		})
	}
	t.Run("closed by the instance while kept", func(t *testing.T) {
		in := serveCounted(t, answer(keySecret))
		v := newVerifier(t, nil)
		for i := range 4 {
			if err := v.Verify(context.Background(), pin(target(t, in.srv)), request(), keySecret); err != nil {
				t.Fatalf("callback %d: %v", i, err)
			}
			in.srv.CloseClientConnections() // the idle connection goes
			waitFor(t, func() bool { return in.open.Load() == 0 })
		}
		if n := in.hits.Load(); n != 4 {
			t.Errorf("instance received %d requests, want 4: one per callback", n)
		}
		if n := in.conns.Load(); n != 4 {
			t.Errorf("%d connections, want 4", n)
		}
	})
	t.Run("at most a bound kept", func(t *testing.T) {
		release := make(chan struct{})
		var waiting sync.WaitGroup
		in := serveCounted(t, func(w http.ResponseWriter, r *http.Request) {
			waiting.Done()
			<-release // all 100 at once, so that 100 connections are open
			answer(keySecret)(w, r)
		})
		v := newVerifier(t, nil)
		const n = 100
		waiting.Add(n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := v.Verify(context.Background(), pin(target(t, in.srv)), request(), keySecret); err != nil {
					t.Error(err)
				}
			}()
		}
		waiting.Wait()
		close(release)
		wg.Wait()
		waitFor(t, func() bool { return in.open.Load() <= 64 })
		if kept := in.open.Load(); kept == 0 {
			t.Errorf("no connection kept after %d callbacks", n)
		}
	})
}

// waitFor waits up to 5 s for cond.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met within 5 s")
		}
	}
}

// rawInstance answers each request on a connection with what answer
// writes, read by hand, so that a test can send what net/http would not.
// It counts the requests it read.
func rawInstance(tb testing.TB, answer func(conn net.Conn, req *http.Request, n int) (keep bool)) (verify.Target, *atomic.Int64) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	var hits atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if !answer(conn, req, int(hits.Add(1))) {
						return
					}
				}
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	return pin(verify.Target{Scheme: "http", Address: "127.0.0.1", Port: port, Path: api.DefaultVerifyPath}), &hits
}

// proofOf returns the JSON answer proving keySecret for the challenge of
// request(), which every callback of these tests carries.
func proofOf(*http.Request) string {
	return `{"proof":"` + hmacProof(keySecret, request().Challenge) + `"}`
}

// TestVerifier_Verify_keptAnswers: answers net/http's own server does not
// send are read as net/http's client reads them, over a kept connection.
func TestVerifier_Verify_keptAnswers(t *testing.T) {
	ok := func(body string) string {
		return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	tests := []struct {
		name       string
		answer     func(conn net.Conn, req *http.Request, n int) bool
		wantReason string
		calls      int
	}{
		{name: "informational answer first", calls: 2, answer: func(conn net.Conn, req *http.Request, _ int) bool {
			io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n"+ok(proofOf(req)))
			return true
		}},
		{name: "chunked", calls: 2, answer: func(conn net.Conn, req *http.Request, _ int) bool {
			body := proofOf(req)
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+strconv.FormatInt(int64(len(body)), 16)+"\r\n"+body+"\r\n0\r\n\r\n")
			return true
		}},
		{name: "HTTP/1.0 until close", calls: 2, answer: func(conn net.Conn, req *http.Request, _ int) bool {
			io.WriteString(conn, "HTTP/1.0 200 OK\r\n\r\n"+proofOf(req))
			return false
		}},
		{name: "bytes after the answer", calls: 3, answer: func(conn net.Conn, req *http.Request, _ int) bool {
			// Unasked-for bytes after the answer: the connection is out of
			// step, and is not used again.
			io.WriteString(conn, ok(proofOf(req))+"HTTP/1.1 200 OK\r\n")
			return true
		}},
		{name: "headers over the cap", calls: 1, wantReason: api.ReasonUnreachable, answer: func(conn net.Conn, req *http.Request, _ int) bool {
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 20<<10)+"\r\n"+strings.TrimPrefix(ok(proofOf(req)), "HTTP/1.1 200 OK\r\n"))
			return true
		}},
		{name: "closed after reading the second request", calls: 2, answer: func(conn net.Conn, req *http.Request, n int) bool {
			if n == 2 {
				return false // read and dropped: a failure, never sent again
			}
			io.WriteString(conn, ok(proofOf(req)))
			return true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tgt, hits := rawInstance(t, tt.answer)
			v := newVerifier(t, nil)
			for i := 1; i <= tt.calls; i++ {
				err := v.Verify(context.Background(), tgt, request(), keySecret)
				want := tt.wantReason
				if tt.name == "closed after reading the second request" && i == 2 {
					want = api.ReasonUnreachable
				}
				if got := reason(t, err); got != want {
					t.Errorf("callback %d: reason %q (%v), want %q", i, got, err, want)
				}
				if n := hits.Load(); n != int64(i) {
					t.Errorf("after callback %d the instance read %d requests, want %d", i, n, i)
				}
			}
		})
	}
}

// TestVerifier_Verify_keptRequest: the request over a kept connection is
// the one net/http sends: method, path, Host naming the host (not the
// address dialled), User-Agent, Content-Type, and the body.
func TestVerifier_Verify_keptRequest(t *testing.T) {
	var mu sync.Mutex
	var got []*http.Request
	var bodies []api.VerifyRequest
	in := serve(t, func(w http.ResponseWriter, r *http.Request) {
		var vr api.VerifyRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&vr); err != nil {
			t.Errorf("callback body: %v", err)
		}
		mu.Lock()
		got, bodies = append(got, r), append(bodies, vr)
		mu.Unlock()
		json.NewEncoder(w).Encode(api.VerifyResponse{Proof: hmacProof(keySecret, vr.Challenge)})
	})
	tgt := pin(target(t, in.srv))
	tgt.Address = "localhost"
	if err := newVerifier(t, nil).Verify(context.Background(), tgt, request(), keySecret); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	r := got[0]
	if r.Method != http.MethodPost || r.URL.Path != api.DefaultVerifyPath || r.Host != "localhost:"+strconv.Itoa(tgt.Port) ||
		r.Header.Get("User-Agent") != "muster-verify/1" || r.Header.Get("Content-Type") != "application/json" || r.ContentLength <= 0 {
		t.Errorf("request %s %s Host %s, headers %v", r.Method, r.URL, r.Host, r.Header)
	}
	if bodies[0] != request() {
		t.Errorf("body %+v, want %+v", bodies[0], request())
	}
}
