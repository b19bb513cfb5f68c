package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

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
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		okHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"service":"api","index":7,"instances":[]}`))
	}))
	defer ok.Close()
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		busyHits.Add(1)
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"unavailable","message":"no leader"}}`))
	}))
	defer busy.Close()
	drop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
