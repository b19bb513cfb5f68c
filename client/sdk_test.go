package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
)

const adminToken = "ma_test-admin-token"

// startRegistry runs a registry on addr (127.0.0.1:0 for any port) over dir.
func startRegistry(tb testing.TB, dir, addr string) *server.Server {
	tb.Helper()
	return testserver.Start(tb, func(c *server.Config) {
		c.HTTPAddr, c.DataDir, c.AdminToken, c.Liveness.Grace = addr, dir, adminToken, 2*time.Second
	})
}

func adminClient(tb testing.TB, url string) *client.Client {
	tb.Helper()
	c, err := client.New(client.Config{Addr: url, Token: adminToken})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func newKey(tb testing.TB, url string, patterns ...string) string {
	tb.Helper()
	k, err := adminClient(tb, url).CreateKey(context.Background(), patterns, "")
	if err != nil {
		tb.Fatal(err)
	}
	return k.Secret
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// eventually polls cond until it holds or d passes (testserver's helper).
var eventually = testserver.Eventually

// backend is a service instance with its own listener and registration;
// kill closes its listener abruptly while the registration lives on.
type backend struct {
	reg  *client.Registration
	srv  *http.Server
	hits atomic.Int64
	stop context.CancelFunc
	done chan error
}

func startBackend(tb testing.TB, registry, key, name, reply string) *backend {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &backend{done: make(chan error, 1)}
	b.reg, err = client.NewRegistration(client.ServiceConfig{
		Name: name, Address: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, TTL: 3 * time.Second,
		Registry: registry, Key: key, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: testutil.Logger(tb), DrainDelay: -1,
	})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(api.DefaultVerifyPath, b.reg.VerifyHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, reply)
	})
	b.srv = &http.Server{Handler: mux}
	go b.srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	go func() { b.done <- b.reg.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		<-b.done
		b.srv.Close()
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := b.reg.WaitRegistered(wctx); err != nil {
		tb.Fatalf("backend never registered: %v (last error %v)", err, b.reg.State().LastError)
	}
	return b
}

func TestServe_RegistersHeartbeatsDeregisters(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, reg.URL(), "greeter")
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- client.Serve(ctx, client.ServiceConfig{
			Name: "greeter", Address: "127.0.0.1", Port: port, TTL: time.Second, Tags: []string{"v1"},
			Registry: reg.URL(), Key: key, DrainDelay: 100 * time.Millisecond, Logger: testutil.Logger(t),
		}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") }))
	}()
	c, _ := client.New(client.Config{Addr: reg.URL()})
	var res client.Result
	eventually(t, 5*time.Second, "greeter to be registered", func() bool {
		var err error
		res, err = c.Lookup(context.Background(), "greeter")
		return err == nil && len(res.Instances) == 1
	})
	id := res.Instances[0].ID
	if res.Instances[0].Port != port || res.Instances[0].Tags[0] != "v1" {
		t.Fatalf("instance = %+v", res.Instances[0])
	}
	// Three TTLs later it is still passing and recently seen: heartbeats work.
	time.Sleep(3 * time.Second)
	got, err := c.Instance(context.Background(), id)
	if err != nil || got.Status != api.StatusPassing || got.LastSeenMS < 0 || got.LastSeenMS > 1000 {
		t.Fatalf("after 3 TTLs: %+v, %v", got, err)
	}
	// The service answers through its own server, with the verify route mounted.
	resp, err := http.Get(res.Instances[0].URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("service said %q", body)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := c.Instance(context.Background(), id); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("after shutdown the instance is still registered: %v", err)
	}
}

func TestRegistration_RegistryDownAtStart(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	first := startRegistry(t, dir, addr)
	key := newKey(t, first.URL(), "late")
	first.Close()

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	r, err := client.NewRegistration(client.ServiceConfig{
		Name: "late", Address: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, TTL: 2 * time.Second,
		Registry: "http://" + addr, Key: key, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		Logger: testutil.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, r.VerifyHandler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	time.Sleep(time.Second)
	st := r.State()
	if st.Registered || st.LastError == nil || !errors.Is(st.LastError, client.ErrUnavailable) {
		t.Fatalf("with no registry: state %+v", st)
	}
	started := time.Now()
	startRegistry(t, dir, addr)
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	st, err = r.WaitRegistered(wctx)
	if err != nil {
		t.Fatalf("not registered within 5s of the registry starting: %+v", r.State())
	}
	t.Logf("registered %s after the registry started", time.Since(started).Round(time.Millisecond))
	if st.InstanceID == "" || st.LastError != nil {
		t.Fatalf("state %+v", st)
	}
}

func TestRegistration_RegistryRestartMidRun(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	reg := startRegistry(t, dir, addr)
	key := newKey(t, reg.URL(), "echo")
	b := startBackend(t, reg.URL(), key, "echo", "ok")
	firstID := b.reg.State().InstanceID

	c, _ := client.New(client.Config{Addr: reg.URL()})
	res, err := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: 50 * time.Millisecond, MaxStale: 3 * time.Second, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if r, err := res.Lookup(ctx, "echo"); err != nil || len(r.Instances) != 1 || r.Stale {
		t.Fatalf("lookup before the outage: %+v, %v", r, err)
	}

	reg.Close()
	downAt := time.Now()
	time.Sleep(100 * time.Millisecond)
	r, err := res.Lookup(ctx, "echo")
	if err != nil || !r.Stale || r.StaleErr == nil || len(r.Instances) != 1 || r.Instances[0].ID != firstID {
		t.Fatalf("lookup during the outage: %+v, %v; want the cached instance marked stale", r, err)
	}
	if r.Age() < 100*time.Millisecond {
		t.Fatalf("stale answer claims age %s", r.Age())
	}
	httpc := res.HTTPClient()
	resp, err := httpc.Get("http://echo/")
	if err != nil {
		t.Fatalf("request through the stale cache: %v", err)
	}
	resp.Body.Close()

	// Past MaxStale the resolver stops pretending.
	time.Sleep(3*time.Second - time.Since(downAt) + 200*time.Millisecond)
	if _, err := res.Lookup(ctx, "echo"); !errors.Is(err, client.ErrStale) {
		t.Fatalf("lookup past max stale: %v, want ErrStale", err)
	}

	startRegistry(t, dir, addr)
	// The service carries on, heartbeating the restarted registry with the
	// same instance (its token survived the restart), or registers again.
	eventually(t, 10*time.Second, "the service to be heard by the restarted registry", func() bool {
		in, err := c.Instance(ctx, b.reg.State().InstanceID)
		return err == nil && in.LastSeenMS >= 0 && b.reg.State().Registered
	})
	if r, err := res.Lookup(ctx, "echo"); err != nil || r.Stale || len(r.Instances) != 1 {
		t.Fatalf("lookup after the restart: %+v, %v", r, err)
	}
}

func TestVerifyHandler_RefusesForgedCallbacks(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, reg.URL(), "svc")
	b := startBackend(t, reg.URL(), key, "svc", "ok")
	h := b.reg.VerifyHandler()
	for _, tc := range []struct {
		name, method, body string
		want               int
	}{
		{"unknown nonce", "POST", `{"service":"svc","instance_id":"x","challenge":"c","nonce":"forged","token":"t"}`, 403},
		{"empty nonce", "POST", `{"service":"svc","instance_id":"x","challenge":"c","nonce":"","token":"t"}`, 403},
		{"not json", "POST", `nope`, 400},
		{"get", "GET", ``, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://x"+api.DefaultVerifyPath, strings.NewReader(tc.body))
			w := &recorder{header: http.Header{}}
			h.ServeHTTP(w, req)
			if w.code != tc.want {
				t.Fatalf("status %d, want %d", w.code, tc.want)
			}
			if strings.Contains(w.body.String(), "proof") {
				t.Fatal("a forged callback got a proof")
			}
		})
	}
	if st := b.reg.State(); !st.Registered {
		t.Fatalf("forged callbacks disturbed the registration: %+v", st)
	}
}

type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(p)
}
func (r *recorder) WriteHeader(c int) { r.code = c }

func TestRegistration_ReRegistersWhenForgotten(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, reg.URL(), "svc")
	b := startBackend(t, reg.URL(), key, "svc", "ok")
	first := b.reg.State().InstanceID
	// An operator removes the instance; its next heartbeat gets 404 and the
	// SDK registers again with a new ID.
	if err := adminClient(t, reg.URL()).Deregister(context.Background(), first, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a new registration", func() bool {
		st := b.reg.State()
		return st.Registered && st.InstanceID != "" && st.InstanceID != first
	})
}

func TestTransport_SpreadsAndRoutesAroundKilledInstance(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, reg.URL(), "echo")
	var backends []*backend
	for i := 0; i < 3; i++ {
		backends = append(backends, startBackend(t, reg.URL(), key, "echo", fmt.Sprint(i)))
	}
	c, _ := client.New(client.Config{Addr: reg.URL()})
	res, _ := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: time.Minute, EjectFor: time.Minute})
	httpc := res.HTTPClient()
	get := func() (string, error) {
		resp, err := httpc.Get("http://echo/work?x=1")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for i := 0; i < 30; i++ {
		if _, err := get(); err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range backends {
		if n := b.hits.Load(); n != 10 {
			t.Errorf("backend %d got %d of 30 requests; round robin should give 10", i, n)
		}
	}

	// Kill one backend without deregistering: the cached lookup still
	// lists it, yet every request succeeds on the others.
	backends[0].srv.Close()
	before := backends[1].hits.Load() + backends[2].hits.Load()
	for i := 0; i < 30; i++ {
		body, err := get()
		if err != nil {
			t.Fatalf("request %d after the kill: %v", i, err)
		}
		if body == "0" {
			t.Fatal("answered by the killed backend")
		}
	}
	if got := backends[1].hits.Load() + backends[2].hits.Load() - before; got != 30 {
		t.Fatalf("survivors served %d of 30", got)
	}

	// A POST without an idempotency key is still retried when the
	// connection was refused, since nothing was sent.
	res.ReportSuccess(backends[0].reg.State().InstanceID) // un-eject, so the dead one is tried again
	before = backends[1].hits.Load() + backends[2].hits.Load()
	for i := 0; i < 6; i++ {
		resp, err := httpc.Post("http://echo/submit", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatalf("POST %d: %v", i, err)
		}
		resp.Body.Close()
	}
	if got := backends[1].hits.Load() + backends[2].hits.Load() - before; got != 6 {
		t.Fatalf("survivors served %d of 6 POSTs", got)
	}

	// Non-service hosts pass through untouched.
	ts := httpTestServer(t)
	resp, err := httpc.Get(ts)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	if _, err := httpc.Get("http://nosuchservice/"); !errors.Is(err, client.ErrNoInstances) {
		t.Fatalf("unknown service: %v", err)
	}
}

func httpTestServer(tb testing.TB) string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

func TestResolver_Strategies(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, reg.URL(), "svc")
	ids := map[string]bool{}
	for i := 0; i < 3; i++ {
		ids[startBackend(t, reg.URL(), key, "svc", "").reg.State().InstanceID] = true
	}
	c, _ := client.New(client.Config{Addr: reg.URL()})
	ctx := context.Background()
	for _, s := range []client.Strategy{client.RoundRobin, client.Random, client.QualityWeighted} {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			res, _ := client.NewResolver(client.ResolverConfig{Client: c, Strategy: s, EjectFor: time.Minute})
			seen := map[string]int{}
			for i := 0; i < 300; i++ {
				in, err := res.Pick(ctx, "svc")
				if err != nil {
					t.Fatal(err)
				}
				if !ids[in.ID] {
					t.Fatalf("picked unknown instance %s", in.ID)
				}
				seen[in.ID]++
			}
			if len(seen) != 3 {
				t.Fatalf("picked %d of 3 instances: %v", len(seen), seen)
			}
			if s == client.RoundRobin {
				for id, n := range seen {
					if n != 100 {
						t.Fatalf("round robin picked %s %d times of 300", id, n)
					}
				}
			}
			// Ejecting two leaves one.
			var ejected []string
			for id := range ids {
				if len(ejected) < 2 {
					res.ReportFailure(id)
					ejected = append(ejected, id)
				}
			}
			for i := 0; i < 20; i++ {
				in, _ := res.Pick(ctx, "svc")
				if in.ID == ejected[0] || in.ID == ejected[1] {
					t.Fatal("picked an ejected instance")
				}
			}
			// All ejected: still answer rather than fail.
			for id := range ids {
				res.ReportFailure(id)
			}
			if _, err := res.Pick(ctx, "svc"); err != nil {
				t.Fatalf("pick with all ejected: %v", err)
			}
		})
	}
}

func TestClient_ErrorsMatchSentinels(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	anon, _ := client.New(client.Config{Addr: reg.URL()})
	admin := adminClient(t, reg.URL())
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"not found", admin.Deregister(ctx, "nope", ""), client.ErrNotFound},
		{"unauthorized", func() error { _, err := anon.Keys(ctx); return err }(), client.ErrUnauthorized},
		{"invalid", func() error { _, err := anon.Lookup(ctx, "Bad.Name"); return err }(), client.ErrInvalid},
		{"forbidden", func() error {
			_, err := anon.Register(ctx, "other", newKey(t, reg.URL(), "svc"), api.RegisterRequest{Address: "127.0.0.1", Port: 1})
			return err
		}(), client.ErrForbidden},
		{"address not allowed", func() error {
			_, err := anon.Register(ctx, "svc", newKey(t, reg.URL(), "svc"), api.RegisterRequest{Address: "8.8.8.8", Port: 1})
			return err
		}(), client.ErrAddressNotAllowed},
		{"verification failed", func() error {
			_, err := anon.Register(ctx, "svc", newKey(t, reg.URL(), "svc"), api.RegisterRequest{Address: "127.0.0.1", Port: freePort(t)})
			return err
		}(), client.ErrVerificationFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.want) {
				t.Fatalf("err %v does not match %v", tc.err, tc.want)
			}
		})
	}
	down, _ := client.New(client.Config{Addr: "http://127.0.0.1:" + fmt.Sprint(freePort(t))})
	if _, err := down.Lookup(ctx, "svc"); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("registry down: %v", err)
	}
}

// TestResolver_HungRegistry: a registry that accepts connections but never
// answers does not make callers queue behind one another; each gets the
// cached answer, marked stale, within its own deadline.
func TestResolver_HungRegistry(t *testing.T) {
	hung, calls := hungRegistry(t)
	c, _ := client.New(client.Config{Addr: hung.URL, HTTPClient: &http.Client{Timeout: 30 * time.Second}})
	res, _ := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: 10 * time.Millisecond, MaxStale: time.Minute})
	if r, err := res.Lookup(context.Background(), "svc"); err != nil || len(r.Instances) != 1 {
		t.Fatalf("first lookup: %+v, %v", r, err)
	}
	time.Sleep(20 * time.Millisecond)
	// A patient caller starts the revalidation; an impatient one arrives
	// while it hangs. The impatient one must not wait for the patient one.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if r, err := res.Lookup(ctx, "svc"); err != nil || !r.Stale {
			t.Errorf("patient lookup: %+v, %v", r, err)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < 3; i++ {
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		r, err := res.Lookup(ctx, "svc")
		cancel()
		if err != nil || !r.Stale || len(r.Instances) != 1 {
			t.Fatalf("impatient lookup against a hung registry: %+v, %v", r, err)
		}
		if d := time.Since(began); d > time.Second {
			t.Fatalf("an impatient lookup took %s: it queued behind the patient one", d)
		}
	}
	wg.Wait()
	if n := calls.Load(); n != 2 {
		t.Fatalf("the registry got %d requests; one revalidation at a time expected 2", n)
	}
}

// TestResolver_RevalidateTimeout: with no deadline of its own, a caller
// still gets the stale answer once RevalidateTimeout has passed, and the
// hung registry is warned about (not blamed on the caller).
func TestResolver_RevalidateTimeout(t *testing.T) {
	hung, _ := hungRegistry(t)
	var logs testutil.Buffer
	c, _ := client.New(client.Config{Addr: hung.URL, HTTPClient: &http.Client{}}) // no timeout at all
	res, _ := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: 10 * time.Millisecond, RevalidateTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if _, err := res.Lookup(context.Background(), "svc"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	began := time.Now()
	r, err := res.Lookup(context.Background(), "svc")
	if err != nil || !r.Stale || !errors.Is(r.StaleErr, client.ErrUnavailable) {
		t.Fatalf("lookup against a hung registry: %+v, %v", r, err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Fatalf("the lookup took %s despite a 200ms revalidation timeout", d)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "registry unreachable") {
		t.Fatalf("no warning about the hung registry; log:\n%s", logs.String())
	}
}

// TestClient_GarbledAnswerIsUnavailable: a 200 whose body is not the
// expected JSON (a proxy truncating it, say) is a transport failure, so a
// resolver falls back to its cache rather than failing hard.
func TestClient_GarbledAnswerIsUnavailable(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/watch" { // a registry without the event stream
			http.NotFound(w, r)
			return
		}
		if calls.Add(1) == 1 {
			fmt.Fprint(w, `{"service":"svc","index":1,"instances":[]}`)
			return
		}
		fmt.Fprint(w, `{"service":"svc","ind`)
	}))
	defer srv.Close()
	c, _ := client.New(client.Config{Addr: srv.URL})
	res, _ := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: time.Millisecond})
	if _, err := res.Lookup(context.Background(), "svc"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := c.Lookup(context.Background(), "svc"); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("garbled answer: %v, want ErrUnavailable", err)
	}
	if r, err := res.Lookup(context.Background(), "svc"); err != nil || !r.Stale {
		t.Fatalf("resolver after a garbled answer: %+v, %v", r, err)
	}
}

// hungRegistry serves one lookup answer for "svc", then accepts requests
// and never answers them, until the test ends. It counts the lookups (a
// resolver's event stream hangs too, uncounted).
func hungRegistry(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	calls := new(atomic.Int32)
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/services/") && calls.Add(1) == 1 {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"service":"svc","index":3,"instances":[{"id":"a","service":"svc","address":"127.0.0.1","port":1,"scheme":"http","url":"http://127.0.0.1:1","tags":[],"meta":{},"status":"passing","last_seen_ms":5,"ttl_ms":10000,"quality":1,"proof":"address+port","registered_at":"2026-01-01T00:00:00Z"}]}`)
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); hung.Close() })
	return hung, calls
}
