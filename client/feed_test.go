package client_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testutil"
)

// proof answers a registration's challenge as an instance holding the
// key's secret does.
func proof(secret, challenge string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(challenge))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// registerInstance registers an instance of service that answers the
// callback and never heartbeats, and returns the 201's answer.
func registerInstance(tb testing.TB, url, secret, service string, ttl time.Duration, tags ...string) api.RegisterResponse {
	tb.Helper()
	in := testutil.NewInstance(tb, secret, proof)
	c, _ := client.New(client.Config{Addr: url})
	res, err := c.Register(context.Background(), service, secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: in.Port(), TTL: ttl.String(), Tags: tags})
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// tap is an http.RoundTripper that counts a client's lookups and records
// its event stream requests: their Last-Event-ID, and the start of each
// answer.
type tap struct {
	base    *http.Transport
	lookups atomic.Int32
	mu      sync.Mutex
	watches []tappedWatch
}

type tappedWatch struct {
	lastEventID string
	start       *bytes.Buffer // the answer's first bytes
	mu          *sync.Mutex
}

func newTap(tb testing.TB) *tap {
	t := &tap{base: &http.Transport{}}
	tb.Cleanup(t.base.CloseIdleConnections)
	return t
}

func (t *tap) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasPrefix(req.URL.Path, "/v1/services/") {
		t.lookups.Add(1)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.URL.Path != "/v1/watch" {
		return resp, err
	}
	w := tappedWatch{lastEventID: req.Header.Get("Last-Event-ID"), start: &bytes.Buffer{}, mu: &sync.Mutex{}}
	t.mu.Lock()
	t.watches = append(t.watches, w)
	t.mu.Unlock()
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.TeeReader(resp.Body, prefixWriter{w}), resp.Body}
	return resp, nil
}

// prefixWriter keeps the first 200 bytes written.
type prefixWriter struct{ w tappedWatch }

func (p prefixWriter) Write(b []byte) (int, error) {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	if n := 200 - p.w.start.Len(); n > 0 {
		p.w.start.Write(b[:min(n, len(b))])
	}
	return len(b), nil
}

func (t *tap) watchRequests() []tappedWatch {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.watches)
}

func (w tappedWatch) answerStart() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.start.String()
}

// newPushResolver returns a resolver of the registry at url whose MaxAge
// is an hour: only its event stream can show it a change.
func newPushResolver(tb testing.TB, url string, t *tap) *client.Resolver {
	tb.Helper()
	c, err := client.New(client.Config{Addr: url, HTTPClient: &http.Client{Transport: t}})
	if err != nil {
		tb.Fatal(err)
	}
	res, err := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: time.Hour, MaxStale: 2 * time.Hour, Logger: testutil.Logger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { res.Close() })
	return res
}

func ids(insts []client.Instance) []string {
	var out []string
	for _, in := range insts {
		out = append(out, in.ID)
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// until polls the resolver's cache (not the registry: its MaxAge is an
// hour) every 200 µs until the service's instances are want, and returns
// how long that took from start; it fails tb after 5 s.
func until(tb testing.TB, res *client.Resolver, service string, start time.Time, want []string, opts ...client.LookupOption) time.Duration {
	tb.Helper()
	for {
		r, err := res.Lookup(context.Background(), service, opts...)
		if err == nil && slices.Equal(ids(r.Instances), want) {
			return time.Since(start)
		}
		if time.Since(start) > 5*time.Second {
			tb.Fatalf("after 5s the resolver shows %s as %v (%v), want %v", service, ids(r.Instances), err, want)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// TestResolver_PushSeesChangesWithin100ms: with a MaxAge of an hour, a
// resolver sees a registration and a drain within 100 ms of the 201 or
// 200 that acknowledged them, and an expiry within 100 ms of the sweep
// committing it, without asking the registry again.
func TestResolver_PushSeesChangesWithin100ms(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	secret := newKey(t, reg.URL(), "web")
	tp := newTap(t)
	res := newPushResolver(t, reg.URL(), tp)
	a := registerInstance(t, reg.URL(), secret, "web", time.Hour)
	until(t, res, "web", time.Now(), []string{a.ID})
	// The stream opens after the first lookup; a change seen proves it up.
	b := registerInstance(t, reg.URL(), secret, "web", time.Hour)
	until(t, res, "web", time.Now(), sorted(a.ID, b.ID))

	var worst time.Duration
	for i := range 5 {
		c := registerInstance(t, reg.URL(), secret, "web", time.Hour)
		acked := time.Now()
		d := until(t, res, "web", acked, sorted(a.ID, b.ID, c.ID))
		t.Logf("registration %d seen %s after its 201", i, d)
		worst = max(worst, d)
		if err := adminClient(t, reg.URL()).Deregister(context.Background(), c.ID, ""); err != nil {
			t.Fatal(err)
		}
		until(t, res, "web", time.Now(), sorted(a.ID, b.ID))
	}
	if worst > 100*time.Millisecond {
		t.Errorf("a registration took %s to reach the resolver; want at most 100ms", worst)
	}

	if _, err := adminClient(t, reg.URL()).Drain(context.Background(), b.ID, ""); err != nil {
		t.Fatal(err)
	}
	d := until(t, res, "web", time.Now(), []string{a.ID})
	t.Logf("drain seen %s after its 200", d)
	if d > 100*time.Millisecond {
		t.Errorf("the drain took %s to reach the resolver; want at most 100ms", d)
	}

	// Expiry: an instance that never heartbeats turns critical when its
	// TTL runs out, and the sweep (every 50 ms here) commits it.
	e := registerInstance(t, reg.URL(), secret, "web", time.Second)
	until(t, res, "web", time.Now(), sorted(a.ID, e.ID))
	direct, _ := client.New(client.Config{Addr: reg.URL()})
	var committed time.Time
	for committed.IsZero() {
		in, err := direct.Instance(context.Background(), e.ID)
		switch {
		case err != nil:
			t.Fatal(err)
		case in.Status == api.StatusCritical:
			committed = time.Now() // the lookup's rule, at most a sweep before the commit
		default:
			time.Sleep(time.Millisecond)
		}
	}
	d = until(t, res, "web", committed, []string{a.ID})
	t.Logf("expiry seen %s after the registry first read the instance as critical", d)
	if d > 100*time.Millisecond+50*time.Millisecond {
		t.Errorf("the expiry took %s to reach the resolver; want at most 100ms plus a sweep interval", d)
	}
	if n := tp.lookups.Load(); n != 1 {
		t.Errorf("the resolver asked the registry %d times; with MaxAge 1h, once", n)
	}
}

// TestResolver_PushFilteredLookups: a lookup with filters is not patched
// but revalidated at the next Lookup after a change to its service, so it
// shows exactly what the registry's filter keeps, within 100 ms.
func TestResolver_PushFilteredLookups(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	secret := newKey(t, reg.URL(), "web")
	tp := newTap(t)
	res := newPushResolver(t, reg.URL(), tp)
	v1 := registerInstance(t, reg.URL(), secret, "web", time.Hour, "v1")
	v2tag := client.WithTag("v2")
	until(t, res, "web", time.Now(), nil, v2tag)
	until(t, res, "web", time.Now(), []string{v1.ID})
	// The stream is up once a change has reached the plain lookup.
	other := registerInstance(t, reg.URL(), secret, "web", time.Hour, "v1")
	until(t, res, "web", time.Now(), sorted(v1.ID, other.ID))
	before := tp.lookups.Load()

	v2 := registerInstance(t, reg.URL(), secret, "web", time.Hour, "v2", "canary")
	d := until(t, res, "web", time.Now(), []string{v2.ID}, v2tag)
	t.Logf("filtered lookup saw the registration %s after its 201", d)
	if d > 100*time.Millisecond {
		t.Errorf("the filtered lookup took %s; want at most 100ms", d)
	}
	until(t, res, "web", time.Now(), sorted(v1.ID, other.ID, v2.ID))
	registerInstance(t, reg.URL(), secret, "web", time.Hour, "v1")
	until(t, res, "web", time.Now(), []string{v2.ID}, v2tag)
	if _, err := adminClient(t, reg.URL()).Drain(context.Background(), v2.ID, ""); err != nil {
		t.Fatal(err)
	}
	until(t, res, "web", time.Now(), nil, v2tag)
	if r, _ := res.Lookup(context.Background(), "web", client.WithStatus("draining")); !slices.Equal(ids(r.Instances), []string{v2.ID}) {
		t.Fatalf("draining: %v", ids(r.Instances))
	}
	// No change: no lookup. A filtered lookup costs one revalidation per
	// change seen, never one per call.
	n := tp.lookups.Load()
	for range 100 {
		res.Lookup(context.Background(), "web", v2tag)
	}
	if tp.lookups.Load() != n {
		t.Fatal("a quiet service's filtered lookup was revalidated")
	}
	t.Logf("%d lookups for 3 changes and a new filter", n-before)
}

// TestResolver_StreamFallsBackAndResumes: when the registry goes away,
// the resolver falls back to its revalidation and staleness rules (a
// cached answer past MaxAge is served marked stale); when it comes back,
// the stream resumes after the last event it received, and a change made
// meanwhile reaches Watch with no Lookup to find it.
func TestResolver_StreamFallsBackAndResumes(t *testing.T) {
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	reg := startRegistry(t, dir, addr)
	url := reg.URL()
	secret := newKey(t, url, "web")
	a := registerInstance(t, url, secret, "web", time.Hour)
	tp := newTap(t)
	c, _ := client.New(client.Config{Addr: url, HTTPClient: &http.Client{Transport: tp}})
	res, _ := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: 300 * time.Millisecond, MaxStale: 30 * time.Second, Logger: testutil.Logger(t)})
	defer res.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := res.Watch(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	next := func(want []string, within time.Duration) client.Result {
		t.Helper()
		timer := time.NewTimer(within)
		defer timer.Stop()
		for {
			select {
			case r := <-ch:
				if slices.Equal(ids(r.Instances), want) {
					return r
				}
			case <-timer.C:
				t.Fatalf("Watch did not show %v within %s", want, within)
			}
		}
	}
	next([]string{a.ID}, time.Second)
	b := registerInstance(t, url, secret, "web", time.Hour)
	next(sorted(a.ID, b.ID), 5*time.Second) // the stream is up

	reg.Close()
	time.Sleep(400 * time.Millisecond) // past MaxAge
	r, err := res.Lookup(context.Background(), "web")
	if err != nil || !r.Stale || !slices.Equal(ids(r.Instances), sorted(a.ID, b.ID)) || r.Age() < 300*time.Millisecond {
		t.Fatalf("lookup while the registry is down: %+v, %v; want the cached answer marked stale", r, err)
	}
	lookupsBefore := tp.lookups.Load()

	startRegistry(t, dir, addr)
	if _, err := adminClient(t, url).Drain(context.Background(), b.ID, ""); err != nil {
		t.Fatal(err)
	}
	drained := time.Now()
	next([]string{a.ID}, 10*time.Second)
	t.Logf("the drain made while the stream was down reached Watch %s later", time.Since(drained).Round(time.Millisecond))
	if n := tp.lookups.Load(); n != lookupsBefore {
		t.Fatalf("the resolver made %d lookups after the restart; only the stream should have shown the drain", n-lookupsBefore)
	}
	ws := tp.watchRequests()
	var resumed string
	for _, w := range ws {
		if strings.Contains(w.answerStart(), ": resumed after") {
			resumed = w.lastEventID
		}
	}
	if resumed == "" {
		for _, w := range ws {
			t.Logf("watch request Last-Event-ID %q, answer %q", w.lastEventID, w.answerStart())
		}
		t.Fatal("the stream did not resume after the restart")
	}
	t.Logf("%d stream requests; resumed after %s", len(ws), resumed)
	if r, err := res.Lookup(context.Background(), "web"); err != nil || r.Stale {
		t.Fatalf("lookup after the restart: %+v, %v", r, err)
	}
}

// TestResolver_WatchSlowReaderGetsLatest: Watch gives the current set,
// then the latest set: a reader that did not read while three instances
// registered gets the set with all three, once, and no backlog. The
// channel closes when ctx ends.
func TestResolver_WatchSlowReaderGetsLatest(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	secret := newKey(t, reg.URL(), "web")
	res := newPushResolver(t, reg.URL(), newTap(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := res.Watch(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if first := <-ch; len(first.Instances) != 0 || first.Service != "web" {
		t.Fatalf("first: %+v", first)
	}
	a := registerInstance(t, reg.URL(), secret, "web", time.Hour)
	select {
	case r := <-ch:
		if !slices.Equal(ids(r.Instances), []string{a.ID}) {
			t.Fatalf("after one registration: %v", ids(r.Instances))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no change within 5s")
	}
	var want []string
	for range 3 {
		want = append(want, registerInstance(t, reg.URL(), secret, "web", time.Hour).ID)
	}
	want = sorted(append(want, a.ID)...)
	until(t, res, "web", time.Now(), want)
	r := <-ch
	if !slices.Equal(ids(r.Instances), want) {
		t.Fatalf("a slow reader got %v; want the latest set %v", ids(r.Instances), want)
	}
	select {
	case r := <-ch:
		t.Fatalf("a slow reader got a backlog: %v", ids(r.Instances))
	default:
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a value after ctx ended")
		}
	case <-time.After(time.Second):
		t.Fatal("the channel stayed open after ctx ended")
	}
}

// resolverGoroutines returns the stacks of the goroutines running the
// resolver's or the stream's code.
func resolverGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "client.(*Resolver).runFeed") || strings.Contains(g, "client.(*Client).watch") {
			out = append(out, g)
		}
	}
	return out
}

// TestResolver_CloseStopsStream: Close ends the stream's goroutine and
// closes Watch's channels; the resolver goes on answering lookups; a
// resolver with DisableStream never opens a stream.
func TestResolver_CloseStopsStream(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	secret := newKey(t, reg.URL(), "web")
	if g := resolverGoroutines(); len(g) != 0 {
		t.Fatalf("resolver goroutines before the test:\n%s", strings.Join(g, "\n\n"))
	}
	tp := newTap(t)
	res := newPushResolver(t, reg.URL(), tp)
	ch, err := res.Watch(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	a := registerInstance(t, reg.URL(), secret, "web", time.Hour)
	until(t, res, "web", time.Now(), []string{a.ID})
	if len(resolverGoroutines()) == 0 {
		t.Fatal("no stream goroutine while the resolver watches")
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
	for range ch { // closed by Close; it may hold the last set
	}
	if g := resolverGoroutines(); len(g) != 0 {
		t.Fatalf("goroutines left after Close:\n%s", strings.Join(g, "\n\n"))
	}
	if _, err := res.Watch(context.Background(), "web"); err == nil {
		t.Fatal("Watch on a closed resolver")
	}
	if r, err := res.Lookup(context.Background(), "web"); err != nil || !slices.Equal(ids(r.Instances), []string{a.ID}) {
		t.Fatalf("lookup after Close: %+v, %v", r, err)
	}
	res.Close()

	c, _ := client.New(client.Config{Addr: reg.URL(), HTTPClient: &http.Client{Transport: tp}})
	off, _ := client.NewResolver(client.ResolverConfig{Client: c, DisableStream: true})
	n := len(tp.watchRequests())
	if _, err := off.Lookup(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if len(tp.watchRequests()) != n || len(resolverGoroutines()) != 0 {
		t.Fatal("a resolver with DisableStream opened a stream")
	}
}

// TestResolver_DroppedStopsStream: a resolver dropped without Close ends
// its stream once it is collected; an open Watch keeps it.
func TestResolver_DroppedStopsStream(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	secret := newKey(t, reg.URL(), "web")
	func() {
		res := newPushResolverNoClose(t, reg.URL())
		if _, err := res.Lookup(context.Background(), "web"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "the stream to start", func() bool { return len(resolverGoroutines()) > 0 })
		runtime.KeepAlive(res)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := newPushResolverNoClose(t, reg.URL()).Watch(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	for range 3 {
		runtime.GC()
	}
	time.Sleep(50 * time.Millisecond)
	a := registerInstance(t, reg.URL(), secret, "web", time.Hour)
	select {
	case r, ok := <-ch:
		if !ok || !slices.Equal(ids(r.Instances), []string{a.ID}) {
			t.Fatalf("the watch of a dropped resolver: %v, %v", ids(r.Instances), ok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch of a dropped resolver saw no change")
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		g := resolverGoroutines()
		if len(g) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream of a dropped resolver did not end:\n%s", strings.Join(g, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newPushResolverNoClose(tb testing.TB, url string) *client.Resolver {
	c, _ := client.New(client.Config{Addr: url, HTTPClient: &http.Client{Transport: newTap(tb)}})
	res, err := client.NewResolver(client.ResolverConfig{Client: c, Logger: testutil.Logger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// TestResolver_PushNewServiceJoinsStream: a service looked up while the
// stream is open joins it: the stream reopens resuming where it was (no
// snapshot), and neither a change to the new service made before the
// reopen nor one to the old service is lost.
func TestResolver_PushNewServiceJoinsStream(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	secret := newKey(t, reg.URL(), "web", "api")
	tp := newTap(t)
	res := newPushResolver(t, reg.URL(), tp)
	until(t, res, "web", time.Now(), nil)
	w1 := registerInstance(t, reg.URL(), secret, "web", time.Hour)
	until(t, res, "web", time.Now(), []string{w1.ID}) // the stream is up

	until(t, res, "api", time.Now(), nil)
	a1 := registerInstance(t, reg.URL(), secret, "api", time.Hour) // likely before the reopen
	w2 := registerInstance(t, reg.URL(), secret, "web", time.Hour)
	until(t, res, "api", time.Now(), []string{a1.ID})
	until(t, res, "web", time.Now(), sorted(w1.ID, w2.ID))
	a2 := registerInstance(t, reg.URL(), secret, "api", time.Hour)
	if d := until(t, res, "api", time.Now(), sorted(a1.ID, a2.ID)); d > 100*time.Millisecond {
		t.Errorf("a registration of the new service took %s", d)
	}
	ws := tp.watchRequests()
	if len(ws) != 2 || ws[0].lastEventID != "" || ws[1].lastEventID == "" || !strings.Contains(ws[1].answerStart(), ": resumed after") {
		for _, w := range ws {
			t.Logf("watch request Last-Event-ID %q, answer %q", w.lastEventID, w.answerStart())
		}
		t.Fatalf("%d stream requests; want a first one, and a second resuming", len(ws))
	}
	if n := tp.lookups.Load(); n != 2 {
		t.Errorf("%d lookups; want one per service", n)
	}
}

// TestResolver_QualitiesRefreshedUnderAStream: an answer the event
// stream keeps current (MaxAge an hour) still has its qualities fetched
// again, in the background, once QualityMaxAge has passed: an instance
// that has heartbeaten its quality up to 1 is seen so, not at the 0.5 it
// was registered with. With QualityMaxAge negative it is not.
func TestResolver_QualitiesRefreshedUnderAStream(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	secret := newKey(t, reg.URL(), "web")
	in := testutil.NewInstance(t, secret, proof)
	c, _ := client.New(client.Config{Addr: reg.URL()})
	r, err := c.Register(context.Background(), "web", secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	resolver := func(qualityMaxAge time.Duration) *client.Resolver {
		res, err := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: time.Hour, MaxStale: 2 * time.Hour,
			QualityMaxAge: qualityMaxAge, Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Close() })
		return res
	}
	quality := func(res *client.Resolver) float64 {
		t.Helper()
		got, err := res.Lookup(context.Background(), "web")
		if err != nil || len(got.Instances) != 1 {
			t.Fatalf("lookup: %+v, %v", got, err)
		}
		return got.Instances[0].Quality
	}
	refreshed, never := resolver(200*time.Millisecond), resolver(-1)
	if q1, q2 := quality(refreshed), quality(never); q1 != 0.5 || q2 != 0.5 {
		t.Fatalf("qualities %v, %v before any heartbeat, want 0.5", q1, q2)
	}
	// Each stream is up, its snapshot applied, once it has carried a
	// change (the cache, an hour young, is not revalidated).
	b := registerInstance(t, reg.URL(), secret, "web", time.Hour)
	for _, res := range []*client.Resolver{refreshed, never} {
		until(t, res, "web", time.Now(), sorted(r.ID, b.ID))
	}
	quality = func(res *client.Resolver) float64 {
		t.Helper()
		got, err := res.Lookup(context.Background(), "web")
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range got.Instances {
			if in.ID == r.ID {
				return in.Quality
			}
		}
		t.Fatalf("no %s in %+v", r.ID, got)
		return 0
	}
	for range 8 {
		if _, err := c.Heartbeat(context.Background(), r.ID, in.TokenOf(r.ID)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for quality(refreshed) != 1 {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("5 s after the heartbeats the resolver still shows quality %v", quality(refreshed))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("quality 1 seen %s after the heartbeats", time.Since(start).Round(time.Millisecond))
	if q := quality(never); q != 0.5 {
		t.Errorf("with QualityMaxAge negative, quality %v; want the 0.5 it was fetched with", q)
	}
}
