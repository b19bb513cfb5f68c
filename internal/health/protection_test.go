package health_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
)

// fleet simulates instances that heartbeat at about TTL/3 with ±10%
// jitter, as the SDK does, against a real catalog, tracker, Liveness and
// Sweeper, on a simulated clock that moves one sweep interval per step.
// A heartbeat to a critical instance commits it passing, as the
// heartbeat handler does.
type fleet struct {
	r     *rig
	live  *health.Liveness
	sw    *health.Sweeper
	lead  *leadership
	rnd   *rand.Rand
	now   time.Time
	ids   []string
	next  map[string]time.Time // next heartbeat; zero while silent
	beat  map[string]time.Time // last heartbeat
	crit  map[string]time.Time // when each was first committed critical
	holds []time.Time          // every sweep time at which expiry was held
	// pattern, when set for an instance, replaces its regular interval:
	// the gaps after its heartbeats, in turn (see gap).
	pattern map[string][]time.Duration
	step    map[string]int
}

// sweepStep is the simulated sweep interval.
const sweepStep = 250 * time.Millisecond

// newFleet registers the instances of services (name → count), with
// protection p, and heartbeats them for warm (from the floor, each at its
// own phase) so that the tracker knows their usual interval.
func newFleet(tb testing.TB, p health.ProtectionConfig, services map[string]int, warm time.Duration) *fleet {
	tb.Helper()
	r := newRig(tb)
	f := &fleet{r: r, lead: &leadership{since: leaderSince}, rnd: rand.New(rand.NewPCG(1, 2)),
		next: map[string]time.Time{}, beat: map[string]time.Time{}, crit: map[string]time.Time{},
		pattern: map[string][]time.Duration{}, step: map[string]int{}}
	f.live = health.NewLiveness(health.LivenessConfig{Grace: grace, Protection: p}, r.tracker, f.lead, nil)
	cfg := health.DefaultSweepConfig()
	cfg.Now = r.clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(r.logs, nil))
	f.sw = health.NewSweeper(cfg, f.live, r.cat, r.prop)
	port := 1000
	for _, svc := range sortedKeys(services) {
		for i := range services[svc] {
			id := fmt.Sprintf("%s-%02d", svc, i)
			port++
			r.prop.commit(tb, catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
				ID: id, Service: svc, Address: "10.0.0.1", Port: port,
				TTL: ttl, DeregisterAfter: deregisterAfter, TokenHash: catalog.HashSecret(id),
				KeyID: "k1", Status: catalog.StatusPassing, RegisteredAt: leaderSince.Add(-time.Hour),
			}})
			f.ids = append(f.ids, id)
			f.next[id] = floor.Add(time.Duration(f.rnd.Float64() * float64(ttl/3)))
		}
	}
	f.now = floor
	f.run(tb, warm, nil)
	if len(f.crit) > 0 || len(f.holds) > 0 {
		tb.Fatalf("warm-up: critical %v, held at %v", f.crit, f.holds)
	}
	return f
}

func sortedKeys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// interval returns a heartbeat interval: TTL/3 with ±10% jitter.
func (f *fleet) interval() time.Duration {
	i := ttl / 3
	return i + time.Duration((f.rnd.Float64()*0.2-0.1)*float64(i))
}

// gap returns the time from id's heartbeat to its next: its pattern's
// next gap if it has one, a regular interval otherwise.
func (f *fleet) gap(id string) time.Duration {
	p := f.pattern[id]
	if len(p) == 0 {
		return f.interval()
	}
	g := p[f.step[id]%len(p)]
	f.step[id]++
	return g
}

// silence stops the heartbeats of ids.
func (f *fleet) silence(ids []string) {
	for _, id := range ids {
		f.next[id] = time.Time{}
	}
}

// resume starts the heartbeats of ids again, each within one interval.
func (f *fleet) resume(ids []string) {
	for _, id := range ids {
		f.next[id] = f.now.Add(time.Duration(f.rnd.Float64() * float64(ttl/3)))
	}
}

// run moves the clock by d, a sweep interval at a time: the heartbeats
// due in each interval, then a sweep at its end. After every sweep it
// checks that readers and the sweep agree (an instance is critical to a
// reader exactly when the catalog has it critical), and calls each, if
// set.
func (f *fleet) run(tb testing.TB, d time.Duration, each func(now time.Time)) {
	tb.Helper()
	for end := f.now.Add(d); f.now.Before(end); {
		to := f.now.Add(sweepStep)
		for _, id := range f.ids {
			for n := f.next[id]; !n.IsZero() && !n.After(to); n = f.next[id] {
				f.r.tracker.Beat(id, n)
				f.beat[id] = n
				if f.r.status(id) == catalog.StatusCritical {
					f.r.prop.commit(tb, catalog.Command{Op: catalog.OpSetStatus, ID: id, Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical})
				}
				f.next[id] = n.Add(f.gap(id))
			}
		}
		f.now = to
		f.r.clock.Set(to)
		f.sw.Sweep(context.Background(), floor)
		if f.live.Protecting(floor, to) {
			f.holds = append(f.holds, to)
		}
		for _, inst := range f.r.cat.Instances() {
			committed := inst.Status == catalog.StatusCritical
			if committed {
				if _, ok := f.crit[inst.ID]; !ok {
					f.crit[inst.ID] = to
				}
			}
			if read := f.live.Status(inst, floor, to) == catalog.StatusCritical; read != committed {
				tb.Fatalf("at floor%+v %s: a reader sees critical=%v, the catalog has %s", to.Sub(floor), inst.ID, read, inst.Status)
			}
		}
		if each != nil {
			each(to)
		}
	}
}

// group returns the IDs of instances chosen by sel: "even" (every other
// instance), "first:N" (the first N), or a prefix of their IDs.
func (f *fleet) group(sel string) []string {
	var out []string
	n := -1
	fmt.Sscanf(sel, "first:%d", &n)
	for i, id := range f.ids {
		if sel == "even" && i%2 == 0 || n >= 0 && i < n || sel != "even" && n < 0 && strings.HasPrefix(id, sel) {
			out = append(out, id)
		}
	}
	return out
}

// fleet100 is 100 instances: one service of 40 and six of 10.
var fleet100 = map[string]int{"big": 40, "s1": 10, "s2": 10, "s3": 10, "s4": 10, "s5": 10, "s6": 10}

// testProtection is the default protection with a hold of at most 30s.
func testProtection() health.ProtectionConfig {
	p := health.DefaultProtectionConfig()
	p.MaxHold = 30 * time.Second
	return p
}

// TestProtection_resumeInsideHold is the first scenario: the
// heartbeats of half of 100 instances stop at once; none expires; they
// resume inside the hold; none ever expired, the hold let go by itself,
// and it was counted once.
func TestProtection_resumeInsideHold(t *testing.T) {
	f := newFleet(t, testProtection(), fleet100, 10*time.Second)
	half := f.group("even")
	stopped := f.now
	f.silence(half)
	f.run(t, 10*time.Second, nil)
	if len(f.holds) == 0 {
		t.Fatal("no hold while half the fleet was silent")
	}
	if first := f.holds[0].Sub(stopped); first > ttl {
		t.Errorf("the hold began %v after the silence, after a TTL", first)
	}
	f.resume(half)
	f.run(t, 20*time.Second, nil)
	if len(f.crit) > 0 {
		t.Fatalf("expired: %v", f.crit)
	}
	for _, c := range f.r.prop.proposed() {
		t.Errorf("the sweep proposed %+v", c)
	}
	if f.live.Protecting(floor, f.now) {
		t.Fatal("still protecting after heartbeats came back")
	}
	last := f.holds[len(f.holds)-1]
	if last.Sub(stopped) >= testProtection().MaxHold {
		t.Errorf("the hold ran to its bound (%v); it should have let go when heartbeats came back", last.Sub(stopped))
	}
	p := f.live.Protection(floor, f.now)
	if p.Activations != 1 || p.Active {
		t.Errorf("Protection = %+v, want one activation, inactive", p)
	}
	logs := f.r.logs.String()
	if !strings.Contains(logs, "mass-expiry protection on") || !strings.Contains(logs, "overdue=") || !strings.Contains(logs, "heartbeats are back") {
		t.Errorf("the log does not say when and why protection started and ended:\n%s", logs)
	}
}

// TestProtection_heldUntilBound: a mass silence that never ends (half the
// fleet across services, or one whole service of 40 while the rest is
// healthy: a real death protection cannot tell from a split) is held, no
// instance of it expires before the hold's bound, and each expires within
// one sweep of it. The healthy instances never expire, and the end of the
// hold does not start another.
func TestProtection_heldUntilBound(t *testing.T) {
	for _, tc := range []struct{ name, group string }{
		{"half the fleet", "even"},
		{"one whole service of 40", "big-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testProtection()
			f := newFleet(t, p, fleet100, 10*time.Second)
			dead := f.group(tc.group)
			f.silence(dead)
			f.run(t, p.MaxHold+time.Minute, nil)
			if len(f.holds) == 0 {
				t.Fatal("never held")
			}
			prot := f.live.Protection(floor, f.now)
			if prot.Activations != 1 {
				t.Errorf("%d activations, want 1", prot.Activations)
			}
			for _, id := range dead {
				at, ok := f.crit[id]
				switch {
				case !ok:
					t.Errorf("%s never expired", id)
				case at.Before(prot.Until):
					t.Errorf("%s expired at floor%+v, before the bound floor%+v", id, at.Sub(floor), prot.Until.Sub(floor))
				case at.Sub(prot.Until) > sweepStep:
					t.Errorf("%s expired %v after the bound, more than a sweep", id, at.Sub(prot.Until))
				}
			}
			if len(f.crit) != len(dead) {
				t.Errorf("%d instances expired, want the %d silent ones", len(f.crit), len(dead))
			}
			if !strings.Contains(f.r.logs.String(), "the hold reached its maximum") {
				t.Errorf("the end of the hold is not logged:\n%s", f.r.logs)
			}
		})
	}
}

// TestProtection_singleServiceExpiresOnTime is the last
// scenario: one service of 10 among 100 stops; no hold, and each of its
// instances expires at the first sweep after its TTL ran out. So does a
// small catalog that dies whole (below MinInstances), and half the fleet
// with protection off.
func TestProtection_singleServiceExpiresOnTime(t *testing.T) {
	off := testProtection()
	off.Enabled = false
	for _, tc := range []struct {
		name     string
		p        health.ProtectionConfig
		services map[string]int
		group    string
	}{
		{"one service of 10 among 100", testProtection(), fleet100, "s3-"},
		{"a catalog of 10, all dead", testProtection(), map[string]int{"s1": 10}, "s1-"},
		{"half the fleet, protection off", off, fleet100, "even"},
		{"a quarter of the fleet", testProtection(), fleet100, "first:25"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, tc.p, tc.services, 10*time.Second)
			dead := f.group(tc.group)
			f.silence(dead)
			f.run(t, 2*ttl, nil)
			if len(f.holds) > 0 {
				t.Fatalf("held at %v", f.holds)
			}
			for _, id := range dead {
				at, ok := f.crit[id]
				due := f.beat[id].Add(ttl)
				if !ok || at.Before(due) || at.Sub(due) > sweepStep {
					t.Errorf("%s: last beat floor%+v, critical at floor%+v (%v), want within a sweep of its TTL", id, f.beat[id].Sub(floor), at.Sub(floor), ok)
				}
			}
			if len(f.crit) != len(dead) {
				t.Errorf("%d instances expired, want %d", len(f.crit), len(dead))
			}
		})
	}
}

// TestProtection_wholeGroupHeld: a group just above the threshold (31 of
// 100), whose last heartbeats are spread over a whole interval, is
// recognised before the first of it expires, so not one of it expires
// while the hold is on: the rule judges overdue heartbeats, long before
// TTLs run out.
func TestProtection_wholeGroupHeld(t *testing.T) {
	for seed := range uint64(20) {
		f := newFleet(t, testProtection(), map[string]int{"a": 31, "b": 69}, 10*time.Second)
		f.rnd = rand.New(rand.NewPCG(seed, 7))
		f.resume(f.ids) // a fresh phase per seed
		f.run(t, 5*time.Second, nil)
		f.silence(f.group("a-"))
		f.run(t, 20*time.Second, nil)
		if len(f.holds) == 0 || len(f.crit) > 0 {
			t.Fatalf("seed %d: held at %d sweeps; expired %v", seed, len(f.holds), f.crit)
		}
	}
}

// TestProtection_releaseGivesOneTTL: when heartbeats come back for all
// but two of the silent instances, the hold lets go; the two still silent
// get one more TTL from that moment, not less (so that one a little late
// is not lost), and not more.
func TestProtection_releaseGivesOneTTL(t *testing.T) {
	f := newFleet(t, testProtection(), fleet100, 10*time.Second)
	half := f.group("even")
	f.silence(half)
	f.run(t, 8*time.Second, nil)
	f.resume(half[2:])
	var released time.Time
	f.run(t, 10*time.Second, func(now time.Time) {
		if released.IsZero() && !f.live.Protecting(floor, now) {
			released = now
		}
	})
	if released.IsZero() {
		t.Fatal("the hold did not let go")
	}
	for _, id := range half[:2] {
		at, ok := f.crit[id]
		due := released.Add(ttl)
		if !ok || at.Before(due) || at.Sub(due) > sweepStep {
			t.Errorf("%s: released at floor%+v, critical at floor%+v (%v); want within a sweep of one TTL later", id, released.Sub(floor), at.Sub(floor), ok)
		}
	}
	if len(f.crit) != 2 {
		t.Errorf("expired %v, want the two still silent", f.crit)
	}
}

// TestProtection_resumedHoldKeepsBound: a second wave of silence soon
// after a hold let go resumes the same hold: it is counted again, but its
// bound stands, so flapping cannot hold expiries for ever.
func TestProtection_resumedHoldKeepsBound(t *testing.T) {
	p := testProtection()
	f := newFleet(t, p, fleet100, 10*time.Second)
	half := f.group("even")
	f.silence(half)
	f.run(t, 5*time.Second, nil)
	first := f.live.Protection(floor, f.now)
	f.resume(half)
	f.run(t, 5*time.Second, nil)
	if f.live.Protecting(floor, f.now) {
		t.Fatal("the hold did not let go when heartbeats came back")
	}
	f.silence(half)
	f.run(t, p.MaxHold, nil)
	second := f.live.Protection(floor, f.now)
	if second.Activations != 2 || !second.Until.Equal(first.Until) {
		t.Fatalf("after a second wave: %+v; first hold %+v", second, first)
	}
	for _, id := range half {
		if at, ok := f.crit[id]; !ok || at.Before(first.Until) || at.Sub(first.Until) > sweepStep {
			t.Errorf("%s critical at floor%+v (%v), want at the first hold's bound floor%+v", id, at.Sub(floor), ok, first.Until.Sub(floor))
		}
	}
}

// TestProtection_newFloor: a hold belongs to the floor it was taken
// under. After a pause (or a new term) it no longer counts: readers judge
// from the new floor, which already holds every expiry until it has
// passed, and the next sweep drops the hold.
func TestProtection_newFloor(t *testing.T) {
	f := newFleet(t, testProtection(), fleet100, 10*time.Second)
	f.silence(f.group("even"))
	f.run(t, 5*time.Second, nil)
	if !f.live.Protecting(floor, f.now) {
		t.Fatal("no hold")
	}
	f.live.Rebase(f.now)
	newFloor, _ := f.live.Floor()
	if f.live.Protecting(newFloor, f.now) || f.live.Protection(newFloor, f.now).Active {
		t.Fatal("a hold taken under the old floor holds under the new one")
	}
	f.sw.Sweep(context.Background(), newFloor)
	if !strings.Contains(f.r.logs.String(), "judged afresh from a new floor") {
		t.Errorf("dropping the hold is not logged:\n%s", f.r.logs)
	}
	if f.live.Protecting(floor, f.now) {
		t.Error("the old floor's hold survived the sweep under the new floor")
	}
}

func TestProtectionConfig_Validate(t *testing.T) {
	def := health.DefaultProtectionConfig()
	with := func(fn func(*health.ProtectionConfig)) health.ProtectionConfig { c := def; fn(&c); return c }
	tests := []struct {
		name    string
		cfg     health.ProtectionConfig
		wantErr bool
	}{
		{"default", def, false},
		{"off, zero", health.ProtectionConfig{}, false},
		{"off, nonsense", health.ProtectionConfig{Threshold: 7, MaxHold: -1}, false},
		{"threshold 0", with(func(c *health.ProtectionConfig) { c.Threshold = 0 }), true},
		{"threshold 1", with(func(c *health.ProtectionConfig) { c.Threshold = 1 }), true},
		{"threshold 30 (a percentage)", with(func(c *health.ProtectionConfig) { c.Threshold = 30 }), true},
		{"no minimum", with(func(c *health.ProtectionConfig) { c.MinInstances = 0 }), true},
		{"factor 1", with(func(c *health.ProtectionConfig) { c.OverdueFactor = 1 }), true},
		{"factor 2", with(func(c *health.ProtectionConfig) { c.OverdueFactor = 2 }), false},
		{"no hold", with(func(c *health.ProtectionConfig) { c.MaxHold = 0 }), true},
		{"cooldown 0 (as long as the maximum hold)", with(func(c *health.ProtectionConfig) { c.Cooldown = 0 }), false},
		{"cooldown 1s", with(func(c *health.ProtectionConfig) { c.Cooldown = time.Second }), false},
		{"negative cooldown", with(func(c *health.ProtectionConfig) { c.Cooldown = -time.Second }), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
			lc := health.DefaultLivenessConfig()
			lc.Protection = tt.cfg
			if err := lc.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("LivenessConfig.Validate() = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

// BenchmarkSweeper_Sweep measures an idle pass (100,000 live instances,
// every one heard recently, nothing due) with protection off and on. A
// pass judges only what is due, so this is its fixed cost, which the
// registry pays every sweep interval (250 ms) whatever the catalog's
// size. The first pass, which judges everyone, is outside the timing.
func BenchmarkSweeper_Sweep(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("protection=%v", on), func(b *testing.B) {
			p := health.DefaultProtectionConfig()
			p.Enabled = on
			r := newRig(b)
			live := health.NewLiveness(health.LivenessConfig{Grace: grace, Protection: p}, r.tracker, &leadership{since: leaderSince}, nil)
			cfg := health.DefaultSweepConfig()
			cfg.Now = r.clock.Now
			sw := health.NewSweeper(cfg, live, r.cat, r.prop)
			for i := range 100000 {
				id := fmt.Sprintf("i%06d", i)
				r.prop.commit(b, catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
					ID: id, Service: fmt.Sprintf("s%d", i%100), Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250), Port: 1000 + i%100,
					TTL: ttl, DeregisterAfter: deregisterAfter, TokenHash: catalog.HashSecret(id),
					KeyID: "k1", Status: catalog.StatusPassing, RegisteredAt: leaderSince}})
				for k := range 8 {
					r.tracker.Beat(id, floor.Add(time.Duration(k)*time.Second))
				}
			}
			r.clock.Set(floor.Add(8 * time.Second))
			ctx := context.Background()
			sw.Sweep(ctx, floor)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				sw.Sweep(ctx, floor)
			}
		})
	}
}

// TestProtection_checkOnlyInstances: instances with a TTL of 0 never
// heartbeat (their active checks decide their status). The sweep neither
// expires nor removes them, readers do not judge a TTL for them, and
// protection does not count them: a catalog that is mostly check-only,
// with every heartbeating instance beating, is not a mass event.
func TestProtection_checkOnlyInstances(t *testing.T) {
	f := newFleet(t, testProtection(), map[string]int{"hb": 30}, 5*time.Second)
	for i := range 70 {
		id := fmt.Sprintf("chk-%02d", i)
		f.r.prop.commit(t, catalog.Command{Op: catalog.OpRegister, Rules: catalog.RulesCurrent, Instance: &catalog.Instance{
			ID: id, Service: "chk", Address: "10.0.0.2", Port: 2000 + i, TTL: 0, TokenHash: catalog.HashSecret(id),
			KeyID: "k1", Status: catalog.StatusPassing, RegisteredAt: leaderSince,
			Checks: []catalog.Check{{Type: "tcp", Interval: time.Second, Timeout: time.Second}}}})
	}
	f.run(t, time.Minute, nil)
	if len(f.holds) > 0 || len(f.crit) > 0 || len(f.r.prop.proposed()) > 0 {
		t.Fatalf("held at %v; critical %v; proposed %+v", f.holds, f.crit, f.r.prop.proposed())
	}
	inst, _ := f.r.cat.Instance("chk-00")
	if st := f.live.Status(inst, floor, f.now.Add(time.Hour)); st != catalog.StatusPassing {
		t.Errorf("a check-only instance reads %s an hour on", st)
	}
}
