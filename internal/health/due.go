package health

import (
	"container/heap"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// The sweep's schedule. A sweep judges only the instances whose state can
// have changed since it last judged them, so that its cost follows what
// is due, not the size of the catalog:
//
//   - an instance is judged when it is created or changed in the catalog
//     (the catalog's event history tells the sweep), when it beats again
//     after it was counted overdue (the tracker tells the sweep), and at
//     the next moment its state could change by time alone: when it turns
//     overdue, when its TTL runs out (under the hold as it stands), when a
//     critical one's deregister_after runs out;
//   - a heartbeat of an instance that is not overdue costs the sweep
//     nothing: the instance is judged at its old moment, found alive, and
//     given a new one (so a heartbeating instance is judged about once per
//     overdue interval, never more often than once per TTL/10);
//   - everything is judged afresh (a resync) under a new floor, when the
//     hold of mass-expiry protection changes (its rule for what counts
//     changes), and when the event history has moved past the sweep's
//     cursor.
//
// Each judgement applies the one status rule to one instance and keeps
// the counts mass-expiry protection needs (live, overdue) as the sum of
// the latest judgements, so that the counts are those a pass over every
// instance would make at the same moment.

// phase is what the sweep last judged an instance to be.
type phase uint8

const (
	phaseNone    phase = iota // not counted: gone, check-only, or not judged under this sweeper
	phaseLive                 // live (not critical by the status rule), not overdue
	phaseOverdue              // live and overdue, and counts towards the threshold
	phaseSilent               // live and overdue, but does not count while the hold is on
	phaseDown                 // critical, by the catalog or by its TTL
)

// sweepGens numbers sweepers, so that a record's judgement by an earlier
// sweeper (an earlier term) counts for nothing in a later one.
var sweepGens atomic.Uint32

// schedule is a sweeper's state between passes. Only the sweep's
// goroutine touches it, and the fields of records it owns (record.due,
// record.phase, record.gen).
type schedule struct {
	gen    uint32
	floor  time.Time
	synced bool   // a resync ran under floor
	cursor uint64 // the catalog index whose events have been read
	resync bool   // judge everything at the next pass
	// ticks holds, for each tick (a multiple of the interval) with
	// instances to judge, those instances; keys is a heap of the ticks.
	ticks map[int64][]*record
	keys  tickHeap
	live  int // records judged phaseLive, phaseOverdue or phaseSilent
	// overdue counts records judged phaseOverdue.
	overdue int
	events  []*catalog.Event // buffer of one pass's events
	back    []*record        // buffer of one pass's comebacks
	// retry are the records the last pass proposed for, or could not,
	// and those it found not quite due: the next pass judges them first,
	// whatever the time.
	retry []*record
	// popping is the last tick the pass is judging, while it judges
	// what is scheduled; 0 otherwise.
	popping int64
	// pass numbers the passes (see record.duePass).
	pass uint32
	// on is whether the hold was on at the last resync: what counts
	// changes when it turns off by itself at its bound.
	on bool
}

type tickHeap []int64

func (h tickHeap) Len() int           { return len(h) }
func (h tickHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h tickHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *tickHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *tickHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// tickOf returns the first tick at or after t: an instance scheduled for
// t is judged by the first pass at or after that tick, so never before t.
func (s *Sweeper) tickOf(t time.Time) int64 {
	iv := int64(s.cfg.Interval)
	n := t.UnixNano()
	q := n / iv
	if n%iv > 0 {
		q++
	}
	return q
}

// at schedules r to be judged at the first tick at or after t, unless it
// is already due at or before that tick (its judgement then schedules it
// again as needed).
func (s *Sweeper) at(r *record, t time.Time) {
	k := s.tickOf(t)
	if s.sched.popping != 0 && k <= s.sched.popping {
		// Not due yet, but in a tick this pass is judging: the next pass
		// judges it (never this one again, or it would never end).
		r.due = 0
		s.sched.retry = append(s.sched.retry, r)
		return
	}
	if r.gen == s.sched.gen && r.due != 0 && r.due <= k {
		return
	}
	r.due = k
	list, ok := s.sched.ticks[k]
	if !ok {
		heap.Push(&s.sched.keys, k)
	}
	s.sched.ticks[k] = append(list, r)
}

// setPhase records r's new judgement and keeps the counts.
func (s *Sweeper) setPhase(r *record, p phase) {
	sc := &s.sched
	old := r.phase
	if r.gen != sc.gen {
		old, r.gen, r.due = phaseNone, sc.gen, 0
	}
	if old == p {
		return
	}
	r.counted.Store(p != phaseNone)
	if old == phaseLive || old == phaseOverdue || old == phaseSilent {
		sc.live--
	}
	if p == phaseLive || p == phaseOverdue || p == phaseSilent {
		sc.live++
	}
	if old == phaseOverdue {
		sc.overdue--
	}
	if p == phaseOverdue {
		sc.overdue++
	}
	r.phase = p
}

// judge applies the status rule to inst (nil: gone from the catalog),
// whose heartbeat record is r, at now under floor, mark m and hold h:
// it records the judgement, schedules the next one, and reports what is
// due now: an expiry (TTL ran out) or a removal (critical past
// deregister_after).
func (s *Sweeper) judge(r *record, inst *catalog.Instance, floor, now time.Time, m *mark, h *hold) (expire, remove bool) {
	l := s.live
	if inst == nil || inst.TTL <= 0 {
		// Gone, or check-only: its checks decide its status, and their
		// runner removes it.
		s.setPhase(r, phaseNone)
		unwatch(r)
		return false, false
	}
	snap := l.tracker.snap(r)
	b := base(inst, snap, floor, m)
	if inst.Status == catalog.StatusCritical {
		s.setPhase(r, phaseDown)
		unwatch(r)
		end := b.Add(inst.DeregisterAfter)
		if now.Sub(b) > inst.DeregisterAfter {
			return false, true
		}
		s.at(r, end.Add(time.Nanosecond))
		return false, false
	}
	deadline := h.deadline(b.Add(inst.TTL), inst.TTL, floor)
	if now.After(deadline) {
		s.setPhase(r, phaseDown)
		unwatch(r)
		return true, false
	}
	// Judged again when the TTL runs out, but at least once per TTL, so
	// that a deadline a hold pushed out is judged again soon enough after
	// the hold ends (the end gives a held instance one more TTL).
	next := deadline.Add(time.Nanosecond)
	if lim := now.Add(inst.TTL); lim.Before(next) {
		next = lim
	}
	p := phaseLive
	var watch time.Time
	if l.protection.Enabled {
		after := overdueAfter(snap, inst.TTL, l.protection.OverdueFactor)
		switch {
		case now.Sub(b) <= after:
			watch = b.Add(after)
			if t := watch.Add(time.Nanosecond); t.Before(next) {
				next = t
			}
		case h.counts(b, floor, now):
			p = phaseOverdue
		default:
			p = phaseSilent
		}
	}
	s.setPhase(r, p)
	// From here a heartbeat that changes this judgement tells the sweep
	// (see record.beat). One that came since the tracker was read above
	// is looked for after the flags are set.
	r.overdue.Store(p == phaseOverdue || p == phaseSilent)
	if watch.IsZero() {
		r.watch.Store(0)
	} else {
		r.ttl.Store(int64(inst.TTL))
		r.watch.Store(max(1, int64(watch.Sub(l.tracker.epoch))))
	}
	if r.last.Load() != lastOf(snap, l.tracker) {
		s.sched.retry = append(s.sched.retry, r) // heard meanwhile
	}
	s.at(r, next)
	return false, false
}

// unwatch clears what makes a heartbeat of r tell the sweep.
func unwatch(r *record) {
	r.overdue.Store(false)
	r.watch.Store(0)
}

// lastOf returns the raw last-beat value that snap was read from.
func lastOf(snap snapshot, t *Tracker) int64 {
	if !snap.ok {
		return never
	}
	return int64(snap.last.Sub(t.epoch))
}

// resync judges every instance of the catalog afresh: the schedule and
// the counts start over.
func (s *Sweeper) resync(floor time.Time) {
	sc := &s.sched
	sc.gen = sweepGens.Add(1)
	sc.pass++ // what an earlier part of this pass found due is found again
	sc.floor, sc.synced, sc.resync = floor, true, false
	clear(sc.ticks)
	sc.keys = sc.keys[:0]
	sc.live, sc.overdue = 0, 0
	// Comebacks queued so far are covered by judging everyone.
	sc.back = s.live.tracker.takeComebacks(sc.back[:0])
	for _, r := range sc.back {
		r.queued.Store(false)
	}
	clear(sc.back)
	clear(sc.retry)
	sc.retry = sc.retry[:0]
	sc.cursor = s.cat.Index()
	insts := s.cat.Instances()
	now := s.cfg.Now() // after the listing: every listed instance was applied by now
	l := s.live
	l.observe(floor, insts, now)
	m, h := l.marked.Load(), l.held.Load()
	sc.on = h.on(floor, now)
	for _, inst := range insts {
		if inst.TTL <= 0 {
			continue
		}
		s.judgeOrDue(l.tracker.ensure(inst.ID), inst, floor, now, m, h)
	}
}

// refresh judges the instances the catalog changed since the last pass,
// and those heard again after they were counted overdue. It reports false
// if the catalog's history no longer reaches back to the cursor (a
// resync is needed).
func (s *Sweeper) refresh(floor, now time.Time) bool {
	sc := &s.sched
	l := s.live
	m, h := l.marked.Load(), l.held.Load()
	for {
		evs, ok, _ := s.cat.Events(sc.cursor, 1024, sc.events[:0])
		sc.events = evs
		if !ok {
			clear(sc.events)
			return false
		}
		if len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			if ev.Replaced != nil {
				s.judgeID(ev.Replaced.ID, floor, now, m, h)
			}
			s.judgeID(ev.Instance.ID, floor, now, m, h)
			sc.cursor = ev.Index
		}
		clear(sc.events)
	}
	sc.back = l.tracker.takeComebacks(sc.back[:0])
	sc.back = append(sc.back, sc.retry...)
	clear(sc.retry)
	sc.retry = sc.retry[:0]
	for _, r := range sc.back {
		r.queued.Store(false)
		if r.gone.Load() {
			s.setPhase(r, phaseNone)
			continue
		}
		inst, _ := s.cat.Instance(r.id)
		s.judgeOrDue(r, inst, floor, now, m, h)
	}
	clear(sc.back)
	return true
}

// judgeID judges the instance id as the catalog now holds it.
func (s *Sweeper) judgeID(id string, floor, now time.Time, m *mark, h *hold) {
	inst, ok := s.cat.Instance(id)
	var r *record
	if ok {
		r = s.live.tracker.ensure(id)
	} else if r = s.live.tracker.get(id); r == nil {
		return // gone, and never counted
	}
	s.judgeOrDue(r, inst, floor, now, m, h)
}

// judgeOrDue judges r, and adds it to the pass's proposals if it is due
// now.
func (s *Sweeper) judgeOrDue(r *record, inst *catalog.Instance, floor, now time.Time, m *mark, h *hold) {
	if exp, rem := s.judge(r, inst, floor, now, m, h); (exp || rem) && r.duePass != s.sched.pass {
		r.duePass = s.sched.pass
		s.due = append(s.due, inst)
	}
}
