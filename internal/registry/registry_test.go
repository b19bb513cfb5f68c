package registry_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// The tests build a Registry from real components (catalog, tracker,
// liveness, verifier, instances answering on 127.0.0.1) except the Raft
// seam: proposer applies commands straight to the catalog.

// adminToken is the admin token of every test registry.
const adminToken = "admin-token"

// unavailableError is a replication-layer error meaning "retry later", as
// package cluster's errors are.
type unavailableError string

func (e unavailableError) Error() string   { return string(e) }
func (unavailableError) Unavailable() bool { return true }

// availableError has the method but reports false: it is no reason to
// say ErrUnavailable.
type availableError string

func (e availableError) Error() string   { return string(e) }
func (availableError) Unavailable() bool { return false }

// errNoLeader is what a failing proposer returns in these tests.
const errNoLeader = unavailableError("test: no leader")

// proposer is an in-process Proposer: it applies each command to the
// catalog at the next index, under a mutex, and returns the command's fate
// folded into the error as cluster.Node.Apply does. It records every
// command proposed to it.
type proposer struct {
	cat *catalog.Catalog

	mu     sync.Mutex
	index  uint64
	cmds   []catalog.Command
	err    error                 // when set, returned instead of applying
	before func(catalog.Command) // when set, run before applying, without mu
	after  func(catalog.Command) // when set, run after applying, without mu
	// lose, when set and true for a command, applies it but answers
	// errNoLeader, as a leader lost after committing does.
	lose   func(catalog.Command) bool
	leader string
}

func (p *proposer) Apply(_ context.Context, cmd catalog.Command) (catalog.Result, error) {
	p.mu.Lock()
	p.cmds = append(p.cmds, cmd)
	err, before, after, lose := p.err, p.before, p.after, p.lose
	p.mu.Unlock()
	if err != nil {
		return catalog.Result{}, err
	}
	if before != nil {
		before(cmd)
	}
	res := p.apply(cmd)
	if after != nil {
		after(cmd)
	}
	if lose != nil && lose(cmd) {
		return catalog.Result{}, errNoLeader
	}
	return res, res.Err
}

func (p *proposer) apply(cmd catalog.Command) catalog.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.index++
	return p.cat.Apply(p.index, cmd)
}

func (p *proposer) Leader() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leader
}

// fail makes every later proposal return err (nil: apply again).
func (p *proposer) fail(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// setAfter installs a hook run after each proposed command is applied,
// before Apply returns.
func (p *proposer) setAfter(fn func(catalog.Command)) {
	p.mu.Lock()
	p.after = fn
	p.mu.Unlock()
}

// setBefore installs a hook run before each proposed command is applied.
func (p *proposer) setBefore(fn func(catalog.Command)) {
	p.mu.Lock()
	p.before = fn
	p.mu.Unlock()
}

func (p *proposer) setLeader(addr string) {
	p.mu.Lock()
	p.leader = addr
	p.mu.Unlock()
}

// proposed returns the commands proposed so far.
func (p *proposer) proposed() []catalog.Command {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]catalog.Command(nil), p.cmds...)
}

// count returns how many commands of op were proposed.
func (p *proposer) count(op catalog.Op) int {
	n := 0
	for _, c := range p.proposed() {
		if c.Op == op {
			n++
		}
	}
	return n
}

// reset forgets the commands proposed so far.
func (p *proposer) reset() {
	p.mu.Lock()
	p.cmds = nil
	p.mu.Unlock()
}

// leadership is a settable health.Leadership.
type leadership struct {
	mu      sync.Mutex
	leading bool
	since   time.Time
}

func (l *leadership) Ready() (<-chan struct{}, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan struct{})
	if !l.leading {
		return ch, time.Time{}
	}
	close(ch)
	return ch, l.since
}

func (l *leadership) set(leading bool, since time.Time) {
	l.mu.Lock()
	l.leading, l.since = leading, since
	l.mu.Unlock()
}

// clock is a settable clock for Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// rigOptions are what a test may change before the registry is built.
type rigOptions struct {
	cfg    registry.Config
	verify verify.Config
	grace  time.Duration
}

// rig is a Registry over real components, with the handles a test needs.
type rig struct {
	cat   *catalog.Catalog
	prop  *proposer
	lead  *leadership
	clock *clock
	live  *health.Liveness
	reg   *registry.Registry
}

// newRig returns a registry whose node has led since an hour before the
// clock's start, with no grace: an instance unheard for longer than its
// TTL is critical at once.
func newRig(tb testing.TB, opts ...func(*rigOptions)) *rig {
	tb.Helper()
	o := rigOptions{cfg: registry.DefaultConfig(), verify: verify.DefaultConfig()}
	o.cfg.AdminTokenHash = catalog.HashSecret(adminToken)
	o.cfg.Logger = testutil.Logger(tb)
	for _, opt := range opts {
		opt(&o)
	}
	r := &rig{cat: catalog.New(), clock: &clock{now: time.Now().Truncate(time.Second)}}
	r.prop = &proposer{cat: r.cat, leader: "127.0.0.1:7000"}
	r.lead = &leadership{leading: true, since: r.clock.Now().Add(-time.Hour)}
	r.live = health.NewLiveness(health.LivenessConfig{Grace: o.grace}, health.NewTracker(), r.lead, nil)
	v, err := verify.New(o.verify)
	if err != nil {
		tb.Fatal(err)
	}
	o.cfg.Now = r.clock.Now
	r.reg, err = registry.New(o.cfg, r.cat, r.prop, r.live, v)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.reg.Close) // background verifications end with the test
	return r
}

// withConfig changes the registry's configuration.
func withConfig(fn func(*registry.Config)) func(*rigOptions) {
	return func(o *rigOptions) { fn(&o.cfg) }
}

// withVerify changes the verifier's configuration.
func withVerify(fn func(*verify.Config)) func(*rigOptions) {
	return func(o *rigOptions) { fn(&o.verify) }
}

// withGrace sets the liveness grace.
func withGrace(d time.Duration) func(*rigOptions) {
	return func(o *rigOptions) { o.grace = d }
}

// notReady makes the node lose its leadership.
func (r *rig) notReady() { r.lead.set(false, time.Time{}) }

// tracker returns the heartbeat tracker.
func (r *rig) tracker() *health.Tracker { return r.live.Tracker() }

// commit applies cmd as set-up, outside the registry: it is neither
// recorded nor seen by hooks.
func (r *rig) commit(tb testing.TB, cmd catalog.Command) catalog.Result {
	tb.Helper()
	res := r.prop.apply(cmd)
	if res.Err != nil {
		tb.Fatalf("set-up %s: %v", cmd.Op, res.Err)
	}
	return res
}

// key creates an enrolment key for patterns through the registry and
// returns its ID and secret.
func (r *rig) key(tb testing.TB, patterns ...string) (id, secret string) {
	tb.Helper()
	k, secret, err := r.reg.CreateKey(tb.Context(), adminToken, registry.KeySpec{Services: patterns})
	if err != nil {
		tb.Fatal(err)
	}
	return k.ID, secret
}

// registered is a successful registration as a test sees it.
type registered struct {
	registry.Registered
	// Token is the session token the instance received in the callback.
	Token string
}

// register admits and registers req for service with the key secret,
// failing the test on any error.
func (r *rig) register(tb testing.TB, secret, service string, in *testutil.Instance, req api.RegisterRequest) registered {
	tb.Helper()
	adm, err := r.reg.AdmitKey(context.Background(), secret, service)
	if err != nil {
		tb.Fatalf("AdmitKey: %v", err)
	}
	out, err := r.reg.Register(tb.Context(), adm, req)
	if err != nil {
		tb.Fatalf("Register: %v", err)
	}
	call, ok := in.LastCall()
	if !ok || call.InstanceID != out.ID {
		tb.Fatalf("the instance was not called back for %s (last call %+v)", out.ID, call)
	}
	return registered{Registered: out, Token: call.Token}
}

// admit is AdmitKey that fails the test on error.
func (r *rig) admit(tb testing.TB, secret, service string) registry.Admission {
	tb.Helper()
	adm, err := r.reg.AdmitKey(context.Background(), secret, service)
	if err != nil {
		tb.Fatalf("AdmitKey: %v", err)
	}
	return adm
}

// put commits inst directly, under a key "k-test" that allows any
// service, created on first use. Its token is its ID.
func (r *rig) put(tb testing.TB, inst catalog.Instance) {
	tb.Helper()
	if _, ok := r.cat.Key("k-test"); !ok {
		r.commit(tb, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{
			ID: "k-test", SecretHash: catalog.HashSecret("k-test"), Services: []string{"*"}}})
	}
	if inst.Address == "" {
		inst.Address = "10.0.0.1"
	}
	if inst.Port == 0 {
		inst.Port = 1000 + len(r.cat.Instances())
	}
	if inst.Scheme == "" {
		inst.Scheme = "http"
	}
	if inst.TTL == 0 {
		inst.TTL = 10 * time.Second
		inst.DeregisterAfter = 100 * time.Second
	}
	if inst.Status == "" {
		inst.Status = catalog.StatusPassing
	}
	if inst.RegisteredAt.IsZero() {
		inst.RegisteredAt = r.clock.Now().UTC()
	}
	inst.TokenHash, inst.KeyID = catalog.HashSecret(inst.ID), "k-test"
	r.commit(tb, catalog.Command{Op: catalog.OpRegister, Instance: &inst, Rules: catalog.RulesCurrent})
}

// newInstance starts an instance that answers the callback with the proof
// for secret.
func newInstance(tb testing.TB, secret string) *testutil.Instance {
	tb.Helper()
	return testutil.NewInstance(tb, secret, verify.Proof)
}

// at returns a registration of the instance at its own address.
func at(in *testutil.Instance) api.RegisterRequest {
	return api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()}
}

// answering returns a callback handler that runs before (which may
// block), then answers as a correct instance does.
func answering(in *testutil.Instance, before func()) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		before()
		call, _ := in.LastCall()
		in.Mu.Lock()
		secret := in.Secret
		in.Mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"proof":"` + verify.Proof(secret, call.Challenge) + `"}`))
	}
}

// setHandler replaces the instance's callback handler.
func setHandler(in *testutil.Instance, h http.HandlerFunc) {
	in.Mu.Lock()
	in.Handler = h
	in.Mu.Unlock()
}

// errCheck checks an error a method returned.
type errCheck func(tb testing.TB, err error)

// checkErr applies want to err; a nil want expects no error.
func checkErr(tb testing.TB, err error, want errCheck) {
	tb.Helper()
	if want == nil {
		if err != nil {
			tb.Fatalf("unexpected error: %v (%T)", err, err)
		}
		return
	}
	want(tb, err)
}

// is expects an error matching target by errors.Is.
func is(target error) errCheck {
	return func(tb testing.TB, err error) {
		tb.Helper()
		if !errors.Is(err, target) {
			tb.Fatalf("error %v (%T), want %v", err, err, target)
		}
	}
}

// fieldErr expects a *registry.FieldError naming field.
func fieldErr(field string) errCheck {
	return func(tb testing.TB, err error) {
		tb.Helper()
		var fe *registry.FieldError
		if !errors.As(err, &fe) || fe.Field != field || fe.Message == "" {
			tb.Fatalf("error %v (%T), want a FieldError for %q", err, err, field)
		}
	}
}

// verifyErr expects a *registry.VerifyError with reason.
func verifyErr(reason string) errCheck {
	return func(tb testing.TB, err error) {
		tb.Helper()
		var ve *registry.VerifyError
		if !errors.As(err, &ve) || ve.Reason != reason {
			tb.Fatalf("error %v (%T), want a VerifyError %q", err, err, reason)
		}
		if ve.Message == "" || ve.Error() != ve.Message {
			tb.Fatalf("VerifyError message %q", ve.Message)
		}
	}
}

// rateLimited expects a *registry.RateLimitError naming who, with a wait.
func rateLimited(who string, wait time.Duration) errCheck {
	return func(tb testing.TB, err error) {
		tb.Helper()
		var rle *registry.RateLimitError
		if !errors.As(err, &rle) || rle.Who != who || rle.Wait != wait {
			tb.Fatalf("error %v (%T), want a RateLimitError for %q, wait %s", err, err, who, wait)
		}
		if !strings.Contains(rle.Error(), who) {
			tb.Fatalf("RateLimitError message %q does not name %q", rle.Error(), who)
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	seed := registry.DefaultSeedConfig()
	seed.Services = []string{"fetch_url"}
	for _, tc := range []struct {
		name   string
		change func(*registry.Config)
		ok     bool
	}{
		{"default", func(*registry.Config) {}, true},
		{"default with seed", func(c *registry.Config) { c.Seed = &seed }, true},
		{"no verification slot", func(c *registry.Config) { c.MaxVerifying = 0 }, false},
		{"no failure burst", func(c *registry.Config) { c.FailureBurst = 0 }, false},
		{"no refill", func(c *registry.Config) { c.FailureEvery = 0 }, false},
		{"no least share", func(c *registry.Config) { c.MinVerifyingShare = 0 }, false},
		{"no instance per key", func(c *registry.Config) { c.MaxInstancesPerKey = 0 }, false},
		{"too many instances per key", func(c *registry.Config) { c.MaxInstancesPerKey = registry.MaxKeyInstances + 1 }, false},
		{"no instance per address", func(c *registry.Config) { c.MaxInstancesPerAddress = 0 }, false},
		{"no register burst", func(c *registry.Config) { c.RegisterBurst = 0 }, false},
		{"no register refill", func(c *registry.Config) { c.RegisterEvery = 0 }, false},
		{"bad seed", func(c *registry.Config) { c.Seed = &registry.SeedConfig{} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := registry.DefaultConfig()
			tc.change(&cfg)
			err := cfg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tc.ok)
			}
			v, _ := verify.New(verify.DefaultConfig())
			reg, err := registry.New(cfg, catalog.New(), &proposer{}, health.NewLiveness(health.LivenessConfig{}, health.NewTracker(), &leadership{}, nil), v)
			if (err == nil) != tc.ok || (reg != nil) != tc.ok {
				t.Fatalf("New = %v, %v; want ok %v", reg, err, tc.ok)
			}
		})
	}
}

func TestSeedConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*registry.SeedConfig)
		ok     bool
	}{
		{"default, with services named", func(*registry.SeedConfig) {}, true},
		{"default without services", func(c *registry.SeedConfig) { c.Services = registry.DefaultSeedConfig().Services }, false},
		{"only a wildcard", func(c *registry.SeedConfig) { c.Services = []string{"fetch_url", "*"} }, false},
		{"only wildcards", func(c *registry.SeedConfig) { c.Services = []string{"**"} }, false},
		{"a pattern with a wildcard", func(c *registry.SeedConfig) { c.Services = []string{"seed-*"} }, true},
		{"no challenge", func(c *registry.SeedConfig) { c.Challenge = "" }, false},
		{"no response", func(c *registry.SeedConfig) { c.Response = "" }, false},
		{"interval too short", func(c *registry.SeedConfig) { c.HeartbeatInterval = 99 * time.Millisecond }, false},
		{"shortest interval", func(c *registry.SeedConfig) { c.HeartbeatInterval = 100 * time.Millisecond }, true},
		{"ttl over the maximum", func(c *registry.SeedConfig) { c.HeartbeatInterval = registry.MaxTTL/3 + time.Second }, false},
		{"no services", func(c *registry.SeedConfig) { c.Services = nil }, false},
		{"bad pattern", func(c *registry.SeedConfig) { c.Services = []string{"Web!"} }, false},
		{"no verify timeout", func(c *registry.SeedConfig) { c.VerifyTimeout = 0 }, false},
		{"shortest verify timeout", func(c *registry.SeedConfig) { c.VerifyTimeout = 100 * time.Millisecond }, true},
		{"longest verify timeout", func(c *registry.SeedConfig) { c.VerifyTimeout = registry.MaxSeedVerifyTimeout }, true},
		{"verify timeout too long", func(c *registry.SeedConfig) { c.VerifyTimeout = registry.MaxSeedVerifyTimeout + time.Second }, false},
		{"nothing may be pending", func(c *registry.SeedConfig) { c.MaxPending = 0 }, false},
		{"nothing may be pending per caller", func(c *registry.SeedConfig) { c.MaxPendingPerCaller = 0 }, false},
		{"more pending per caller than in all", func(c *registry.SeedConfig) { c.MaxPendingPerCaller = c.MaxPending + 1 }, false},
		{"all pending from one caller", func(c *registry.SeedConfig) { c.MaxPendingPerCaller = c.MaxPending }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := registry.DefaultSeedConfig()
			c.Services = []string{"fetch_url"}
			tc.change(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestRegistry_Health(t *testing.T) {
	for _, tc := range []struct {
		name    string
		leading bool
		leader  string
	}{
		{"ready leader", true, "127.0.0.1:7000"},
		{"follower that knows the leader", false, "127.0.0.1:7001"},
		{"no leader", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.put(t, catalog.Instance{ID: "a", Service: "web"})
			r.prop.setLeader(tc.leader)
			want := registry.Health{Leader: tc.leader}
			if tc.leading {
				want.Ready, want.Index = true, r.cat.Index()
				if want.Index == 0 {
					t.Fatal("the catalog has applied nothing")
				}
			} else {
				r.notReady()
			}
			if got := r.reg.Health(); got != want {
				t.Fatalf("Health = %+v, want %+v", got, want)
			}
			err := r.reg.Ready()
			if tc.leading && err != nil || !tc.leading && !errors.Is(err, registry.ErrNotReady) {
				t.Fatalf("Ready = %v", err)
			}
		})
	}
}

func TestRegistry_CheckAdmin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noHash bool
		token  string
		want   errCheck
	}{
		{"admin", false, adminToken, nil},
		{"empty", false, "", is(registry.ErrNoCredential)},
		{"wrong", false, "not-the-admin", is(registry.ErrWrongToken)},
		{"hash of the token is not the token", false, string(catalog.HashSecret(adminToken)), is(registry.ErrWrongToken)},
		{"no admin token configured", true, adminToken, is(registry.ErrWrongToken)},
		{"no admin token configured, empty", true, "", is(registry.ErrNoCredential)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, withConfig(func(c *registry.Config) {
				if tc.noHash {
					c.AdminTokenHash = nil
				}
			}))
			checkErr(t, r.reg.CheckAdmin(tc.token), tc.want)
		})
	}
}

// TestRegistry_propose: every write turns the replication layer's
// "retry later" into ErrUnavailable, still wrapping it, and passes other
// errors through.
func TestRegistry_propose(t *testing.T) {
	seed := registry.DefaultSeedConfig()
	seed.Services = []string{"seed-*"}
	writes := []struct {
		name  string
		write func(tb testing.TB, r *rig, f *fixture) error
	}{
		{"Register", func(tb testing.TB, r *rig, f *fixture) error {
			_, err := r.reg.Register(tb.Context(), r.admit(tb, f.secret, "web"), at(f.in))
			return err
		}},
		{"RegisterSeed", func(tb testing.TB, r *rig, f *fixture) error {
			adm, err := r.reg.AdmitSeed("127.0.0.1:5000", "seed-x")
			if err != nil {
				tb.Fatal(err)
			}
			v, err := r.reg.RegisterSeed(tb.Context(), adm, f.tut.addr())
			if err != nil {
				return err
			}
			_, err = v.Wait(tb.Context()) // the commit follows the background callback
			return err
		}},
		{"Heartbeat of a critical instance", func(tb testing.TB, r *rig, f *fixture) error {
			_, _, err := r.reg.Heartbeat(tb.Context(), "crit", "crit")
			return err
		}},
		{"SeedPing of a critical instance", func(tb testing.TB, r *rig, f *fixture) error {
			_, err := r.reg.SeedPing(tb.Context(), "seed-crit", registry.SeedAddr{Scheme: "http", Host: "10.0.0.9", Port: 9}, "seed-crit")
			return err
		}},
		{"Drain", func(tb testing.TB, r *rig, f *fixture) error {
			_, _, err := r.reg.Drain(tb.Context(), "pass", "pass")
			return err
		}},
		{"Deregister", func(tb testing.TB, r *rig, f *fixture) error {
			_, err := r.reg.Deregister(tb.Context(), "pass", adminToken)
			return err
		}},
		{"CreateKey", func(tb testing.TB, r *rig, f *fixture) error {
			_, _, err := r.reg.CreateKey(tb.Context(), adminToken, registry.KeySpec{Services: []string{"x"}})
			return err
		}},
		{"RevokeKey", func(tb testing.TB, r *rig, f *fixture) error {
			return r.reg.RevokeKey(tb.Context(), adminToken, f.keyID)
		}},
	}
	other := errors.New("test: disk on fire")
	for _, w := range writes {
		for _, tc := range []struct {
			name        string
			err         error
			unavailable bool
		}{
			{"unavailable", errNoLeader, true},
			{"wrapped unavailable", errors.Join(errors.New("test: apply"), errNoLeader), true},
			{"Unavailable false", availableError("test: refused"), false},
			{"other", other, false},
		} {
			t.Run(w.name+"/"+tc.name, func(t *testing.T) {
				r := newRig(t, withConfig(func(c *registry.Config) { c.Seed = &seed }))
				f := newFixture(t, r)
				r.prop.fail(tc.err)
				err := w.write(t, r, f)
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v does not wrap the proposer's %v", err, tc.err)
				}
				if got := errors.Is(err, registry.ErrUnavailable); got != tc.unavailable {
					t.Fatalf("errors.Is(%v, ErrUnavailable) = %v, want %v", err, got, tc.unavailable)
				}
				if len(r.prop.proposed()) == 0 {
					t.Fatal("nothing was proposed")
				}
				// No registration started a heartbeat clock. (A heartbeat
				// whose return to passing was refused was still heard.)
				for _, id := range r.tracker().IDs() {
					if id != "crit" && id != "seed-crit" {
						t.Fatalf("tracker holds %s after a refused write", id)
					}
				}
				if _, ok := r.cat.Instance("pass"); !ok {
					t.Fatal("instance gone after a refused write")
				}
			})
		}
	}
}

// fixture is what TestRegistry_propose's writes act on.
type fixture struct {
	keyID, secret string
	in            *testutil.Instance
	tut           *tutorial
}

func newFixture(tb testing.TB, r *rig) *fixture {
	tb.Helper()
	f := &fixture{}
	f.keyID, f.secret = r.key(tb, "web")
	f.in = newInstance(tb, f.secret)
	f.tut = newTutorial(tb)
	r.put(tb, catalog.Instance{ID: "pass", Service: "web-other"})
	r.put(tb, catalog.Instance{ID: "crit", Service: "web-other", Status: catalog.StatusCritical})
	r.commit(tb, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{
		ID: catalog.SeedKeyID, SecretHash: catalog.HashSecret("seed"), Services: []string{"*"}}})
	inst := catalog.Instance{ID: "seed-crit", Service: "seed-crit", Address: "10.0.0.9", Port: 9, Scheme: "http",
		TTL: 30 * time.Second, DeregisterAfter: 300 * time.Second, Status: catalog.StatusCritical,
		RegisteredAt: r.clock.Now().UTC(), TokenHash: catalog.HashSecret("seed-crit"), KeyID: catalog.SeedKeyID}
	r.commit(tb, catalog.Command{Op: catalog.OpRegister, Instance: &inst, Rules: catalog.RulesCurrent})
	r.prop.reset()
	return f
}
