package health_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
)

// registerAt commits a passing instance id whose registration time, as
// the log records it, is at; it gets no heartbeat.
func (r *rig) registerAt(tb testing.TB, id string, at time.Time) {
	tb.Helper()
	r.prop.commit(tb, catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
		ID: id, Service: "web", Address: "10.0.0.1", Port: len(r.cat.Instances()) + 2000,
		TTL: ttl, DeregisterAfter: deregisterAfter, TokenHash: catalog.HashSecret(id),
		KeyID: "k1", Status: catalog.StatusPassing, RegisteredAt: at,
	}})
}

// TestSweeper_Sweep_clockSteppedBack: the wall clock stepped back across
// a restart, so an instance the previous process registered has a
// RegisteredAt later than this node's leadership. It is dead (no
// heartbeat comes), and must expire within TTL + grace of the node
// becoming leader (plus one sweep), whatever its registration time says,
// and be removed deregister_after after that base. Sweeps run every 250 ms
// of simulated time from the moment of leadership, as Run does, and the
// readers' Status agrees with the sweep throughout.
func TestSweeper_Sweep_clockSteppedBack(t *testing.T) {
	const step = 250 * time.Millisecond
	for _, back := range []time.Duration{
		time.Second,            // RegisteredAt within the grace: the floor wins anyway
		grace + ttl/2,          // RegisteredAt between floor and floor+TTL
		grace + ttl + step + 1, // just after the first expiry sweep
		time.Hour,
		365 * 24 * time.Hour,
	} {
		t.Run(fmt.Sprintf("stepped back %v", back), func(t *testing.T) {
			r := newRig(t)
			live := r.liveness(grace, &leadership{since: leaderSince})
			cfg := health.DefaultSweepConfig()
			cfg.Now = r.clock.Now
			sw := health.NewSweeper(cfg, live, r.cat, r.prop)
			// The previous process registered it a moment before it was
			// killed, by a clock that read `back` ahead of this one.
			r.registerAt(t, "dead", leaderSince.Add(back-time.Second))

			var criticalAt, removedAt time.Time
			for now := leaderSince.Add(step); now.Before(floor.Add(deregisterAfter + 2*time.Second)); now = now.Add(step) {
				r.clock.Set(now)
				inst, ok := r.cat.Instance("dead")
				if ok && criticalAt.IsZero() {
					// A lookup just before this sweep judges as the sweep will.
					want := catalog.StatusPassing
					if now.Sub(floor) > ttl {
						want = catalog.StatusCritical
					}
					if st := live.Status(inst, floor, now); st != want {
						t.Fatalf("lookup at floor%+v: status %q, want %q", now.Sub(floor), st, want)
					}
				}
				sw.Sweep(context.Background(), floor)
				switch s := r.status("dead"); {
				case s == catalog.StatusCritical && criticalAt.IsZero():
					criticalAt = now
				case s == "" && removedAt.IsZero():
					removedAt = now
				}
			}
			if criticalAt.IsZero() {
				t.Fatalf("never expired (commands %+v)", r.prop.proposed())
			}
			if d := criticalAt.Sub(leaderSince); d <= grace+ttl || d > grace+ttl+step {
				t.Errorf("expired %v after leadership, want within one sweep after TTL+grace (%v)", d, grace+ttl)
			}
			if removedAt.IsZero() {
				t.Fatal("never removed")
			}
			if d := removedAt.Sub(floor); d <= deregisterAfter || d > deregisterAfter+step {
				t.Errorf("removed %v after the floor, want within one sweep after deregister_after (%v)", d, deregisterAfter)
			}
		})
	}
}

// TestSweeper_Sweep_registeredThisTerm: an instance registered during
// this term, whose registration reached the log but whose first heartbeat
// never reached the tracker, keeps its full TTL from its registration
// time, after the sweep has marked the instances from before the term,
// and however long the node has led.
func TestSweeper_Sweep_registeredThisTerm(t *testing.T) {
	const step = 250 * time.Millisecond
	for _, at := range []time.Duration{
		step / 2,    // before the first sweep's mark, within the grace
		grace + ttl, // just after the floor
		time.Hour,   // long after
	} {
		t.Run(fmt.Sprintf("registered %v after leadership", at), func(t *testing.T) {
			r := newRig(t)
			live := r.liveness(grace, &leadership{since: leaderSince})
			cfg := health.DefaultSweepConfig()
			cfg.Now = r.clock.Now
			sw := health.NewSweeper(cfg, live, r.cat, r.prop)
			r.registerAt(t, "old", leaderSince.Add(24*time.Hour)) // from a clock a day ahead
			r.clock.Set(leaderSince.Add(step))
			sw.Sweep(context.Background(), floor) // the term's first sweep: the mark

			reg := leaderSince.Add(at)
			r.registerAt(t, "new", reg)
			// Expected expiry: TTL after the registration, or after the
			// floor if it registered within the grace.
			base := later(reg, floor)
			for now := later(reg, leaderSince.Add(2*step)); now.Before(base.Add(ttl + 2*step)); now = now.Add(step / 5) {
				r.clock.Set(now)
				inst, _ := r.cat.Instance("new")
				want := catalog.StatusPassing
				if now.Sub(base) > ttl {
					want = catalog.StatusCritical
				}
				if st := live.Status(inst, floor, now); st != want {
					t.Fatalf("lookup %v after registration: %q, want %q", now.Sub(reg), st, want)
				}
				sw.Sweep(context.Background(), floor)
				if got := r.status("new"); got != want {
					t.Fatalf("after a sweep %v after registration: %q, want %q", now.Sub(reg), got, want)
				}
			}
			if got := r.status("old"); got != catalog.StatusCritical && got != "" {
				t.Errorf("the instance from before the term is %q", got)
			}
		})
	}
}

// TestSweeper_Run_clockSteppedBack runs the real sweep loop on the real
// clock: a dead instance whose registration time is an hour in the future
// (a clock stepped back across the restart) expires within TTL + grace of
// leadership, plus a little scheduling slack, and one registered during
// the term with no heartbeat does not expire before its TTL is up.
func TestSweeper_Run_clockSteppedBack(t *testing.T) {
	const (
		grace = 200 * time.Millisecond
		ttl   = time.Second
		slack = 600 * time.Millisecond
	)
	r := newRig(t)
	since := time.Now()
	r.prop.commit(t, catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
		ID: "dead", Service: "web", Address: "10.0.0.1", Port: 1, TTL: ttl, DeregisterAfter: time.Hour,
		TokenHash: catalog.HashSecret("dead"), KeyID: "k1", Status: catalog.StatusPassing,
		RegisteredAt: since.Add(time.Hour).Round(0), // from the log: no monotonic reading
	}})
	live := r.liveness(grace, &leadership{since: since})
	cfg := health.DefaultSweepConfig()
	cfg.Interval = 20 * time.Millisecond
	sw := health.NewSweeper(cfg, live, r.cat, r.prop)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var done atomic.Bool
	go func() { sw.Run(ctx); done.Store(true) }()

	time.Sleep(300 * time.Millisecond)
	registered := time.Now()
	r.prop.commit(t, catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
		ID: "new", Service: "web", Address: "10.0.0.1", Port: 2, TTL: ttl, DeregisterAfter: time.Hour,
		TokenHash: catalog.HashSecret("new"), KeyID: "k1", Status: catalog.StatusPassing,
		RegisteredAt: registered.Round(0),
	}})
	var deadAt, newAt time.Time
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && (deadAt.IsZero() || newAt.IsZero()); time.Sleep(5 * time.Millisecond) {
		if deadAt.IsZero() && r.status("dead") == catalog.StatusCritical {
			deadAt = time.Now()
		}
		if newAt.IsZero() && r.status("new") == catalog.StatusCritical {
			newAt = time.Now()
		}
	}
	if deadAt.IsZero() {
		t.Fatal("the dead instance with a future registration time never expired")
	}
	if d := deadAt.Sub(since); d <= grace+ttl || d > grace+ttl+slack {
		t.Errorf("dead instance expired %v after leadership, want just after TTL+grace (%v)", d, grace+ttl)
	}
	if newAt.IsZero() {
		t.Fatal("the instance registered during the term never expired")
	}
	if d := newAt.Sub(registered); d <= ttl {
		t.Errorf("instance registered during the term expired %v after registering, before its TTL (%v)", d, ttl)
	}
	if done.Load() {
		t.Error("Run stopped on its own")
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
