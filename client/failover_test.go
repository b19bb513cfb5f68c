package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// deadAddr returns the URL of a port nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestClient_SeveralServers: with several servers in Addr the client
// skips one it cannot reach and one that answers 503, sticks to the one
// that answered, and does not repeat a POST whose connection broke after
// it was sent.
func TestClient_SeveralServers(t *testing.T) {
	var okHits, busyHits, dropHits atomic.Int32
	// Each server answers the client's probe (GET /livez) as muster does;
	// the hits count the calls themselves.
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/livez" {
			return
		}
		okHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"service":"api","index":7,"instances":[]}`))
	}))
	defer ok.Close()
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/livez" {
			return
		}
		busyHits.Add(1)
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"unavailable","message":"no leader"}}`))
	}))
	defer busy.Close()
	drop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/livez" {
			return
		}
		dropHits.Add(1)
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
	}))
	defer drop.Close()
	ctx := context.Background()

	c, err := client.New(client.Config{Addr: deadAddr(t) + "," + busy.URL + ", " + ok.URL})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res, err := c.Lookup(ctx, "api")
		if err != nil || res.Index != 7 {
			t.Fatalf("lookup over a dead, a busy and a good server: %+v, %v", res, err)
		}
	}
	if okHits.Load() != 3 || busyHits.Load() != 1 {
		t.Fatalf("good server asked %d times, busy one %d: the client did not stick to the one that answered", okHits.Load(), busyHits.Load())
	}

	// A POST whose connection broke after it was sent is not repeated
	// elsewhere: it may have been applied.
	c2, err := client.New(client.Config{Addr: drop.URL + "," + ok.URL})
	if err != nil {
		t.Fatal(err)
	}
	before := okHits.Load()
	_, err = c2.Register(ctx, "api", "k", api.RegisterRequest{Address: "127.0.0.1", Port: 1})
	if !errors.Is(err, client.ErrUnavailable) || okHits.Load() != before || dropHits.Load() != 1 {
		t.Fatalf("a POST cut after it was sent: err %v, repeated on the next server %d times", err, okHits.Load()-before)
	}
	// A GET is safe to repeat: it moves on.
	if _, err := c2.Lookup(ctx, "api"); err != nil {
		t.Fatalf("a GET after a broken connection: %v", err)
	}

	if _, err := client.New(client.Config{Addr: ok.URL + ",ftp://x"}); err == nil {
		t.Fatal("a list with a bad address was accepted")
	}
}

// hungAddr returns the URL of a server that is hung as a SIGSTOPped
// process is: the kernel accepts connections, and nothing ever reads or
// answers them.
func hungAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// TestClient_HungServer: a hung server first in the list costs each call
// the probe's timeout, not the HTTP client's, for reads, for a POST
// (which moves on: the probe showed that it was never sent) and for an
// event stream; and when every server hangs, the error names each and
// says why.
func TestClient_HungServer(t *testing.T) {
	ctx := context.Background()
	s := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	hung := hungAddr(t)
	const probe = 300 * time.Millisecond
	// A fresh client for each call: none knows a server that works yet.
	newClient := func(addr string) *client.Client {
		t.Helper()
		c, err := client.New(client.Config{Addr: addr, Token: adminToken, ProbeTimeout: probe,
			HTTPClient: &http.Client{Timeout: 10 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		call func(c *client.Client) error
	}{
		{"create key (POST)", func(c *client.Client) error {
			_, err := c.CreateKey(ctx, []string{"web"}, "")
			return err
		}},
		{"lookup", func(c *client.Client) error { _, err := c.Lookup(ctx, "web"); return err }},
		{"services", func(c *client.Client) error { _, err := c.Services(ctx); return err }},
		{"watch", func(c *client.Client) error {
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			err := c.Watch(wctx, client.WatchRequest{}, func(ev client.WatchEvent) error {
				if ev.Type == client.WatchDisconnected {
					return ev.Err
				}
				if ev.Type == api.EventSnapshot {
					return errStop
				}
				return nil
			})
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.call(newClient(hung + "," + s.URL()))
			if took := time.Since(start); err != nil || took > probe+2*time.Second {
				t.Fatalf("with a hung server first: %v after %s; want an answer within the probe's %s and a moment", err, took, probe)
			}
		})
	}

	// Once a server answered, calls go to it without a probe, until one
	// fails.
	var probes, calls atomic.Int32
	counted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/livez" {
			probes.Add(1)
			return
		}
		calls.Add(1)
		w.Write([]byte(`{"services":[]}`))
	}))
	defer counted.Close()
	c := newClient(hung + "," + counted.URL)
	for range 3 {
		if _, err := c.Services(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if probes.Load() != 1 || calls.Load() != 3 {
		t.Errorf("3 calls: %d probes, %d calls; want 1 probe, then the server that answered used as it is", probes.Load(), calls.Load())
	}

	// Every server hung, or down: the error says how each failed.
	dead, hung2 := deadAddr(t), hungAddr(t)
	start := time.Now()
	_, err := newClient(hung+","+dead+","+hung2).Lookup(ctx, "web")
	took := time.Since(start)
	if !errors.Is(err, client.ErrUnavailable) || took > 2*probe+2*time.Second {
		t.Fatalf("every server hung or down: %v after %s", err, took)
	}
	for _, want := range []string{hung + ": no answer to GET /livez within " + probe.String(), dead + ": ", "connection refused", hung2 + ": no answer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error %q does not say %q", err, want)
		}
	}
}
