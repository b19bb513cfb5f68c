package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// beatRecorder is an http.RoundTripper that records the heartbeat
// requests a client sends (a batch's size, or "PUT" for one alone) and,
// while held, keeps batches from leaving until released.
type beatRecorder struct {
	mu      sync.Mutex
	batches []int // beats per POST /v1/heartbeats, in the order sent
	puts    int
	held    chan struct{} // closed: batches go
	waiting int
}

func newBeatRecorder(held bool) *beatRecorder {
	r := &beatRecorder{held: make(chan struct{})}
	if !held {
		close(r.held)
	}
	return r
}

func (r *beatRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case req.Method == http.MethodPost && req.URL.Path == "/v1/heartbeats":
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		var b api.HeartbeatsRequest
		_ = json.Unmarshal(body, &b)
		r.mu.Lock()
		r.batches = append(r.batches, len(b.Beats))
		r.waiting++
		r.mu.Unlock()
		<-r.held
		r.mu.Lock()
		r.waiting--
		r.mu.Unlock()
	case req.Method == http.MethodPut:
		r.mu.Lock()
		r.puts++
		r.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

func (r *beatRecorder) counts() (batches []int, waiting, puts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.batches...), r.waiting, r.puts
}

// instances registers n instances of service through the registry at
// url and returns their IDs and session tokens.
func instances(t *testing.T, url, service string, n int) []api.Beat {
	t.Helper()
	key := newKey(t, url, service)
	c, _ := client.New(client.Config{Addr: url})
	var out []api.Beat
	for range n {
		in := testutil.NewInstance(t, key, verify.Proof)
		res, err := c.Register(context.Background(), service, key, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, api.Beat{ID: res.ID, Token: in.Calls[0].Token})
	}
	return out
}

// TestHeartbeat_BatchesConcurrentCallers: heartbeats of concurrent
// callers that find every sender busy travel in one batch, and each
// caller gets its own instance's answer, refusals included, as the
// errors of the per-instance heartbeat.
func TestHeartbeat_BatchesConcurrentCallers(t *testing.T) {
	srv := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	beats := instances(t, srv.URL(), "web", 12)
	rec := newBeatRecorder(true)
	c, err := client.New(client.Config{Addr: srv.URL(), HTTPClient: &http.Client{Transport: rec, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	// The callers: every instance with its own token, then two refusals
	// and a caller that gives up while its beat waits.
	calls := append([]api.Beat(nil), beats...)
	calls = append(calls, api.Beat{ID: beats[0].ID, Token: beats[1].Token}, api.Beat{ID: "gone", Token: beats[0].Token})
	type result struct {
		resp api.HeartbeatResponse
		err  error
	}
	results := make([]result, len(calls))
	var wg sync.WaitGroup
	call := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].resp, results[i].err = c.Heartbeat(context.Background(), calls[i].ID, calls[i].Token)
		}()
	}
	// The first four take the four senders, one beat each, and are held.
	for i := range 4 {
		call(i)
		testserver.Eventually(t, 5*time.Second, "a batch held", func() bool { _, w, _ := rec.counts(); return w == i+1 })
	}
	for i := 4; i < len(calls); i++ {
		call(i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := c.Heartbeat(ctx, beats[2].ID, beats[2].Token)
		gaveUp <- err
	}()
	queued := len(calls) - 4 + 1
	testserver.Eventually(t, 5*time.Second, "the rest queued", func() bool { return client.QueuedBeats(c) == queued })
	cancel()
	select {
	case err := <-gaveUp:
		if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Errorf("a caller that gave up: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a caller that gave up still waits for its batch")
	}
	close(rec.held)
	wg.Wait()

	batches, _, puts := rec.counts()
	if want := []int{1, 1, 1, 1, queued - 1}; len(batches) != len(want) || puts != 0 {
		t.Fatalf("batches %v and %d PUTs, want %v", batches, puts, want)
	}
	sizes := map[int]int{}
	for _, n := range batches {
		sizes[n]++
	}
	if sizes[1] != 4 || sizes[queued-1] != 1 {
		t.Fatalf("batches %v, want four of one and one of %d (the caller that gave up left out)", batches, queued-1)
	}
	for i, r := range results[:len(beats)] {
		if r.err != nil || r.resp.Status != "passing" || r.resp.TTL != "1h0m0s" {
			t.Errorf("caller %d: %+v, %v", i, r.resp, r.err)
		}
	}
	var e *client.Error
	if err := results[len(beats)].err; !errors.Is(err, client.ErrForbidden) || !errors.As(err, &e) || e.Status != 403 || e.Op != "heartbeat" {
		t.Errorf("another instance's token: %v", err)
	}
	if err := results[len(beats)+1].err; !errors.Is(err, client.ErrNotFound) || !errors.As(err, &e) || e.Status != 404 {
		t.Errorf("an unknown instance: %v", err)
	}
}

// TestHeartbeat_OlderRegistry: a registry that does not know batches (a
// proxy here hides the route as an older version's router would answer
// it) gets each heartbeat as a PUT of its own, and the client remembers
// that instead of trying the batch before every beat.
func TestHeartbeat_OlderRegistry(t *testing.T) {
	srv := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	beats := instances(t, srv.URL(), "web", 1)
	target, _ := url.Parse(srv.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/heartbeats" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no route POST /v1/heartbeats"}}`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer old.Close()
	rec := newBeatRecorder(false)
	c, _ := client.New(client.Config{Addr: old.URL, HTTPClient: &http.Client{Transport: rec}})
	for i := range 3 {
		resp, err := c.Heartbeat(context.Background(), beats[0].ID, beats[0].Token)
		if err != nil || resp.Status != "passing" {
			t.Fatalf("beat %d through an older registry: %+v, %v", i, resp, err)
		}
	}
	if batches, _, puts := rec.counts(); len(batches) != 1 || puts != 3 {
		t.Fatalf("%v batches and %d PUTs, want one batch tried, then a PUT per beat", batches, puts)
	}

	// And with batches turned off, every beat is a PUT from the start.
	rec = newBeatRecorder(false)
	c, _ = client.New(client.Config{Addr: srv.URL(), HTTPClient: &http.Client{Transport: rec}, NoBatchHeartbeats: true})
	if _, err := c.Heartbeat(context.Background(), beats[0].ID, beats[0].Token); err != nil {
		t.Fatal(err)
	}
	if batches, _, puts := rec.counts(); len(batches) != 0 || puts != 1 {
		t.Fatalf("NoBatchHeartbeats: %v batches and %d PUTs", batches, puts)
	}
}

// TestHeartbeats_Raw: Client.Heartbeats sends a batch as it is given and
// returns one result per beat.
func TestHeartbeats_Raw(t *testing.T) {
	srv := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	beats := instances(t, srv.URL(), "web", 2)
	c, _ := client.New(client.Config{Addr: srv.URL()})
	res, err := c.Heartbeats(context.Background(), append(beats, api.Beat{ID: beats[0].ID, Token: "wrong"}))
	if err != nil || len(res) != 3 {
		t.Fatalf("%+v, %v", res, err)
	}
	if res[0].Status != "passing" || res[1].Status != "passing" || res[2].Error == nil || res[2].Error.Code != api.CodeForbidden || res[2].HTTPStatus != 403 {
		t.Fatalf("results %+v", res)
	}
	if _, err := c.Heartbeats(context.Background(), nil); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("an empty batch: %v", err)
	}
}

// TestRegistration_SharedClient: Registrations given one Client talk
// through it, and their heartbeats go through its batches.
func TestRegistration_SharedClient(t *testing.T) {
	srv := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, srv.URL(), "svc")
	rec := newBeatRecorder(false)
	c, _ := client.New(client.Config{Addr: srv.URL(), HTTPClient: &http.Client{Transport: rec}})
	for range 2 {
		_, _, cancel, done := runRegistration(t, client.ServiceConfig{
			Name: "svc", Registry: "http://127.0.0.1:1", Client: c, Key: key,
			TTL: time.Second, DrainDelay: -1, Logger: testutil.Logger(t),
		})
		defer func() { cancel(); <-done }()
	}
	testserver.Eventually(t, 5*time.Second, "heartbeats in batches", func() bool {
		batches, _, _ := rec.counts()
		return len(batches) >= 4
	})
	if _, _, puts := rec.counts(); puts != 0 {
		t.Fatalf("%d heartbeats sent alone", puts)
	}
}

// TestHeartbeat_OversizedBeatGoesAlone: a beat too large, or too odd, for
// a batch goes alone, so that it cannot make the batch of other callers'
// beats too large for the registry.
func TestHeartbeat_OversizedBeatGoesAlone(t *testing.T) {
	srv := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	beats := instances(t, srv.URL(), "web", 1)
	rec := newBeatRecorder(false)
	c, _ := client.New(client.Config{Addr: srv.URL(), HTTPClient: &http.Client{Transport: rec}})
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			token := beats[0].Token
			if i%50 == 0 {
				token = strings.Repeat("x", 255_000)
			}
			_, err := c.Heartbeat(context.Background(), beats[0].ID, token)
			if (err == nil) != (i%50 != 0) {
				errs <- fmt.Errorf("caller %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, _, puts := rec.counts(); puts != 4 {
		t.Errorf("%d beats sent alone, want the 4 oversized ones", puts)
	}
}
