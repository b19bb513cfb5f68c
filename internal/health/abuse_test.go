package health_test

// Mass-expiry protection as a lever: an insider with an enrolment key
// registers instances whose heartbeats are shaped to keep expiry held,
// so that other instances' deaths stay listed. These tests run such
// attacks on the simulated clock of fleet (see protection_test.go) and
// check what protection still lets them do.

import (
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
)

// abuseProtection is the default protection scaled to the fleet's TTL
// of 3s: a maximum hold of 12 TTLs, as 2 minutes is to a TTL of 10s, and
// the default cooldown (as long as the maximum hold).
func abuseProtection() health.ProtectionConfig {
	p := health.DefaultProtectionConfig()
	p.MaxHold = 12 * ttl
	return p
}

// attackRun is what one simulated attack did.
type attackRun struct {
	held   float64         // share of the sweeps at which expiry was held
	delays []time.Duration // each death of the victim: how long after its TTL ran out it was critical
	holds  int             // holds begun
}

// attack runs, for d, a catalog of 31 real instances that heartbeat as
// the SDK does and 40 of an attacker's (the numbers of the finding), all
// with a TTL of 3s. arm shapes the attacker's heartbeats once; drive,
// when set, is called after every sweep. One real instance, the victim,
// dies again and again: it falls silent at a random moment, and once it
// is committed critical it comes back (a new process), for the next
// death. attack checks after every sweep that a new hold never begins
// before the cooldown of the one before it ends.
func attack(t *testing.T, p health.ProtectionConfig, d time.Duration, arm func(f *fleet, atk []string), drive func(f *fleet, atk []string, now time.Time)) attackRun {
	t.Helper()
	f := newFleet(t, p, map[string]int{"atk": 40, "real": 31}, 10*time.Second)
	atk := f.group("atk-")
	arm(f, atk)
	const victim = "real-00"
	dieAt := f.now.Add(5 * time.Second)
	dead := false
	var due time.Time
	var run attackRun
	var last health.Protection
	sweeps, held := 0, 0
	f.run(t, d, func(now time.Time) {
		sweeps++
		pr := f.live.Protection(floor, now)
		if pr.Active {
			held++
		}
		if !pr.Since.Equal(last.Since) {
			run.holds++
			if !last.Since.IsZero() && (last.CooldownUntil.IsZero() || pr.Since.Before(last.CooldownUntil)) {
				t.Fatalf("a hold began at floor%+v; the one before (%+v) was not over, or its cooldown had not ended", pr.Since.Sub(floor), last)
			}
		}
		last = pr
		if drive != nil {
			drive(f, atk, now)
		}
		switch {
		case !dead && !now.Before(dieAt):
			f.silence([]string{victim})
			dead, due = true, f.beat[victim].Add(ttl)
		case dead && f.r.status(victim) == catalog.StatusCritical:
			run.delays = append(run.delays, now.Sub(due))
			f.r.tracker.Beat(victim, now)
			f.beat[victim] = now
			f.r.prop.commit(t, catalog.Command{Op: catalog.OpSetStatus, ID: victim, Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical})
			f.next[victim] = now.Add(f.interval())
			delete(f.crit, victim)
			dead = false
			dieAt = now.Add(2*time.Second + time.Duration(f.rnd.Float64()*float64(5*time.Second)))
		}
	})
	run.held = float64(held) / float64(sweeps)
	var worst time.Duration
	for _, dl := range run.delays {
		worst = max(worst, dl)
	}
	t.Logf("held %.1f%% of the time in %d holds; the victim died %d times, expiring at worst %v after its TTL; the attacker's instances expired %d times",
		100*run.held, run.holds, len(run.delays), worst, len(f.crit))
	return run
}

// bursts arms the attacker as in the finding: each instance sends a
// burst of 5 heartbeats every 0.9 TTL (9s at a TTL of 10s), so that its
// usual interval is short and it is overdue most of the time, yet never
// expires. offset spreads the instances' bursts over the cycle, as the
// finding did; otherwise they burst together.
func bursts(offset bool) func(f *fleet, atk []string) {
	const in = 10 * time.Millisecond
	cycle := 9 * ttl / 10
	return func(f *fleet, atk []string) {
		for i, id := range atk {
			f.pattern[id] = []time.Duration{in, in, in, in, cycle - 4*in}
			f.next[id] = f.now
			if offset {
				f.next[id] = f.now.Add(time.Duration(i) * cycle / time.Duration(len(atk)))
			}
		}
	}
}

// silentThroughHolds drives the attacker that does what a split does:
// its instances fall silent together, stay silent while the hold is on,
// and all come back just before its bound, so that the hold ends by
// itself and none of them ever expires. It falls silent again as soon
// as a new hold may begin (half a TTL before, so as to be overdue then).
func silentThroughHolds() func(f *fleet, atk []string, now time.Time) {
	silent := false
	return func(f *fleet, atk []string, now time.Time) {
		p := f.live.Protection(floor, now)
		switch {
		case !silent && (p.Since.IsZero() || !p.CooldownUntil.IsZero() && !now.Before(p.CooldownUntil.Add(-ttl/2))):
			f.silence(atk)
			silent = true
		case silent && p.Active && now.After(p.Until.Add(-ttl/3)):
			for _, id := range atk {
				f.next[id] = now // heard at the next step
			}
			silent = false
		}
	}
}

// TestProtection_abuse: the finding's attack, and the two ways an
// insider might adapt it, over 20 minutes of simulated time with the
// default protection (scaled to a TTL of 3s). Whatever the attacker
// does, every death of the unrelated victim expires within one MaxHold
// of its TTL, expiry is held at most about half the time (MaxHold out of
// every MaxHold + Cooldown), and no hold begins before the cooldown of
// the one before has ended. Instances that flap (overdue, then heard,
// again and again) no longer keep a hold on: against them a hold lasts
// a few seconds, and the victim expires within a few TTLs.
func TestProtection_abuse(t *testing.T) {
	p := abuseProtection()
	const d = 20 * time.Minute
	for _, tc := range []struct {
		name  string
		arm   func(f *fleet, atk []string)
		drive func() func(f *fleet, atk []string, now time.Time)
		// flapping: the attacker's instances are heard within every TTL,
		// so holds end soon, and the tighter bounds apply.
		flapping bool
	}{
		{"offset bursts (the finding)", bursts(true), nil, true},
		{"synchronised bursts", bursts(false), nil, true},
		{"silent through each hold, back before its bound", func(*fleet, []string) {}, silentThroughHolds, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var drive func(f *fleet, atk []string, now time.Time)
			if tc.drive != nil {
				drive = tc.drive()
			}
			run := attack(t, p, d, tc.arm, drive)
			if len(run.delays) < 20 || run.holds < 5 {
				t.Fatalf("the victim died %d times, in %d holds: the attack did not run", len(run.delays), run.holds)
			}
			// At most MaxHold held out of every MaxHold + Cooldown, and the
			// run may end inside one more hold.
			limit := float64(p.MaxHold)/float64(2*p.MaxHold) + float64(p.MaxHold)/float64(d)
			maxDelay := p.MaxHold + sweepStep
			if tc.flapping {
				// A hold turns on at most twice (it resumes once), and each
				// time it lets go within one of the attacker's cycles (under
				// a TTL), when the instances counted have all been heard.
				// So at most about 2 TTLs are held out of every 2 TTLs +
				// Cooldown, and a death waits at most those two turns and
				// the TTL that follows the end.
				limit = float64(2*ttl)/float64(2*ttl+p.MaxHold) + float64(2*ttl)/float64(d)
				maxDelay = 3*ttl + 3*sweepStep
			}
			if run.held > limit {
				t.Errorf("expiry was held %.1f%% of the time, more than %.1f%%", 100*run.held, 100*limit)
			}
			for i, dl := range run.delays {
				if dl < 0 || dl > maxDelay {
					t.Errorf("death %d of the victim expired %v after its TTL ran out, want within %v", i, dl, maxDelay)
				}
			}
		})
	}
}

// TestProtection_cooldownAfterBound: after a hold ran to its bound, no
// new hold begins for the cooldown (here set apart from MaxHold): a
// second mass silence during it is not held, each of its instances
// expires at the first sweep after its TTL, and the refusal is logged
// once. After the cooldown, a third mass silence is held again.
func TestProtection_cooldownAfterBound(t *testing.T) {
	p := testProtection()
	p.Cooldown = 20 * time.Second
	f := newFleet(t, p, fleet100, 10*time.Second)
	f.silence(f.group("big-"))
	f.run(t, p.MaxHold+5*time.Second, nil)
	first := f.live.Protection(floor, f.now)
	if first.Active || first.Since.IsZero() || !first.CooldownUntil.Equal(first.Until.Add(p.Cooldown)) {
		t.Fatalf("after the bound: %+v; want over, with a cooldown of %v from the bound", first, p.Cooldown)
	}
	second := append(f.group("s1-"), f.group("s2-")...) // 20 of the 60 live
	f.silence(second)
	f.run(t, 2*ttl, nil)
	if now := f.live.Protection(floor, f.now); now.Active || !now.Since.Equal(first.Since) {
		t.Fatalf("a hold during the cooldown: %+v", now)
	}
	for _, id := range second {
		at, ok := f.crit[id]
		due := f.beat[id].Add(ttl)
		if !ok || at.Before(due) || at.Sub(due) > sweepStep {
			t.Errorf("%s: critical at floor%+v (%v), want within a sweep of its TTL, floor%+v", id, at.Sub(floor), ok, due.Sub(floor))
		}
	}
	logs := f.r.logs.String()
	if n := strings.Count(logs, "mass-expiry protection refused"); n != 1 || !strings.Contains(logs, "cooldown_until=") {
		t.Errorf("the refusal is logged %d times, want once, with the cooldown's end:\n%s", n, logs)
	}
	f.run(t, first.CooldownUntil.Sub(f.now), nil)
	third := append(append(f.group("s3-"), f.group("s4-")...), f.group("s5-")...) // 30 of the 40 live
	f.silence(third)
	f.run(t, ttl, nil)
	if now := f.live.Protection(floor, f.now); !now.Active || now.Since.Before(first.CooldownUntil) || now.Activations != 2 {
		t.Errorf("after the cooldown: %+v; want a second hold", now)
	}
}

// TestProtection_resumesOnce: a hold resumes once. A third wave of
// silence inside the same hold's bound, after heartbeats came back
// twice, is not held: its instances expire on time. The hold is over at
// its second end, and its cooldown runs from there.
func TestProtection_resumesOnce(t *testing.T) {
	p := testProtection()
	f := newFleet(t, p, fleet100, 10*time.Second)
	half := f.group("even")
	for range 2 {
		f.silence(half)
		f.run(t, 2*time.Second, nil)
		f.resume(half)
		f.run(t, 4*time.Second, nil)
	}
	over := f.live.Protection(floor, f.now)
	if over.Active || over.Activations != 2 || over.CooldownUntil.IsZero() || !f.now.Before(over.Until) {
		t.Fatalf("after two waves: %+v; want over before its bound, after two activations", over)
	}
	f.silence(half)
	f.run(t, 2*ttl, nil)
	if now := f.live.Protection(floor, f.now); now.Active || now.Activations != 2 {
		t.Fatalf("a third wave: %+v", now)
	}
	for _, id := range half {
		at, ok := f.crit[id]
		due := f.beat[id].Add(ttl)
		if !ok || at.Before(due) || at.Sub(due) > sweepStep {
			t.Errorf("%s: critical at floor%+v (%v), want within a sweep of its TTL, floor%+v", id, at.Sub(floor), ok, due.Sub(floor))
		}
	}
	if !strings.Contains(f.r.logs.String(), "the hold had resumed once, so it is over") {
		t.Errorf("the end of the hold does not say it is over:\n%s", f.r.logs)
	}
}

// TestProtection_comebackStopsCounting: while a hold is on, an instance
// that is heard again no longer keeps it on, even if it falls silent
// again at once. Half the fleet falls silent; then each of them, in
// turn, sends one heartbeat and falls silent again, so that by the plain
// count more than the threshold stay overdue throughout; the hold lets
// go once the share silent since it began falls to the threshold, and
// does not hold till its bound.
func TestProtection_comebackStopsCounting(t *testing.T) {
	p := testProtection()
	f := newFleet(t, p, fleet100, 10*time.Second)
	half := f.group("even")
	f.silence(half)
	f.run(t, 2*time.Second, nil)
	began := f.live.Protection(floor, f.now)
	if !began.Active {
		t.Fatal("no hold")
	}
	// One heartbeat each, 100ms apart, then silence again.
	for i, id := range half {
		f.r.tracker.Beat(id, f.now.Add(time.Duration(i)*100*time.Millisecond))
	}
	var released time.Time
	f.run(t, 6*time.Second, func(now time.Time) {
		if released.IsZero() && !f.live.Protecting(floor, now) {
			released = now
		}
	})
	if released.IsZero() {
		t.Fatal("the hold stayed on while the instances keeping it on were heard")
	}
	// 21 of the 50 heard leave 29 silent since it began: 29% of 100.
	if want := began.Since.Add(2*time.Second + 20*100*time.Millisecond + sweepStep); released.After(want) {
		t.Errorf("released at floor%+v, want by floor%+v", released.Sub(floor), want.Sub(floor))
	}
}
