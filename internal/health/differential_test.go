package health

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// The sweep judges only what is due (due.go). The tests below check it
// against the rule it replaced: a pass over every instance of the
// catalog, kept here as refSweep. Two systems get the same random history
// (registrations, heartbeats in changing rhythms, deaths, mass silences,
// drains, deregistrations, check verdicts, new terms); after every pass
// both must have proposed the same commands, counted the same live and
// overdue instances, and hold expiry alike.

var diffRuns = flag.Int("sweep.runs", 12, "random histories TestSweeper_matchesFullPass runs")

// refSweep is the full pass: every instance judged at every pass. It
// returns the counts it gave mass-expiry protection.
func refSweep(ctx context.Context, s *Sweeper, floor time.Time) (live, overdue int) {
	insts := s.cat.Instances()
	now := s.cfg.Now()
	l := s.live
	l.observe(floor, insts, now)
	m, h := l.marked.Load(), l.held.Load()
	counting := l.protection.Enabled
	var due []*catalog.Instance
	for _, inst := range insts {
		if inst.TTL <= 0 {
			continue
		}
		snap := l.tracker.read(inst.ID)
		b := base(inst, snap, floor, m)
		switch {
		case inst.Status == catalog.StatusCritical:
			if now.Sub(b) > inst.DeregisterAfter {
				due = append(due, inst)
			}
		case expired(inst, b, floor, now, h):
			due = append(due, inst)
		default:
			live++
			if counting && now.Sub(b) > overdueAfter(snap, inst.TTL, l.protection.OverdueFactor) && h.counts(b, floor, now) {
				overdue++
			}
		}
	}
	if counting || h != nil {
		c, nh := l.protect(floor, now, live, overdue)
		s.logHold(c, nh, live, overdue)
	}
	for _, inst := range due {
		if inst.Status == catalog.StatusCritical {
			if ok, _ := s.propose(ctx, catalog.Command{Op: catalog.OpDeregister, ID: inst.ID, IfStatus: catalog.StatusCritical, Reason: "deregister_after expired"}); ok {
				l.Forget(inst.ID)
			}
		} else if l.Status(inst, floor, now) == catalog.StatusCritical {
			s.propose(ctx, catalog.Command{Op: catalog.OpSetStatus, ID: inst.ID, Status: catalog.StatusCritical, IfStatus: inst.Status, Reason: "ttl expired"})
		}
	}
	return live, overdue
}

// diffProposer applies commands to a catalog and records the sweep's.
type diffProposer struct {
	mu   sync.Mutex
	cat  *catalog.Catalog
	idx  uint64
	seen []string
}

func (p *diffProposer) Apply(_ context.Context, cmd catalog.Command) (catalog.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, fmt.Sprintf("%s %s %s", cmd.Op, cmd.ID, cmd.Status))
	p.idx++
	res := p.cat.Apply(p.idx, cmd)
	return res, res.Err
}

// commit applies a command from outside the sweep.
func (p *diffProposer) commit(cmd catalog.Command) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idx++
	p.cat.Apply(p.idx, cmd)
}

func (p *diffProposer) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.seen
	p.seen = nil
	slices.Sort(out)
	return out
}

// diffSystem is one registry's sweep state: catalog, tracker, liveness.
type diffSystem struct {
	prop *diffProposer
	live *Liveness
	sw   *Sweeper
}

func newDiffSystem(now func() time.Time, p ProtectionConfig) *diffSystem {
	cat := catalog.New()
	prop := &diffProposer{cat: cat}
	live := NewLiveness(LivenessConfig{Protection: p}, NewTracker(), nil, nil)
	cfg := DefaultSweepConfig()
	cfg.Now = now
	cfg.Logger = slog.New(slog.DiscardHandler)
	prop.commit(catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: catalog.HashSecret("k1"), Services: []string{"*"}}})
	return &diffSystem{prop: prop, live: live, sw: NewSweeper(cfg, live, cat, prop)}
}

// TestSweeper_matchesFullPass: the sweep that judges only what is due
// proposes the same commands as a full pass over the catalog, with the
// same counts of live and overdue instances and the same holds, over
// random histories. -sweep.runs sets how many.
func TestSweeper_matchesFullPass(t *testing.T) {
	for run := range *diffRuns {
		seed := uint64(run) + 1
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { diffHistory(t, seed) })
	}
}

func diffHistory(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := start
	clock := func() time.Time { return now }
	p := ProtectionConfig{Enabled: true, Threshold: 0.3, MinInstances: 20, OverdueFactor: 1.5, MaxHold: 8 * time.Second}
	ref, cand := newDiffSystem(clock, p), newDiffSystem(clock, p)
	both := func(fn func(s *diffSystem)) { fn(ref); fn(cand) }

	type member struct {
		id       string
		ttl      time.Duration
		interval time.Duration // its rhythm; 0 while silent
		next     time.Time     // its next heartbeat
		wakeAt   time.Time     // a silent one beats again then (zero: never)
	}
	var fleet []*member
	n := 0
	register := func(ttl time.Duration, checkOnly bool) {
		n++
		m := &member{id: fmt.Sprintf("i%03d", n), ttl: ttl, interval: ttl / 3}
		m.next = now.Add(time.Duration(rng.Int64N(int64(m.interval))))
		inst := &catalog.Instance{ID: m.id, Service: fmt.Sprintf("s%d", n%4), Address: "10.0.0.1", Port: n, TTL: ttl,
			DeregisterAfter: 4 * ttl, TokenHash: catalog.HashSecret(m.id), KeyID: "k1", Status: catalog.StatusPassing, RegisteredAt: now}
		if checkOnly {
			inst.TTL, m.interval = 0, 0
			inst.Checks = []catalog.Check{{Type: "tcp", Interval: time.Second, Timeout: time.Second, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}}
		}
		both(func(s *diffSystem) {
			c := *inst
			s.prop.commit(catalog.Command{Op: catalog.OpRegister, Instance: &c})
			if !checkOnly {
				s.live.Beat(m.id, now)
			}
		})
		fleet = append(fleet, m)
	}
	ttls := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
	for range 50 {
		register(ttls[rng.IntN(len(ttls))], rng.IntN(20) == 0)
	}
	floor := start.Add(time.Second)
	status := func(s *diffSystem, id string) catalog.Status {
		if inst, ok := s.prop.cat.Instance(id); ok {
			return inst.Status
		}
		return ""
	}
	for step := 0; step < 600; step++ {
		now = now.Add(time.Duration(10+rng.IntN(240)) * time.Millisecond)
		// Heartbeats due by now, in the members' rhythms.
		for _, m := range fleet {
			if m.interval == 0 && !m.wakeAt.IsZero() && !now.Before(m.wakeAt) {
				m.interval, m.wakeAt, m.next = m.ttl/3, time.Time{}, now
			}
			for m.interval > 0 && !m.next.After(now) {
				at := m.next
				both(func(s *diffSystem) { s.live.Beat(m.id, at) })
				m.next = m.next.Add(m.interval)
			}
		}
		// What happens to the fleet.
		switch r := rng.IntN(100); {
		case r < 6: // one dies; it may come back
			m := fleet[rng.IntN(len(fleet))]
			m.interval = 0
			if rng.IntN(2) == 0 {
				m.wakeAt = now.Add(time.Duration(rng.Int64N(int64(3 * m.ttl))))
			}
		case r < 9: // one changes rhythm: much faster, or close to its TTL
			m := fleet[rng.IntN(len(fleet))]
			if m.interval > 0 {
				m.interval = []time.Duration{m.ttl / 10, m.ttl / 5, m.ttl * 9 / 10}[rng.IntN(3)]
				m.next = now
			}
		case r < 10: // a mass silence: 40% stop, most come back
			for _, m := range fleet {
				if rng.IntN(10) < 4 {
					m.interval = 0
					if rng.IntN(5) > 0 {
						m.wakeAt = now.Add(time.Duration(rng.Int64N(int64(4 * m.ttl))))
					}
				}
			}
		case r < 12: // a newcomer
			register(ttls[rng.IntN(len(ttls))], rng.IntN(10) == 0)
		case r < 13: // one deregisters
			m := fleet[rng.IntN(len(fleet))]
			m.interval, m.wakeAt = 0, time.Time{}
			both(func(s *diffSystem) {
				s.prop.commit(catalog.Command{Op: catalog.OpDeregister, ID: m.id})
				s.live.Forget(m.id)
			})
		case r < 14: // one drains
			m := fleet[rng.IntN(len(fleet))]
			both(func(s *diffSystem) {
				s.prop.commit(catalog.Command{Op: catalog.OpDrain, ID: m.id})
			})
		case r < 15: // checks turn one critical, or a critical one passing
			m := fleet[rng.IntN(len(fleet))]
			both(func(s *diffSystem) {
				switch status(s, m.id) {
				case catalog.StatusPassing:
					s.prop.commit(catalog.Command{Op: catalog.OpSetStatus, ID: m.id, Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing})
				case catalog.StatusCritical:
					s.prop.commit(catalog.Command{Op: catalog.OpSetStatus, ID: m.id, Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical})
				}
			})
		case r < 16: // a new term
			floor = now.Add(time.Duration(rng.IntN(2000)) * time.Millisecond)
		}
		// A critical one that beats again is brought back, as a heartbeat
		// does.
		for _, m := range fleet {
			if m.interval > 0 && status(ref, m.id) == catalog.StatusCritical && rng.IntN(3) == 0 {
				both(func(s *diffSystem) {
					s.prop.commit(catalog.Command{Op: catalog.OpSetStatus, ID: m.id, Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical})
				})
			}
		}

		live, overdue := refSweep(context.Background(), ref.sw, floor)
		cand.sw.Sweep(context.Background(), floor)
		rp, cp := ref.prop.take(), cand.prop.take()
		at := fmt.Sprintf("step %d, %v in", step, now.Sub(start))
		if !slices.Equal(rp, cp) {
			t.Fatalf("%s: the full pass proposed\n  %s\nthe sweep\n  %s", at, strings.Join(rp, "\n  "), strings.Join(cp, "\n  "))
		}
		if sc := cand.sw.sched; sc.live != live || sc.overdue != overdue {
			t.Fatalf("%s: the full pass counted %d live, %d overdue; the sweep %d live, %d overdue\n%s", at, live, overdue, sc.live, sc.overdue,
				diffPhases(ref, cand, floor, now))
		}
		if rh, ch := ref.live.held.Load(), cand.live.held.Load(); (rh == nil) != (ch == nil) ||
			rh != nil && (!rh.start.Equal(ch.start) || !rh.end.Equal(ch.end) || !rh.since.Equal(ch.since) || rh.resumed != ch.resumed) {
			t.Fatalf("%s: the holds differ: full pass %+v, sweep %+v", at, rh, ch)
		}
	}
}

// diffPhases lists the instances whose judgement by the full pass's rule
// differs from the phase the sweep last gave them.
func diffPhases(ref, cand *diffSystem, floor, now time.Time) string {
	var b strings.Builder
	l := ref.live
	m, h := l.marked.Load(), l.held.Load()
	for _, inst := range ref.prop.cat.Instances() {
		want := phaseNone
		snap := l.tracker.read(inst.ID)
		bt := base(inst, snap, floor, m)
		switch {
		case inst.TTL <= 0:
		case inst.Status == catalog.StatusCritical, expired(inst, bt, floor, now, h):
			want = phaseDown
		case now.Sub(bt) > overdueAfter(snap, inst.TTL, l.protection.OverdueFactor) && h.counts(bt, floor, now):
			want = phaseOverdue
		case now.Sub(bt) > overdueAfter(snap, inst.TTL, l.protection.OverdueFactor):
			want = phaseSilent
		default:
			want = phaseLive
		}
		r := cand.live.tracker.get(inst.ID)
		got := phaseNone
		if r != nil && r.gen == cand.sw.sched.gen {
			got = r.phase
		}
		if got != want {
			fmt.Fprintf(&b, "  %s: full pass %d, sweep %d (ttl %v, status %s, base %v ago, due tick %d, now tick %d, snap %+v)\n", inst.ID, want, got,
				inst.TTL, inst.Status, now.Sub(bt), r.due, cand.sw.tickOf(now), snap)
		}
	}
	return b.String()
}
