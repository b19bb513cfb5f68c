package health

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// Proposer commits catalog commands; *cluster.Node implements it. Apply
// returns the command's fate as one error: the catalog's own
// (catalog.ErrConflict…) or the replication layer's.
type Proposer interface {
	Apply(ctx context.Context, cmd catalog.Command) (catalog.Result, error)
}

// Instances is the catalog as the sweep reads it; *catalog.Catalog
// implements it. Every change to an instance must appear in Events (the
// sweep judges an instance again when it changes), and a history that no
// longer reaches back to the sweep's cursor makes it judge everything
// afresh.
type Instances interface {
	Instances() []*catalog.Instance
	Instance(id string) (*catalog.Instance, bool)
	Index() uint64
	Events(after uint64, max int, dst []*catalog.Event) ([]*catalog.Event, bool, <-chan struct{})
	Len() int
}

// SweepConfig configures a Sweeper.
type SweepConfig struct {
	// Interval is how often the sweep runs.
	Interval time.Duration
	Logger   *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnPause, when set, is told when Run found that ticks stopped for
	// more than PauseAfter (the process was stopped or starved and could
	// hear no heartbeats). Run has then rebased the Liveness to the time
	// of resuming, as a new leadership term would, and skips that tick's
	// sweep.
	OnPause func(resumed time.Time, paused time.Duration)
	// PauseAfter is the tick gap taken as a pause; default 4 intervals,
	// at least 1s.
	PauseAfter time.Duration
	// OnExpired, when set, is told of each expiry the sweep committed:
	// kind "ttl" (an instance turned critical) or "deregister_after" (a
	// critical instance removed). It must be cheap (metrics).
	OnExpired func(kind string)
}

// DefaultSweepConfig returns the production settings.
func DefaultSweepConfig() SweepConfig {
	return SweepConfig{Interval: 100 * time.Millisecond}
}

// Validate reports a configuration error.
func (c SweepConfig) Validate() error {
	if c.Interval <= 0 {
		return errors.New("health: sweep interval must be positive")
	}
	if c.PauseAfter < 0 {
		return errors.New("health: pause threshold must not be negative")
	}
	return nil
}

// Sweeper expires instances whose TTL ran out. It runs only on the leader.
type Sweeper struct {
	cfg      SweepConfig
	live     *Liveness
	cat      Instances
	proposer Proposer
	// due is the pass's buffer of instances to propose for, kept between
	// passes so that a pass allocates nothing for it. Owned by the
	// goroutine that sweeps, as is sched.
	due   []*catalog.Instance
	sched schedule
}

// NewSweeper returns a sweeper that judges by live and commits through p.
func NewSweeper(cfg SweepConfig, live *Liveness, cat Instances, p Proposer) *Sweeper {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PauseAfter == 0 {
		cfg.PauseAfter = max(4*cfg.Interval, time.Second)
	}
	return &Sweeper{cfg: cfg, live: live, cat: cat, proposer: p, sched: schedule{ticks: map[int64][]*record{}}}
}

// Run sweeps every Interval until ctx ends or the Liveness reports that
// this node is no longer a ready leader. Leadership is read on every tick,
// so a term lost and regained between two ticks starts a new floor, the
// same one the readers use.
//
// A watchdog goroutine, which does nothing but tick, measures pauses of
// the process: a slow sweep does not delay it, and a pause stops it as it
// stops everything. Before each sweep Run checks the longest gap it saw.
func (s *Sweeper) Run(ctx context.Context) {
	// The watchdog records the longest gap between its ticks and when it
	// last ticked, as offsets from start on the monotonic clock.
	start := time.Now()
	var longest, lastTick atomic.Int64
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		t := time.NewTicker(s.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				now := int64(time.Since(start))
				if gap := now - lastTick.Load(); gap > longest.Load() {
					longest.Store(gap)
				}
				lastTick.Store(now)
			}
		}
	}()
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	sweeps := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// A pause shows either as a long gap the watchdog saw, or, when
			// this goroutine runs first after it, as a watchdog that has
			// not ticked for long. A slow sweep shows as neither.
			now := int64(time.Since(start))
			gap := max(time.Duration(longest.Swap(0)), time.Duration(now-lastTick.Load()))
			if gap > s.cfg.PauseAfter {
				s.cfg.Logger.Warn("the sweep did not run for a while; judging expiry afresh from now", "paused", gap.Round(time.Millisecond))
				resumed := time.Now()
				s.live.Rebase(resumed)
				if s.cfg.OnPause != nil {
					s.cfg.OnPause(resumed, gap)
				}
				lastTick.Store(now)
				continue
			}
			floor, ok := s.live.LeaderFloor()
			if !ok {
				return
			}
			s.Sweep(ctx, floor)
			if sweeps++; sweeps%collectEvery == 0 && s.live.tracker.Len() > s.cat.Len() {
				s.Collect()
			}
		}
	}
}

// Sweep makes one pass: passing or draining instances past their TTL become
// critical, unless mass-expiry protection holds them; critical ones past
// deregister_after are removed. Instances with a TTL of 0 (check-only:
// they never heartbeat) are left to their checks.
//
// A pass judges only what is due (see due.go): the instances the catalog
// changed since the last pass, those heard again after they were counted
// overdue, and those whose moment to be judged again has come. Its cost
// follows them, not the size of the catalog. The first pass under a floor
// judges every instance, and also marks, for the status rule, which
// instances were in the catalog before it: their registration times
// cannot be later than this pass (see Liveness.Base).
//
// With protection on, the pass first judges what is due and so brings the
// counts of live and overdue instances up to date (while a hold is on,
// only the overdue that have stayed silent since it turned on count; see
// ProtectionConfig), updates the hold from the counts, and only then
// proposes, so that a hold that begins in this pass already covers it.
// Each proposal is judged again under the hold as it then stands, with a
// fresh read of the tracker, by the status rule every reader uses.
func (s *Sweeper) Sweep(ctx context.Context, floor time.Time) {
	sc := &s.sched
	l := s.live
	s.due = s.due[:0]
	sc.pass++
	if !sc.synced || !sc.floor.Equal(floor) || sc.resync {
		s.resync(floor)
	}
	now := s.cfg.Now()
	if !s.refresh(floor, now) || l.held.Load().on(floor, now) != sc.on {
		// The history moved past the cursor, or the hold reached its
		// bound (what counts changed with it): judge everyone.
		s.due = s.due[:0]
		s.resync(floor)
		now = s.cfg.Now()
	}
	m, h := l.marked.Load(), l.held.Load()
	k := s.tickOf(now)
	sc.popping = k
	for len(sc.keys) > 0 && sc.keys[0] <= k {
		tick := heap.Pop(&sc.keys).(int64)
		list := sc.ticks[tick]
		delete(sc.ticks, tick)
		for _, r := range list {
			if r.gen != sc.gen || r.due != tick {
				continue // judged again since, and scheduled elsewhere
			}
			r.due = 0
			inst, _ := s.cat.Instance(r.id)
			s.judgeOrDue(r, inst, floor, now, m, h)
		}
		clear(list)
	}
	sc.popping = 0
	due := s.due
	defer clear(s.due) // hold no instance past the pass
	if l.protection.Enabled || h != nil {
		c, nh := l.protect(floor, now, sc.live, sc.overdue)
		s.logHold(c, nh, sc.live, sc.overdue)
		if c != holdSame && c != holdRefused {
			// What counts, and every held deadline, changed: the next
			// pass judges everyone under the new hold.
			sc.resync = true
		}
	}
	// The first proposal goes alone: if no write can be taken now (a
	// full disk, a lost leadership), the pass stops there, and the next
	// tries again, with one line in the log, not one per instance. The
	// rest go out together, at most sweepParallel at a time: Raft
	// gathers the commands in flight into one append and one fsync, so a
	// mass of deaths commits in a few batches rather than one disk write
	// after another.
	var (
		wg      sync.WaitGroup
		slots   = make(chan struct{}, sweepParallel)
		stopped atomic.Bool
	)
	one := func(inst *catalog.Instance) {
		var ok, stop bool
		if inst.Status == catalog.StatusCritical {
			if ok, stop = s.propose(ctx, catalog.Command{Op: catalog.OpDeregister, ID: inst.ID, IfStatus: catalog.StatusCritical, Reason: "deregister_after expired"}); ok {
				l.Forget(inst.ID)
			}
		} else if l.Status(inst, floor, now) == catalog.StatusCritical {
			_, stop = s.propose(ctx, catalog.Command{Op: catalog.OpSetStatus, ID: inst.ID, Status: catalog.StatusCritical, IfStatus: inst.Status, Reason: catalog.ReasonTTLExpired})
		}
		if stop {
			stopped.Store(true)
		}
	}
	for i, inst := range due {
		if stopped.Load() || ctx.Err() != nil {
			break
		}
		if i == 0 {
			one(inst)
			continue
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			one(inst)
		}()
	}
	wg.Wait()
	// Applied, refused, held or not proposed: a change comes back as a
	// catalog event; each is judged again at the next pass in any case.
	for _, inst := range due {
		s.retry(inst)
	}
}

// sweepParallel bounds the proposals of one pass in flight at once.
const sweepParallel = 512

// retry has inst judged again at the next pass.
func (s *Sweeper) retry(inst *catalog.Instance) {
	if r := s.live.tracker.get(inst.ID); r != nil {
		s.sched.retry = append(s.sched.retry, r)
	}
}

// logHold logs a change of the hold of mass-expiry protection, with why:
// the counts behind it, and this sweep's (live, overdue) for a refusal.
func (s *Sweeper) logHold(c holdChange, h *hold, live, overdue int) {
	log := s.cfg.Logger
	p := s.live.protection
	switch c {
	case holdStarted:
		log.Warn("mass-expiry protection on: too many instances fell silent at once; holding their expiry",
			"overdue", h.overdue, "live", h.live, "threshold", p.Threshold, "until", h.bound)
	case holdResumed:
		log.Warn("mass-expiry protection on again: too many instances are silent; the same hold resumes, with its bound, for the last time",
			"overdue", h.overdue, "live", h.live, "threshold", p.Threshold, "until", h.bound)
	case holdReleased:
		if h.resumed {
			log.Warn("mass-expiry protection off: heartbeats are back; an instance still silent has one more TTL to be heard; the hold had resumed once, so it is over, and no new hold begins before the cooldown ends",
				"overdue", h.overdue, "live", h.live, "held_for", h.end.Sub(h.start).Round(time.Millisecond), "cooldown_until", h.next(p.cooldown()))
			return
		}
		log.Warn("mass-expiry protection off: heartbeats are back; an instance still silent has one more TTL to be heard",
			"overdue", h.overdue, "live", h.live, "held_for", h.end.Sub(h.start).Round(time.Millisecond))
	case holdBounded:
		log.Warn("mass-expiry protection off: the hold reached its maximum; held expiries happen now, and no new hold begins before the cooldown ends",
			"overdue", h.overdue, "live", h.live, "held_for", h.end.Sub(h.start).Round(time.Millisecond), "cooldown_until", h.next(p.cooldown()))
	case holdRefused:
		log.Warn("mass-expiry protection refused: too many instances are silent, but the last hold's cooldown runs; expiries happen normally (said once per cooldown)",
			"overdue", overdue, "live", live, "threshold", p.Threshold, "cooldown_until", h.next(p.cooldown()))
	case holdDropped:
		log.Info("mass-expiry protection off: expiry is judged afresh from a new floor (a new term, or a pause)")
	}
}

// collectEvery is how many sweeps pass between two Collects.
const collectEvery = 40

// Collect drops the tracker's history of instances that are no longer in
// the catalog. Every removal path forgets its instance already; this
// catches the rest (a heartbeat that raced a deregistration), so Run does
// it only every collectEvery sweeps, and only when the tracker holds more
// records than the catalog has instances: it walks every record.
func (s *Sweeper) Collect() {
	s.live.Tracker().Retain(func(id string) bool {
		_, ok := s.cat.Instance(id)
		return ok
	})
}

// propose commits one sweep command. It reports whether the command was
// applied, and whether the pass should stop because no write can be taken
// now (the error says it is Unavailable).
func (s *Sweeper) propose(ctx context.Context, cmd catalog.Command) (ok, stop bool) {
	_, err := s.proposer.Apply(ctx, cmd)
	var u interface{ Unavailable() bool }
	switch {
	case err == nil:
		s.cfg.Logger.Info("instance "+string(cmd.Op), "id", cmd.ID, "status", cmd.Status, "reason", cmd.Reason)
		if s.cfg.OnExpired != nil {
			kind := "ttl"
			if cmd.Op == catalog.OpDeregister {
				kind = "deregister_after"
			}
			s.cfg.OnExpired(kind)
		}
		return true, false
	case errors.Is(err, catalog.ErrConflict), errors.Is(err, catalog.ErrNotFound):
		// A heartbeat or deregistration won the race; nothing to do.
		return false, false
	case errors.As(err, &u) && u.Unavailable():
		s.cfg.Logger.Warn("sweep paused: no write can be taken now; retrying at the next sweep", "op", cmd.Op, "id", cmd.ID, "err", err)
		return false, true
	default:
		s.cfg.Logger.Warn("sweep command failed", "op", cmd.Op, "id", cmd.ID, "err", err)
		return false, false
	}
}
