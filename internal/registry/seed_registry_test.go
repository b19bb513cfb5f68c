package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/verify"
)

// tutorial is a service written against the tutorial's protocol: it
// answers POST /api/v1/verify/ (form fields challenge and secret) with
// JSON {"reply": <response phrase>, "secret": <the secret received>}.
type tutorial struct {
	srv *httptest.Server

	mu        sync.Mutex
	reply     string // the phrase it answers with
	badSecret bool   // echo another secret
	notJSON   bool   // answer with text
	calls     int
	challenge string // of the last callback
	secret    string
	ctype     string
}

func newTutorial(tb testing.TB) *tutorial {
	tb.Helper()
	s := newUnstartedTutorial(tb)
	s.srv.Start()
	return s
}

// newUnstartedTutorial returns a tutorial service that listens but serves
// only once s.srv.Start is called: until then a callback waits in its
// listen backlog, as it does for the tutorial's own services while their
// registration request is in flight.
func newUnstartedTutorial(tb testing.TB) *tutorial {
	tb.Helper()
	s := &tutorial{reply: registry.DefaultSeedConfig().Response}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/verify/", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		s.mu.Lock()
		s.calls++
		s.challenge, s.secret, s.ctype = r.PostForm.Get("challenge"), r.PostForm.Get("secret"), r.Header.Get("Content-Type")
		reply, secret, notJSON := s.reply, s.secret, s.notJSON
		if s.badSecret {
			secret = "not-" + secret
		}
		s.mu.Unlock()
		if notJSON {
			w.Write([]byte("That is why I carry an umbrella"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"name": "fetch_url", "url": "http://127.0.0.1", "port": 0, "reply": reply, "secret": secret})
	})
	s.srv = httptest.NewUnstartedServer(mux)
	tb.Cleanup(s.srv.Close)
	return s
}

// addr is the service's address as the tutorial protocol gives it.
func (s *tutorial) addr() registry.SeedAddr {
	return registry.SeedAddr{Scheme: "http", Host: "127.0.0.1", Port: s.srv.Listener.Addr().(*net.TCPAddr).Port}
}

// last returns the last callback's form fields and content type, and how
// many callbacks arrived.
func (s *tutorial) last() (challenge, secret, ctype string, calls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.challenge, s.secret, s.ctype, s.calls
}

func (s *tutorial) set(fn func(s *tutorial)) {
	s.mu.Lock()
	fn(s)
	s.mu.Unlock()
}

// seedInterval is the tutorial protocol's heartbeat interval in these
// tests; its instances' TTL is three of them.
const seedInterval = 2 * time.Second

// withSeed turns the tutorial protocol on for services fetch_url and
// seed-*.
func withSeed() func(*rigOptions) {
	return withConfig(func(c *registry.Config) {
		sc := registry.DefaultSeedConfig()
		sc.HeartbeatInterval = seedInterval
		sc.Services = []string{"fetch_url", "seed-*"}
		c.Seed = &sc
	})
}

// startSeed admits the tutorial service at addr for service, calling
// from remote, and starts its registration; it returns the pending
// verification, or the error of either step.
func (r *rig) startSeed(tb testing.TB, remote, service string, addr registry.SeedAddr) (*registry.SeedVerification, error) {
	tb.Helper()
	adm, err := r.reg.AdmitSeed(remote, service)
	if err != nil {
		return nil, err
	}
	return r.reg.RegisterSeed(tb.Context(), adm, addr)
}

// waitSeed waits (at most 10 s) for a pending verification's outcome.
func waitSeed(tb testing.TB, v *registry.SeedVerification) (*catalog.Instance, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	inst, err := v.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		tb.Fatal("the verification did not end in 10s")
	}
	return inst, err
}

// registerSeed admits and registers the tutorial service s for service,
// waits for its verification, failing the test on any error, and returns
// the instance and its secret.
func (r *rig) registerSeed(tb testing.TB, service string, s *tutorial) (*catalog.Instance, string) {
	tb.Helper()
	v, err := r.startSeed(tb, "127.0.0.1:40000", service, s.addr())
	if err != nil {
		tb.Fatalf("RegisterSeed: %v", err)
	}
	inst, err := waitSeed(tb, v)
	if err != nil {
		tb.Fatalf("verification: %v", err)
	}
	if inst.ID != v.ID {
		tb.Fatalf("committed as %s, announced as %s", inst.ID, v.ID)
	}
	_, secret, _, _ := s.last()
	return inst, secret
}

func TestRegistry_SeedEnabled(t *testing.T) {
	if newRig(t).reg.SeedEnabled() {
		t.Fatal("enabled without a SeedConfig")
	}
	if !newRig(t, withSeed()).reg.SeedEnabled() {
		t.Fatal("not enabled with a SeedConfig")
	}
}

func TestRegistry_AdmitSeed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		off      bool
		notReady bool
		service  string
		want     errCheck
	}{
		{"off", true, true, "fetch_url", is(registry.ErrSeedOff)},
		{"not ready", false, true, "Bad Name", is(registry.ErrNotReady)},
		{"bad name", false, false, "Bad Name", fieldErr("service")},
		{"out of scope", false, false, "web", is(registry.ErrSeedScope)},
		{"service of /v1 instances", false, false, "seed-v1", is(catalog.ErrProtocolMix)},
		{"service of seed instances", false, false, "seed-old", nil},
		{"admitted by name", false, false, "fetch_url", nil},
		{"admitted by pattern", false, false, "seed-new", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []func(*rigOptions){}
			if !tc.off {
				opts = append(opts, withSeed())
			}
			r := newRig(t, opts...)
			r.put(t, catalog.Instance{ID: "v1", Service: "seed-v1"})
			r.commit(t, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{
				ID: catalog.SeedKeyID, SecretHash: catalog.HashSecret("seed"), Services: []string{"*"}}})
			old := catalog.Instance{ID: "old", Service: "seed-old", Address: "10.0.0.2", Port: 80, Scheme: "http",
				TTL: time.Minute, DeregisterAfter: time.Hour, Status: catalog.StatusPassing, RegisteredAt: r.clock.Now().UTC(),
				TokenHash: catalog.HashSecret("old"), KeyID: catalog.SeedKeyID}
			r.commit(t, catalog.Command{Op: catalog.OpRegister, Instance: &old, Rules: catalog.RulesCurrent})
			if tc.notReady {
				r.notReady()
			}
			_, err := r.reg.AdmitSeed("192.0.2.7:5000", tc.service)
			checkErr(t, err, tc.want)
		})
	}
}

// TestRegistry_RegisterSeed: the phrase exchange registers an ordinary
// instance under the tutorial protocol's key, which is created once.
func TestRegistry_RegisterSeed(t *testing.T) {
	r := newRig(t, withSeed())
	a, b := newTutorial(t), newTutorial(t)
	now := r.clock.Now()

	inst, secret := r.registerSeed(t, "fetch_url", a)
	challenge, _, ctype, calls := a.last()
	if calls != 1 || challenge != registry.DefaultSeedConfig().Challenge || ctype != "application/x-www-form-urlencoded" || len(secret) != 43 {
		t.Fatalf("callback: %d calls, challenge %q, secret %q, content type %q", calls, challenge, secret, ctype)
	}
	want := catalog.Instance{ID: inst.ID, Service: "fetch_url", Address: "127.0.0.1", Port: a.addr().Port, Scheme: "http",
		TTL: 3 * seedInterval, DeregisterAfter: 30 * seedInterval, KeyID: catalog.SeedKeyID, Proof: api.ProofAddressPort,
		Status: catalog.StatusPassing, RegisteredAt: now.UTC(), TokenHash: catalog.HashSecret(secret),
		Meta: map[string]string{"protocol": "seed"}}
	if !hexID.MatchString(inst.ID) {
		t.Fatalf("ID %q", inst.ID)
	}
	checkInstance(t, inst, &want)
	stored, ok := r.cat.Instance(inst.ID)
	if !ok {
		t.Fatal("not in the catalog")
	}
	want.CreateIndex, want.ModifyIndex = r.cat.Index(), r.cat.Index()
	checkInstance(t, stored, &want)
	if seen, ok := r.tracker().Seen(inst.ID); !ok || !seen.Equal(now) {
		t.Fatalf("tracker: %v %v", seen, ok)
	}
	if k, ok := r.cat.Key(catalog.SeedKeyID); !ok || !k.Allows("fetch_url") {
		t.Fatalf("seed key %+v %v", k, ok)
	}

	inst2, _ := r.registerSeed(t, "fetch_url", b)
	if inst2.ID == inst.ID {
		t.Fatal("two instances with one ID")
	}
	if got := r.prop.count(catalog.OpRegister); got != 2 {
		t.Fatalf("%d registrations proposed, want 2", got)
	}
	if got := r.prop.count(catalog.OpCreateKey); got != 1 {
		t.Fatalf("%d create_key proposed, want 1", got)
	}
	for _, c := range r.prop.proposed() {
		if c.Op == catalog.OpRegister && (c.Reason != "seed" || c.Rules != catalog.RulesCurrent) {
			t.Fatalf("registration proposed as %+v", c)
		}
	}

	// Registering the same address again replaces the instance.
	inst3, secret3 := r.registerSeed(t, "fetch_url", a)
	if _, ok := r.cat.Instance(inst.ID); ok {
		t.Fatal("the replaced instance is still there")
	}
	if _, ok := r.tracker().Seen(inst.ID); ok {
		t.Fatal("the replaced instance's heartbeats are remembered")
	}
	if secret3 == secret || inst3.ID == inst.ID {
		t.Fatal("a re-registration reused the secret or ID")
	}
	if got := r.prop.count(catalog.OpCreateKey); got != 1 {
		t.Fatalf("%d create_key proposed, want 1", got)
	}
}

// TestRegistry_RegisterSeed_errors: a service that fails the exchange is
// refused, and nothing (not even the seed key) is created. What needs no
// answer from the service is refused by RegisterSeed itself; the answer's
// faults end the verification that RegisterSeed started.
func TestRegistry_RegisterSeed_errors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(tb testing.TB, s *tutorial, addr *registry.SeedAddr)
		allow   []netip.Prefix
		started bool // RegisterSeed accepted it: the refusal is the verification's
		want    errCheck
		called  bool
	}{
		{"wrong phrase", func(_ testing.TB, s *tutorial, _ *registry.SeedAddr) { s.reply = "It is sunny" }, nil, true, verifyErr(api.ReasonBadProof), true},
		{"wrong secret", func(_ testing.TB, s *tutorial, _ *registry.SeedAddr) { s.badSecret = true }, nil, true, verifyErr(api.ReasonBadProof), true},
		// The tutorial protocol has no key: every network failure is one
		// reason (the callback is no port scanner).
		{"not JSON", func(_ testing.TB, s *tutorial, _ *registry.SeedAddr) { s.notJSON = true }, nil, true, verifyErr(api.ReasonUnreachable), true},
		{"nothing there", func(tb testing.TB, _ *tutorial, a *registry.SeedAddr) { a.Port = closedPort(tb) }, nil, true, verifyErr(api.ReasonUnreachable), false},
		{"name that cannot resolve", func(_ testing.TB, _ *tutorial, a *registry.SeedAddr) { a.Host = "no-such-host.onion" }, nil, false, verifyErr(api.ReasonUnreachable), false},
		{"outside the allowlist", func(testing.TB, *tutorial, *registry.SeedAddr) {}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, false, is(registry.ErrAddressNotAllowed), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, withSeed(), withVerify(func(c *verify.Config) {
				if tc.allow != nil {
					c.Allow = tc.allow
				}
			}))
			s := newTutorial(t)
			addr := s.addr()
			s.set(func(s *tutorial) { tc.setup(t, s, &addr) })
			v, err := r.startSeed(t, "127.0.0.1:40000", "fetch_url", addr)
			if tc.started {
				if err != nil {
					t.Fatalf("RegisterSeed: %v, want the verification started", err)
				}
				_, err = waitSeed(t, v)
			} else if v != nil {
				t.Fatalf("RegisterSeed started a verification, want %v", err)
			}
			checkErr(t, err, tc.want)
			if _, _, _, calls := s.last(); (calls == 1) != tc.called {
				t.Fatalf("%d callbacks", calls)
			}
			if cmds := r.prop.proposed(); len(cmds) != 0 {
				t.Fatalf("proposed %+v", cmds)
			}
			if n := len(r.cat.Instances()); n != 0 {
				t.Fatalf("%d instances", n)
			}
		})
	}
}

// TestRegistry_RegisterSeed_rateLimit: the tutorial protocol has no key,
// so failures are limited per caller network and address. A failure
// spends when its verification ends; the limit refuses the next
// registration at once.
func TestRegistry_RegisterSeed_rateLimit(t *testing.T) {
	r := newRig(t, withSeed(), withConfig(func(c *registry.Config) { c.FailureBurst, c.FailureEvery = 1, time.Minute }))
	s := newTutorial(t)
	s.set(func(s *tutorial) { s.reply = "wrong" })
	try := func(remote string) error {
		v, err := r.startSeed(t, remote, "fetch_url", s.addr())
		if err != nil {
			return err
		}
		_, err = waitSeed(t, v)
		return err
	}
	checkErr(t, try("192.0.2.7:5000"), verifyErr(api.ReasonBadProof))
	checkErr(t, try("192.0.2.7:5001"), rateLimited("address", time.Minute))
	checkErr(t, try("192.0.2.8:5000"), verifyErr(api.ReasonBadProof))
	// An IPv6 caller is limited by its /64.
	checkErr(t, try("[2001:db8:1:2::1]:5000"), verifyErr(api.ReasonBadProof))
	checkErr(t, try("[2001:db8:1:2::ffff]:5000"), rateLimited("address", time.Minute))
	if _, _, _, calls := s.last(); calls != 3 {
		t.Fatalf("%d callbacks, want 3", calls)
	}
}

// TestRegistry_protocolMix: a service holds instances of one protocol
// only, whichever front end asks.
func TestRegistry_protocolMix(t *testing.T) {
	t.Run("seed into a /v1 service", func(t *testing.T) {
		r := newRig(t, withSeed())
		_, secret := r.key(t, "*")
		s := newTutorial(t)
		adm, err := r.reg.AdmitSeed("127.0.0.1:40000", "fetch_url")
		if err != nil {
			t.Fatal(err)
		}
		// A /v1 instance arrives between admission and commit.
		in := newInstance(t, secret)
		r.register(t, secret, "fetch_url", in, at(in))
		v, err := r.reg.RegisterSeed(t.Context(), adm, s.addr())
		if err != nil {
			t.Fatal(err)
		}
		_, err = waitSeed(t, v)
		checkErr(t, err, is(catalog.ErrProtocolMix))
		_, err = r.reg.AdmitSeed("127.0.0.1:40000", "fetch_url")
		checkErr(t, err, is(catalog.ErrProtocolMix))
	})
	t.Run("/v1 into a seed service", func(t *testing.T) {
		r := newRig(t, withSeed())
		_, secret := r.key(t, "*")
		r.registerSeed(t, "fetch_url", newTutorial(t))
		in := newInstance(t, secret)
		_, err := r.reg.Register(t.Context(), r.admit(t, secret, "fetch_url"), at(in))
		checkErr(t, err, is(catalog.ErrProtocolMix))
		if in.CallCount() != 1 {
			t.Fatalf("%d callbacks", in.CallCount())
		}
	})
}

func TestRegistry_SeedPing(t *testing.T) {
	r := newRig(t, withSeed())
	s := newTutorial(t)
	inst, secret := r.registerSeed(t, "fetch_url", s)
	addr := s.addr()
	other := addr
	other.Port = closedPort(t)
	https := addr
	https.Scheme = "https"
	for _, tc := range []struct {
		name     string
		off      bool
		notReady bool
		service  string
		addr     registry.SeedAddr
		secret   string
		want     errCheck
	}{
		{"off", true, true, "fetch_url", addr, secret, is(registry.ErrSeedOff)},
		{"not ready", false, true, "fetch_url", addr, "", is(registry.ErrNotReady)},
		{"wrong secret", false, false, "fetch_url", addr, "not-" + secret, is(registry.ErrInstanceNotFound)},
		{"no secret", false, false, "fetch_url", addr, "", is(registry.ErrInstanceNotFound)},
		{"another service", false, false, "seed-x", addr, secret, is(registry.ErrInstanceNotFound)},
		{"another port", false, false, "fetch_url", other, secret, is(registry.ErrInstanceNotFound)},
		{"another scheme", false, false, "fetch_url", https, secret, is(registry.ErrInstanceNotFound)},
		{"right secret", false, false, "fetch_url", addr, secret, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := r.reg
			if tc.off {
				reg = newRig(t).reg
			}
			r.lead.set(!tc.notReady, r.clock.Now().Add(-time.Hour))
			r.clock.Advance(time.Second)
			r.prop.reset()
			status, err := reg.SeedPing(t.Context(), tc.service, tc.addr, tc.secret)
			checkErr(t, err, tc.want)
			seen, _ := r.tracker().Seen(inst.ID)
			if err != nil {
				if status != "" || seen.Equal(r.clock.Now()) {
					t.Fatalf("refused ping: status %q, beat recorded %v", status, seen.Equal(r.clock.Now()))
				}
				return
			}
			if status != catalog.StatusPassing || !seen.Equal(r.clock.Now()) || len(r.prop.proposed()) != 0 {
				t.Fatalf("status %q, beat at %v (now %v), proposed %v", status, seen, r.clock.Now(), r.prop.proposed())
			}
		})
	}

	t.Run("critical", func(t *testing.T) {
		r.lead.set(true, r.clock.Now().Add(-time.Hour))
		r.commit(t, catalog.Command{Op: catalog.OpSetStatus, ID: inst.ID, Status: catalog.StatusCritical})
		r.prop.reset()
		status, err := r.reg.SeedPing(t.Context(), "fetch_url", addr, secret)
		if err != nil || status != catalog.StatusPassing {
			t.Fatalf("SeedPing = %q, %v", status, err)
		}
		cmds := r.prop.proposed()
		if len(cmds) != 1 || cmds[0].Op != catalog.OpSetStatus || cmds[0].ID != inst.ID ||
			cmds[0].Status != catalog.StatusPassing || cmds[0].IfStatus != catalog.StatusCritical {
			t.Fatalf("proposed %+v", cmds)
		}
	})
}
