package health_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/testutil"
)

// proposer applies commands straight to a catalog with an incrementing
// index: the seam where Raft sits in production, minus replication.
type proposer struct {
	mu   sync.Mutex
	cat  *catalog.Catalog
	idx  uint64
	cmds []catalog.Command // every command proposed, in order
	// race, when set, runs once before the next command is applied, to
	// commit a competing change first (a heartbeat, an API call).
	race func(p *proposer)
	// err, when set, fails every proposal as a lost leadership would.
	err error
}

func (p *proposer) Apply(_ context.Context, cmd catalog.Command) (catalog.Result, error) {
	p.mu.Lock()
	race := p.race
	p.race = nil
	p.mu.Unlock()
	if race != nil {
		race(p)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return catalog.Result{}, p.err
	}
	p.cmds = append(p.cmds, cmd)
	p.idx++
	res := p.cat.Apply(p.idx, cmd)
	return res, res.Err // folded, as cluster.Node.Apply does
}

// commit applies cmd outside the sweep and fails tb if it fails.
func (p *proposer) commit(tb testing.TB, cmd catalog.Command) {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idx++
	if res := p.cat.Apply(p.idx, cmd); res.Err != nil {
		tb.Fatalf("commit %s %s: %v", cmd.Op, cmd.ID, res.Err)
	}
}

// proposed returns the commands the sweeper proposed so far.
func (p *proposer) proposed() []catalog.Command {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]catalog.Command(nil), p.cmds...)
}

// leadership is a settable Leadership: the seam where the cluster layer
// sits in production. ok, when set, decides for each call whether this
// node is still a ready leader (n counts the calls, from 1).
type leadership struct {
	mu    sync.Mutex
	since time.Time
	calls int
	ok    func(n int) bool
}

func (l *leadership) Ready() (<-chan struct{}, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.ok != nil && !l.ok(l.calls) {
		return make(chan struct{}), time.Time{}
	}
	ch := make(chan struct{})
	close(ch)
	return ch, l.since
}

func (l *leadership) count() int { l.mu.Lock(); defer l.mu.Unlock(); return l.calls }

// clock is a settable clock for SweepConfig.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// Times of the sweep tests: this node became leader at leaderSince; with
// the grace, no instance's clock starts before floor.
const (
	grace           = 10 * time.Second
	ttl             = 3 * time.Second
	deregisterAfter = 30 * time.Second
)

var (
	leaderSince = epoch
	floor       = epoch.Add(grace)
)

// rig is a sweeper over a real catalog and tracker.
type rig struct {
	cat     *catalog.Catalog
	tracker *health.Tracker
	prop    *proposer
	clock   *clock
	logs    *testutil.Buffer
	sweeper *health.Sweeper
}

func newRig(tb testing.TB) *rig {
	tb.Helper()
	r := &rig{
		cat:     catalog.New(),
		tracker: health.NewTracker(),
		clock:   &clock{now: leaderSince},
		logs:    &testutil.Buffer{},
	}
	r.prop = &proposer{cat: r.cat}
	cfg := health.DefaultSweepConfig()
	cfg.Now = r.clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(r.logs, nil))
	r.sweeper = health.NewSweeper(cfg, r.liveness(grace, &leadership{since: leaderSince}), r.cat, r.prop)
	r.prop.commit(tb, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{
		ID: "k1", SecretHash: catalog.HashSecret("k1"), Services: []string{"*"},
	}})
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("sweeper log:\n%s", r.logs.String())
		}
	})
	return r
}

// liveness returns a Liveness over the rig's tracker.
func (r *rig) liveness(grace time.Duration, l health.Leadership) *health.Liveness {
	return health.NewLiveness(health.LivenessConfig{Grace: grace}, r.tracker, l, nil)
}

// register commits a registration of id with the given status, without a
// heartbeat.
// register commits an instance with the given status; "draining" means a
// passing instance that then drains.
func (r *rig) register(tb testing.TB, id string, status catalog.Status) {
	tb.Helper()
	committed := status
	if status == catalog.StatusDraining {
		committed = catalog.StatusPassing
	}
	r.prop.commit(tb, catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
		ID: id, Service: "web", Address: "10.0.0.1", Port: len(r.cat.Instances()) + 1000,
		TTL: ttl, DeregisterAfter: deregisterAfter, TokenHash: catalog.HashSecret(id),
		KeyID: "k1", Status: committed, RegisteredAt: leaderSince.Add(-time.Hour),
	}})
	if status == catalog.StatusDraining {
		r.prop.commit(tb, catalog.Command{Op: catalog.OpDrain, ID: id})
	}
}

// sweepAt runs one sweep at time t.
func (r *rig) sweepAt(t time.Time) {
	r.clock.Set(t)
	r.sweeper.Sweep(context.Background(), floor)
	r.sweeper.Collect()
}

// status returns id's status, or "" if it left the catalog.
func (r *rig) status(id string) catalog.Status {
	inst, ok := r.cat.Instance(id)
	if !ok {
		return ""
	}
	if inst.Status == catalog.StatusPassing && inst.Draining {
		return catalog.StatusDraining
	}
	return inst.Status
}

func TestSweeper_Sweep(t *testing.T) {
	const ns = time.Nanosecond
	F := func(d time.Duration) time.Time { return floor.Add(d) }
	tests := []struct {
		name   string
		status catalog.Status
		beat   time.Time // zero: never heard since this node became leader
		now    time.Time
		want   catalog.Status // "" means removed
		// removedNext means a second sweep at the same instant removes the
		// instance; otherwise it changes nothing.
		removedNext bool
	}{
		{name: "heard, TTL not yet past", status: "passing", beat: F(5 * time.Second), now: F(5*time.Second + ttl), want: "passing"},
		{name: "heard, TTL past", status: "passing", beat: F(5 * time.Second), now: F(5*time.Second + ttl + ns), want: "critical"},
		{name: "draining, TTL past", status: "draining", beat: F(0), now: F(ttl + ns), want: "critical"},
		{name: "draining, TTL not yet past", status: "draining", beat: F(0), now: F(ttl), want: "draining"},

		// Mass-expiry protection: with no heartbeat heard since this node
		// became leader, the clock starts at the floor.
		{name: "not heard, before leader's grace ends", status: "passing", now: leaderSince.Add(ttl + ns), want: "passing"},
		{name: "not heard, at floor+TTL", status: "passing", now: F(ttl), want: "passing"},
		{name: "not heard, after floor+TTL", status: "passing", now: F(ttl + ns), want: "critical"},
		{name: "heard before floor counts from floor", status: "passing", beat: F(-5 * time.Second), now: F(ttl), want: "passing"},
		{name: "heard before floor, after floor+TTL", status: "passing", beat: F(-5 * time.Second), now: F(ttl + ns), want: "critical"},
		{name: "not heard, critical, at floor+deregister_after", status: "critical", now: F(deregisterAfter), want: "critical"},
		{name: "not heard, critical, after floor+deregister_after", status: "critical", now: F(deregisterAfter + ns), want: ""},
		{name: "not heard, critical, long before floor", status: "critical", now: leaderSince, want: "critical"},

		// Removal.
		// deregister_after counts from the last heartbeat (docs/openapi.json:
		// "removed once this long has passed since its last heartbeat").
		{name: "critical, deregister_after not yet past", status: "critical", beat: F(0), now: F(deregisterAfter), want: "critical"},
		{name: "critical, deregister_after just past", status: "critical", beat: F(0), now: F(deregisterAfter + ns), want: ""},
		{name: "critical, deregister_after and TTL past", status: "critical", beat: F(0), now: F(ttl + deregisterAfter + ns), want: ""},
		{name: "not heard, critical, long after floor", status: "critical", now: F(ttl + deregisterAfter + ns), want: ""},
		// One step per sweep: a long-silent passing instance turns critical
		// first, and is removed by the next sweep.
		{name: "passing is never removed in one sweep", status: "passing", beat: F(0), now: F(time.Hour), want: "critical", removedNext: true},

		// A heartbeat after expiry keeps the instance. Turning it passing
		// again is the heartbeat handler's job, not the sweeper's.
		{name: "heartbeat after expiry", status: "critical", beat: F(20 * time.Second), now: F(20*time.Second + deregisterAfter), want: "critical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.register(t, "i1", tt.status)
			if !tt.beat.IsZero() {
				r.tracker.Beat("i1", tt.beat)
			}
			r.sweepAt(tt.now)
			if got := r.status("i1"); got != tt.want {
				t.Errorf("status = %q, want %q (commands: %+v)", got, tt.want, r.prop.proposed())
			}
			if _, heard := r.tracker.Seen("i1"); tt.want == "" && heard {
				t.Error("tracker still holds the removed instance")
			}
			if strings.Contains(r.logs.String(), "level=WARN") {
				t.Errorf("sweep logged a warning:\n%s", r.logs)
			}
			if tt.removedNext {
				r.sweepAt(tt.now)
				if got := r.status("i1"); got != "" {
					t.Errorf("after a second sweep status = %q, want removed", got)
				}
				return
			}
			// Otherwise another sweep at the same instant changes nothing.
			before := len(r.prop.proposed())
			r.sweepAt(tt.now)
			if got := r.status("i1"); got != tt.want {
				t.Errorf("after a second sweep status = %q, want %q", got, tt.want)
			}
			if n := len(r.prop.proposed()); n != before {
				t.Errorf("second sweep at the same time proposed %v", r.prop.proposed()[before:])
			}
		})
	}
}

func TestSweeper_Sweep_commands(t *testing.T) {
	r := newRig(t)
	r.register(t, "p", catalog.StatusPassing)
	r.register(t, "d", catalog.StatusDraining)
	r.register(t, "c", catalog.StatusCritical)
	r.sweepAt(floor.Add(time.Hour))
	got := map[string]catalog.Command{}
	for _, cmd := range r.prop.proposed() {
		got[cmd.ID] = cmd
	}
	want := map[string]catalog.Command{
		"p": {Op: catalog.OpSetStatus, ID: "p", Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing, Reason: "ttl expired"},
		"d": {Op: catalog.OpSetStatus, ID: "d", Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing, Reason: "ttl expired"},
		"c": {Op: catalog.OpDeregister, ID: "c", IfStatus: catalog.StatusCritical, Reason: "deregister_after expired"},
	}
	if len(got) != len(want) || len(r.prop.proposed()) != len(want) {
		t.Fatalf("proposed %+v, want one command per instance", r.prop.proposed())
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("command for %s = %+v, want %+v", id, got[id], w)
		}
	}
}

// TestSweeper_Sweep_lifecycle follows one instance through heartbeats,
// expiry, a heartbeat-driven recovery, silence and removal, sweeping every
// 250ms of simulated time.
func TestSweeper_Sweep_lifecycle(t *testing.T) {
	r := newRig(t)
	r.register(t, "i1", catalog.StatusPassing)
	r.register(t, "other", catalog.StatusPassing)
	const step = 250 * time.Millisecond
	lastBeat := time.Time{}
	var transitions []string
	prev := r.status("i1")
	now := floor
	for now.Before(floor.Add(2 * time.Minute)) {
		now = now.Add(step)
		off := now.Sub(floor)
		// Heartbeats every second for 10s, then silence until 20s, then
		// beats again until 30s, then silence for good.
		if (off <= 10*time.Second || off > 20*time.Second && off <= 30*time.Second) && off%time.Second == 0 {
			r.tracker.Beat("i1", now)
			lastBeat = now
			// A heartbeat to a critical instance commits it passing, as the
			// heartbeat handler does.
			if r.status("i1") == catalog.StatusCritical {
				r.prop.commit(t, catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical})
			}
		}
		r.tracker.Beat("other", now)
		r.sweepAt(now)
		if s := r.status("i1"); s != prev {
			transitions = append(transitions, string(s)+"@"+off.String())
			prev = s
			switch s {
			case catalog.StatusCritical:
				if age := now.Sub(lastBeat); age <= ttl || age > ttl+step {
					t.Errorf("critical at %v, %v after the last beat; want within one sweep of TTL %v", off, age, ttl)
				}
			case "":
				if age := now.Sub(lastBeat); age <= deregisterAfter || age > deregisterAfter+step {
					t.Errorf("removed at %v, %v after the last beat", off, age)
				}
			}
		}
	}
	want := []string{"critical@13.25s", "passing@21s", "critical@33.25s", "@1m0.25s"}
	if !slices.Equal(transitions, want) {
		t.Errorf("transitions = %v, want %v (\"\" is removal)", transitions, want)
	}
	if _, ok := r.tracker.Seen("i1"); ok {
		t.Error("tracker still holds the removed instance")
	}
	if r.status("other") != catalog.StatusPassing {
		t.Errorf("instance heartbeating all along is %q", r.status("other"))
	}
}

func TestSweeper_Sweep_forgets(t *testing.T) {
	r := newRig(t)
	r.register(t, "kept", catalog.StatusPassing)
	r.register(t, "gone", catalog.StatusCritical)
	r.tracker.Beat("kept", floor)
	r.tracker.Beat("gone", floor)
	r.tracker.Beat("ghost", floor) // deregistered elsewhere, or never committed
	r.sweepAt(floor.Add(ttl + deregisterAfter + time.Second))
	if r.status("gone") != "" {
		t.Fatalf("gone = %q, want removed", r.status("gone"))
	}
	ids := r.tracker.IDs()
	if len(ids) != 1 || ids[0] != "kept" {
		t.Errorf("tracker IDs after sweep = %v, want [kept]", ids)
	}
}

func TestSweeper_Sweep_races(t *testing.T) {
	tests := []struct {
		name   string
		status catalog.Status
		// race commits a competing change just before the sweep's command.
		race       catalog.Command
		now        time.Duration // after floor
		want       catalog.Status
		wantForget bool
	}{
		{
			name:   "heartbeat revives before removal",
			status: catalog.StatusCritical,
			race:   catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical},
			now:    time.Hour,
			want:   catalog.StatusPassing,
		},
		{
			name:       "deregistered before expiry",
			status:     catalog.StatusPassing,
			race:       catalog.Command{Op: catalog.OpDeregister, ID: "i1"},
			now:        time.Hour,
			want:       "",
			wantForget: true, // by the sweep's clean-up of IDs no longer in the catalog
		},
		{
			name:       "deregistered before removal",
			status:     catalog.StatusCritical,
			race:       catalog.Command{Op: catalog.OpDeregister, ID: "i1"},
			now:        time.Hour,
			want:       "",
			wantForget: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.register(t, "i1", tt.status)
			r.tracker.Beat("i1", floor)
			r.prop.race = func(p *proposer) { p.commit(t, tt.race) }
			r.sweepAt(floor.Add(tt.now))
			if got := r.status("i1"); got != tt.want {
				t.Errorf("status = %q, want %q", got, tt.want)
			}
			if _, heard := r.tracker.Seen("i1"); heard == tt.wantForget {
				t.Errorf("tracker holds i1 = %v, want %v", heard, !tt.wantForget)
			}
			if logs := r.logs.String(); strings.Contains(logs, "level=WARN") || strings.Contains(logs, "level=INFO") {
				t.Errorf("a lost race was logged as a change or a failure:\n%s", logs)
			}
		})
	}
}

func TestSweeper_Sweep_proposeError(t *testing.T) {
	r := newRig(t)
	r.register(t, "a", catalog.StatusPassing)
	r.register(t, "b", catalog.StatusCritical)
	r.tracker.Beat("b", floor)
	r.prop.err = errors.New("not leader")
	r.sweepAt(floor.Add(time.Hour))
	if r.status("a") != catalog.StatusPassing || r.status("b") != catalog.StatusCritical {
		t.Errorf("statuses = %q, %q; a failed proposal must change nothing", r.status("a"), r.status("b"))
	}
	if _, ok := r.tracker.Seen("b"); !ok {
		t.Error("tracker forgot an instance whose removal failed")
	}
	if n := strings.Count(r.logs.String(), "level=WARN"); n != 2 {
		t.Errorf("logged %d warnings, want one per failed command:\n%s", n, r.logs)
	}
}

// unavailable is an error of the replication layer meaning "no write can
// be taken now" (a full disk, a lost leadership).
type unavailable string

func (e unavailable) Error() string   { return string(e) }
func (unavailable) Unavailable() bool { return true }

// TestSweeper_Sweep_unavailable: when the replication layer can take no
// write (a full disk), a pass stops at the first refusal: one proposal
// and one warning per sweep, not one per expired instance.
func TestSweeper_Sweep_unavailable(t *testing.T) {
	r := newRig(t)
	for _, id := range []string{"a", "b", "c", "d"} {
		r.register(t, id, catalog.StatusPassing)
	}
	calls := 0
	r.prop.err = unavailable("disk full")
	var count func(*proposer)
	count = func(p *proposer) { calls++; p.mu.Lock(); p.race = count; p.mu.Unlock() } // re-armed: every proposal
	r.prop.race = count
	r.sweepAt(floor.Add(time.Hour))
	if calls != 1 {
		t.Errorf("%d proposals in one pass, want 1", calls)
	}
	if n := strings.Count(r.logs.String(), "level=WARN"); n != 1 {
		t.Errorf("logged %d warnings, want 1:\n%s", n, r.logs)
	}
	r.prop.err, r.prop.race = nil, nil
	r.sweepAt(floor.Add(time.Hour))
	for _, id := range []string{"a", "b", "c", "d"} {
		if r.status(id) != catalog.StatusCritical {
			t.Errorf("%s is %s after the disk came back", id, r.status(id))
		}
	}
}

// TestSweeper_Sweep_freshRegistration sweeps between a registration's
// commit and its first tracker beat: the register handler commits the
// instance through Raft and only then calls Tracker.Beat, so a sweep long
// after the floor can see an instance with no heartbeat yet. Its TTL must
// run from RegisteredAt, not from the floor.
func TestSweeper_Sweep_freshRegistration(t *testing.T) {
	r := newRig(t)
	now := floor.Add(time.Hour)
	r.prop.commit(t, catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
		ID: "new", Service: "web", Address: "10.0.0.1", Port: 80,
		TTL: ttl, DeregisterAfter: deregisterAfter, TokenHash: catalog.HashSecret("new"),
		KeyID: "k1", Status: catalog.StatusPassing, RegisteredAt: now,
	}})
	r.sweepAt(now)
	if got := r.status("new"); got != catalog.StatusPassing {
		t.Errorf("instance registered at %v, swept at the same instant: status %q, want passing", now, got)
	}
}

func TestSweeper_Run(t *testing.T) {
	t.Run("stops when no longer leader", func(t *testing.T) {
		r := newRig(t)
		r.register(t, "i1", catalog.StatusPassing)
		cfg := health.SweepConfig{Interval: time.Millisecond, Now: r.clock.Now}
		lead := &leadership{since: leaderSince, ok: func(n int) bool { return n <= 3 }}
		s := health.NewSweeper(cfg, r.liveness(grace, lead), r.cat, r.prop)
		// Past TTL counted from leaderSince, but not from leaderSince+grace.
		r.clock.Set(leaderSince.Add(ttl + time.Second))
		s.Run(context.Background())
		if calls := lead.count(); calls != 4 {
			t.Errorf("leadership read %d times, want 4", calls)
		}
		if got := r.status("i1"); got != catalog.StatusPassing {
			t.Errorf("status = %q: Run did not add the grace to leaderSince", got)
		}
		r.clock.Set(floor.Add(ttl + time.Nanosecond))
		lead2 := &leadership{since: leaderSince, ok: func(n int) bool { return n <= 1 }}
		s = health.NewSweeper(cfg, r.liveness(grace, lead2), r.cat, r.prop)
		s.Run(context.Background())
		if got := r.status("i1"); got != catalog.StatusCritical {
			t.Errorf("status = %q, want critical after floor+TTL", got)
		}
	})
	t.Run("stops when ctx ends", func(t *testing.T) {
		r := newRig(t)
		cfg := health.SweepConfig{Interval: time.Hour, Now: r.clock.Now}
		lead := &leadership{since: leaderSince}
		s := health.NewSweeper(cfg, r.liveness(grace, lead), r.cat, r.prop)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.Run(ctx)
		if n := lead.count(); n != 0 {
			t.Errorf("leadership read %d times after ctx ended", n)
		}
	})
}

func TestSweepConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     health.SweepConfig
		wantErr bool
	}{
		{"default", health.DefaultSweepConfig(), false},
		{"interval only", health.SweepConfig{Interval: time.Second}, false},
		{"zero interval", health.SweepConfig{}, true},
		{"negative interval", health.SweepConfig{Interval: -time.Second}, true},
		{"negative pause threshold", health.SweepConfig{Interval: time.Second, PauseAfter: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

// slowProposer commits like proposer, but each commit takes a while, as
// with a slow disk.
type slowProposer struct {
	*proposer
	delay time.Duration
}

func (p slowProposer) Apply(ctx context.Context, cmd catalog.Command) (catalog.Result, error) {
	time.Sleep(p.delay)
	return p.proposer.Apply(ctx, cmd)
}

// TestSweeper_Run_slowSweepIsNotAPause: sweeps that take longer than the
// pause threshold (many commits, a slow disk) must not be taken for a
// pause of the process, which would restart every expiry clock.
func TestSweeper_Run_slowSweepIsNotAPause(t *testing.T) {
	r := newRig(t)
	for _, id := range []string{"a", "b", "c"} {
		r.register(t, id, catalog.StatusPassing)
	}
	var paused atomic.Int32
	cfg := health.DefaultSweepConfig()
	cfg.Interval, cfg.PauseAfter = 20*time.Millisecond, 400*time.Millisecond
	cfg.OnPause = func(time.Time, time.Duration) { paused.Add(1) }
	// The node has led for an hour: every instance is long expired, so the
	// first sweep commits three slow status changes (about 0.9 s).
	live := r.liveness(0, &leadership{since: time.Now().Add(-time.Hour)})
	sw := health.NewSweeper(cfg, live, r.cat, slowProposer{r.prop, 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	sw.Run(ctx)
	if n := paused.Load(); n != 0 {
		t.Fatalf("a slow sweep was taken for a pause %d times", n)
	}
	if got := r.status("a"); got == catalog.StatusPassing {
		t.Fatal("a is still passing: the sweep did not run")
	}
}
