package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
)

// attempts is an http.RoundTripper that records when each registration
// request (POST …/instances) went out.
type attempts struct {
	mu    sync.Mutex
	times []time.Time
}

func (a *attempts) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/instances") {
		a.mu.Lock()
		a.times = append(a.times, time.Now())
		a.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

func (a *attempts) get() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.times...)
}

// setDefaultLogger makes l slog's default logger until the test ends.
// slog.SetDefault also redirects package log, so that is restored too.
func setDefaultLogger(tb testing.TB, l *slog.Logger) {
	tb.Helper()
	prev, out, flags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(l)
	tb.Cleanup(func() {
		slog.SetDefault(prev)
		log.SetOutput(out)
		log.SetFlags(flags)
	})
}

// TestRegistration_PermanentRefusal: a refusal that retrying cannot fix
// ends Run after one attempt, with an error the service can act on.
func TestRegistration_PermanentRefusal(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, reg.URL(), "svc")
	for _, tc := range []struct {
		name string
		cfg  client.ServiceConfig
		want error
	}{
		{"wrong key", client.ServiceConfig{Name: "svc", Address: "127.0.0.1", Key: "mk_not-a-key"}, client.ErrUnauthorized},
		{"name outside the key's scope", client.ServiceConfig{Name: "other", Address: "127.0.0.1", Key: key}, client.ErrForbidden},
		{"address not allowed", client.ServiceConfig{Name: "svc", Address: "8.8.8.8", Key: key}, client.ErrAddressNotAllowed},
		{"invalid tag", client.ServiceConfig{Name: "svc", Address: "127.0.0.1", Key: key, Tags: []string{"bad tag"}}, client.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tries attempts
			cfg := tc.cfg
			cfg.Port, cfg.Registry, cfg.Logger = freePort(t), reg.URL(), testutil.Logger(t)
			cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
			cfg.HTTPClient = &http.Client{Transport: &tries, Timeout: 5 * time.Second}
			r, err := client.NewRegistration(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			began := time.Now()
			runErr := r.Run(ctx)
			if d := time.Since(began); d > 3*time.Second || ctx.Err() != nil {
				t.Fatalf("Run took %s: it kept retrying a permanent refusal", d)
			}
			for what, err := range map[string]error{"Run": runErr, "Err": r.Err()} {
				if !errors.Is(err, client.ErrRefused) || !errors.Is(err, tc.want) {
					t.Errorf("%s returned %v; want an error matching ErrRefused and %v", what, err, tc.want)
				}
			}
			if _, err := r.WaitRegistered(ctx); err != r.Err() {
				t.Errorf("WaitRegistered returned %v, want Err's %v", err, r.Err())
			}
			if n := len(tries.get()); n != 1 {
				t.Errorf("%d registration attempts, want 1", n)
			}
			if st := r.State(); st.Registered || !errors.Is(st.LastError, tc.want) {
				t.Errorf("state %+v", st)
			}
			t.Logf("Err: %v", r.Err())
		})
	}
}

// TestRegistration_TransientFailuresKeepRetrying: a failed callback (the
// service is still starting) is retried, Err stays nil, and the instance
// registers once its verify handler answers.
func TestRegistration_TransientFailuresKeepRetrying(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, reg.URL(), "slow")
	port := freePort(t)
	var tries attempts
	r, err := client.NewRegistration(client.ServiceConfig{
		Name: "slow", Address: "127.0.0.1", Port: port, Registry: reg.URL(), Key: key, DrainDelay: -1,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: testutil.Logger(t),
		HTTPClient: &http.Client{Transport: &tries, Timeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, 5*time.Second, "three failed attempts", func() bool { return len(tries.get()) >= 3 })
	if err := r.Err(); err != nil {
		t.Fatalf("Err() = %v while retrying a transient failure", err)
	}
	if st := r.State(); st.Registered || !errors.Is(st.LastError, client.ErrVerificationFailed) {
		t.Fatalf("state while nothing answers the callback: %+v", st)
	}
	// The service comes up.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r.VerifyHandler()}
	go srv.Serve(ln)
	defer srv.Close()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if _, err := r.WaitRegistered(wctx); err != nil {
		t.Fatalf("not registered once the callback is answered: %v (%+v)", err, r.State())
	}
	if r.Err() != nil {
		t.Fatalf("Err() = %v after registering", r.Err())
	}
}

// TestRegistration_HonoursRetryAfter: a 429 with Retry-After (the key's
// registration rate) holds the next attempt back at least that long,
// whatever the backoff says.
func TestRegistration_HonoursRetryAfter(t *testing.T) {
	srv := testserver.Start(t, func(c *server.Config) {
		c.AdminToken = adminToken
		c.Registry.RegisterBurst, c.Registry.RegisterEvery = 1, 2*time.Second
	})
	key := newKey(t, srv.URL(), "svc")
	startBackend(t, srv.URL(), key, "svc", "") // spends the burst

	var tries attempts
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := client.NewRegistration(client.ServiceConfig{
		Name: "svc", Address: "127.0.0.1", Listener: ln, Registry: srv.URL(), Key: key, DrainDelay: -1,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: testutil.Logger(t),
		HTTPClient: &http.Client{Transport: &tries, Timeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: r.VerifyHandler()}
	go hs.Serve(ln)
	defer hs.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	eventually(t, 5*time.Second, "the first attempt to be refused", func() bool { return r.State().LastError != nil })
	var e *client.Error
	if le := r.State().LastError; !errors.As(le, &e) || !errors.Is(le, client.ErrQuotaExceeded) || e.RetryAfter < time.Second {
		t.Fatalf("first attempt: %v (Retry-After %v); want quota_exceeded with a Retry-After", le, e)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := r.WaitRegistered(wctx); err != nil {
		t.Fatalf("not registered after the Retry-After: %v (%+v)", err, r.State())
	}
	times := tries.get()
	if len(times) != 2 {
		t.Fatalf("%d registration attempts, want 2: one refused, one after the Retry-After", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < e.RetryAfter {
		t.Fatalf("retried after %s despite Retry-After %s", gap, e.RetryAfter)
	}
	if r.Err() != nil {
		t.Fatalf("Err() = %v: a quota is not a permanent refusal", r.Err())
	}
}

// TestRegistration_LogsByDefault: with no Logger, failures are logged
// through slog.Default(), so a misconfigured service is never silent.
func TestRegistration_LogsByDefault(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	for _, tc := range []struct {
		name     string
		registry string
		key      string
		want     []string
	}{
		{"refused", reg.URL(), "mk_not-a-key", []string{"level=ERROR", "registration refused", "service=quiet", "401 unauthorized"}},
		{"registry down", "http://127.0.0.1:" + fmt.Sprint(freePort(t)), "mk_any", []string{"level=WARN", "registration failed; retrying", "service=quiet", "registry unavailable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs testutil.Buffer
			setDefaultLogger(t, slog.New(slog.NewTextHandler(&logs, nil)))
			r, err := client.NewRegistration(client.ServiceConfig{
				Name: "quiet", Address: "127.0.0.1", Port: freePort(t), Registry: tc.registry, Key: tc.key,
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			r.Run(ctx)
			for _, w := range tc.want {
				if !strings.Contains(logs.String(), w) {
					t.Fatalf("the default logger got no %q; log:\n%s", w, logs.String())
				}
			}
		})
	}
	t.Run("silenced", func(t *testing.T) {
		var logs testutil.Buffer
		setDefaultLogger(t, slog.New(slog.NewTextHandler(&logs, nil)))
		r, err := client.NewRegistration(client.ServiceConfig{
			Name: "quiet", Address: "127.0.0.1", Port: freePort(t), Registry: reg.URL(), Key: "mk_not-a-key",
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Run(context.Background()); !errors.Is(err, client.ErrRefused) {
			t.Fatalf("Run: %v", err)
		}
		if logs.String() != "" {
			t.Fatalf("a discarding Logger still logged:\n%s", logs.String())
		}
	})
}

// TestServe_StopsOnRefusal: Serve with a wrong key returns the refusal
// promptly and stops serving, instead of serving unseen for ever.
func TestServe_StopsOnRefusal(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	served := make(chan error, 1)
	go func() {
		served <- client.Serve(context.Background(), client.ServiceConfig{
			Name: "svc", Address: "127.0.0.1", Listener: ln, Registry: reg.URL(), Key: "mk_not-a-key",
			Logger: testutil.Logger(t),
		}, http.NotFoundHandler())
	}()
	select {
	case err := <-served:
		if !errors.Is(err, client.ErrRefused) || !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("Serve returned %v; want the refusal", err)
		}
		t.Logf("Serve: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve kept running with a wrong key")
	}
	// Closed by Serve: closing it again says so. (Dialing its address
	// instead would meet whatever process took the port since.)
	if err := ln.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve returned but left its listener on %s open (closing it again: %v)", addr, err)
	}
}

// TestServe_BadVerifyPath: a verify path the registry would refuse, or
// that http.ServeMux would panic on, is a configuration error, returned
// before anything listens; a good custom path works end to end.
func TestServe_BadVerifyPath(t *testing.T) {
	for _, p := range []string{"verify", "/verify", "/", "/.well-known/muster/{x", "/.well-known/muster/a b",
		"GET /.well-known/muster/x", "/.well-known/muster/../x", "/.well-known/muster//x"} {
		t.Run(p, func(t *testing.T) {
			cfg := client.ServiceConfig{Name: "svc", Address: "127.0.0.1", Port: freePort(t), Key: "k",
				Registry: "http://127.0.0.1:1", VerifyPath: p}
			var err error
			func() {
				defer func() {
					if v := recover(); v != nil {
						t.Fatalf("Serve panicked: %v", v)
					}
				}()
				err = client.Serve(context.Background(), cfg, http.NotFoundHandler())
			}()
			if err == nil || !strings.Contains(err.Error(), "verify path") {
				t.Fatalf("Serve returned %v; want a verify path error", err)
			}
			if _, err := client.NewRegistration(cfg); err == nil {
				t.Fatal("NewRegistration accepted it")
			}
		})
	}
	t.Run("custom path works", func(t *testing.T) {
		reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
		key := newKey(t, reg.URL(), "custom")
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() {
			served <- client.Serve(ctx, client.ServiceConfig{
				Name: "custom", Address: "127.0.0.1", Listener: ln, Registry: reg.URL(), Key: key, DrainDelay: -1,
				VerifyPath: "/.well-known/muster/v2/check", Logger: testutil.Logger(t),
			}, http.NotFoundHandler())
		}()
		c, _ := client.New(client.Config{Addr: reg.URL()})
		eventually(t, 5*time.Second, "custom to register", func() bool {
			res, err := c.Lookup(context.Background(), "custom")
			return err == nil && len(res.Instances) == 1
		})
		cancel()
		if err := <-served; err != nil {
			t.Fatalf("Serve: %v", err)
		}
	})
}

// TestRegistration_ShutdownAfterReplacement: a deregistration answered
// 403 (the instance ID is no longer this registration's: it was replaced)
// or 404 means the instance is gone already, not a failed shutdown.
func TestRegistration_ShutdownAfterReplacement(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, reg.URL(), "svc")
	// A proxy to the real registry that presents a token other than the
	// instance's on DELETE: the registry answers 403, as it does to the
	// holder of a replaced instance's old token.
	target, _ := url.Parse(reg.URL())
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		if pr.Out.Method == http.MethodDelete {
			pr.Out.Header.Set("Authorization", "Bearer not-this-instances-token")
		}
	}}
	front := &http.Server{Handler: proxy}
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(fln)
	defer front.Close()

	var logs testutil.Buffer
	r, _, cancel, done := runRegistration(t, client.ServiceConfig{
		Name: "svc", Registry: "http://" + fln.Addr().String(), Key: key,
		DrainDelay: -1, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v; a 403 on deregistration means the instance is already gone", err)
	}
	if st := r.State(); st.Registered || st.LastError != nil {
		t.Fatalf("state after shutdown: %+v", st)
	}
	if !strings.Contains(logs.String(), "already left muster") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

func TestDefaultServiceConfig(t *testing.T) {
	cfg := client.DefaultServiceConfig()
	err := cfg.Validate()
	for _, want := range []string{"name", "address", "port", "key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate of the bare defaults: %v; want it to ask for the %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "ttl") || strings.Contains(err.Error(), "backoff") || strings.Contains(err.Error(), "verify path") {
		t.Errorf("the defaults themselves are invalid: %v", err)
	}
	cfg.Name, cfg.Address, cfg.Port, cfg.Key = "svc", "127.0.0.1", 8080, "mk_x"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults plus the required fields: %v", err)
	}
	if _, err := client.NewRegistration(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.VerifyPath != api.DefaultVerifyPath || cfg.TTL != 10*time.Second {
		t.Fatalf("defaults %+v", cfg)
	}
}

// TestRegistration_DrainKeepsHeartbeating: during DrainDelay the instance
// keeps heartbeating, so that a drain longer than its TTL reads
// draining, never critical, until it deregisters.
func TestRegistration_DrainKeepsHeartbeating(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, reg.URL(), "svc")
	admin, _ := client.New(client.Config{Addr: reg.URL()})
	_, st, cancel, done := runRegistration(t, client.ServiceConfig{
		Name: "svc", Registry: reg.URL(), Key: key,
		TTL: time.Second, DrainDelay: 3 * time.Second, Logger: testutil.Logger(t),
	})
	// Past the registry's grace after its election (2 s here), so that
	// only heartbeats keep the instance alive.
	time.Sleep(2500 * time.Millisecond)
	cancel()
	seen := map[string]bool{}
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if !seen["draining"] || seen["critical"] {
				t.Fatalf("statuses while draining: %v", seen)
			}
			return
		case <-time.After(100 * time.Millisecond):
			if in, err := admin.Instance(context.Background(), st.InstanceID); err == nil {
				seen[in.Status] = true
			}
		}
	}
}

// TestRegistration_ChecksOnlyPrivateReads: a checks-only registration,
// which asks the registry whether it still holds it instead of
// heartbeating, does so with its session token, so a registry whose
// reads need a token keeps it registered rather than refusing it into
// registering again and again.
func TestRegistration_ChecksOnlyPrivateReads(t *testing.T) {
	client.SetChecksOnlyPoll(t, 200*time.Millisecond)
	reg := testserver.Start(t, func(c *server.Config) {
		c.DataDir, c.AdminToken, c.Registry.PrivateReads = t.TempDir(), adminToken, true
	})
	key := newKey(t, reg.URL(), "svc")
	r, st, _, _ := runRegistration(t, client.ServiceConfig{
		Name: "svc", Registry: reg.URL(), Key: key, ChecksOnly: true,
		Checks: []api.CheckDecl{{Type: "tcp", Interval: "1s"}}, Logger: testutil.Logger(t),
	})
	time.Sleep(time.Second) // five polls
	now := r.State()
	if now.InstanceID != st.InstanceID || !now.Registered || now.LastError != nil {
		t.Fatalf("after five polls: %+v; registered as %s", now, st.InstanceID)
	}
}

// runRegistration serves cfg's verify handler on a fresh 127.0.0.1
// listener, runs its Registration until the returned cancel, and waits
// until it is registered; done receives Run's result.
func runRegistration(t *testing.T, cfg client.ServiceConfig) (*client.Registration, client.State, context.CancelFunc, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Address, cfg.Listener = "127.0.0.1", ln
	r, err := client.NewRegistration(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: r.VerifyHandler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	st, err := r.WaitRegistered(wctx)
	if err != nil {
		t.Fatal(err)
	}
	return r, st, cancel, done
}
