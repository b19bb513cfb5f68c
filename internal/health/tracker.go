package health

import (
	"github.com/musterhq/muster/internal/catalog"
	"math"
	"sync"
	"time"
)

// historyLen is how many recent heartbeat intervals quality looks at.
const historyLen = 8

// Tracker records heartbeats. It is safe for concurrent use; Beat, Seen and
// Freshness take a shared lock on the map and a per-instance lock.
type Tracker struct {
	mu sync.RWMutex
	m  map[string]*liveness
}

type liveness struct {
	mu   sync.Mutex
	last int64 // unix nanoseconds of the last heartbeat
	// intervals is a ring of the last historyLen heartbeat gaps in ns.
	intervals [historyLen]int64
	n, pos    int
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{m: map[string]*liveness{}} }

// Beat records a heartbeat (or a registration) of id at now.
func (t *Tracker) Beat(id string, now time.Time) {
	t.mu.RLock()
	l := t.m[id]
	t.mu.RUnlock()
	if l == nil {
		t.mu.Lock()
		if l = t.m[id]; l == nil {
			l = &liveness{}
			t.m[id] = l
		}
		t.mu.Unlock()
	}
	ns := now.UnixNano()
	l.mu.Lock()
	if l.last != 0 && ns > l.last {
		l.intervals[l.pos] = ns - l.last
		l.pos = (l.pos + 1) % historyLen
		if l.n < historyLen {
			l.n++
		}
	}
	if ns > l.last {
		l.last = ns
	}
	l.mu.Unlock()
}

// Seen returns the time of id's last heartbeat, and false if this tracker
// has none (never heard, or forgotten).
func (t *Tracker) Seen(id string) (time.Time, bool) {
	t.mu.RLock()
	l := t.m[id]
	t.mu.RUnlock()
	if l == nil {
		return time.Time{}, false
	}
	l.mu.Lock()
	last := l.last
	l.mu.Unlock()
	return time.Unix(0, last), true
}

// Base returns the time from which inst's TTL runs: its last heartbeat,
// or its registration time if this tracker has heard none, but never
// earlier than floor (the moment this node became a ready leader, plus the
// grace). The sweep and lookups both judge expiry from it, so they agree.
func (t *Tracker) Base(inst *catalog.Instance, floor time.Time) time.Time {
	base := inst.RegisteredAt
	if last, ok := t.Seen(inst.ID); ok && last.After(base) {
		base = last
	}
	if base.Before(floor) {
		return floor
	}
	return base
}

// Status returns inst's effective status at now: an instance whose TTL
// has run out (judged from Base) reads as critical even before the sweep
// commits the change. With a zero floor (the node is not a ready leader, so
// it has no heartbeat history to judge by) the catalog's status stands.
// Every reader (HTTP lookups, and later DNS) uses this one rule.
func (t *Tracker) Status(inst *catalog.Instance, floor, now time.Time) string {
	if inst.Status == catalog.StatusCritical || floor.IsZero() {
		return inst.Status
	}
	if now.Sub(t.Base(inst, floor)) > inst.TTL {
		return catalog.StatusCritical
	}
	return inst.Status
}

// Forget drops id's history (the instance left the catalog).
func (t *Tracker) Forget(id string) {
	t.mu.Lock()
	delete(t.m, id)
	t.mu.Unlock()
}

// IDs returns the IDs the tracker holds.
func (t *Tracker) IDs() []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]string, 0, len(t.m))
	for id := range t.m {
		out = append(out, id)
	}
	return out
}

// Freshness is what a lookup shows about one instance's liveness.
type Freshness struct {
	// Age is the time since the last heartbeat; negative when unknown.
	Age     time.Duration
	Quality float64
}

// Freshness returns id's heartbeat age and quality at now. An instance this
// tracker has not heard from has Age -1 and Quality 0.
func (t *Tracker) Freshness(id string, ttl time.Duration, now time.Time) Freshness {
	t.mu.RLock()
	l := t.m[id]
	t.mu.RUnlock()
	if l == nil {
		return Freshness{Age: -1, Quality: 0}
	}
	l.mu.Lock()
	last := l.last
	intervals := l.intervals
	n := l.n
	l.mu.Unlock()
	age := time.Duration(now.UnixNano() - last)
	if age < 0 {
		age = 0
	}
	return Freshness{Age: age, Quality: quality(age, ttl, intervals[:n])}
}

// quality scores liveness in [0,1] as recency × regularity:
//
//	score(d)   = clamp(2·(1 − d/TTL), 0, 1)   (1 up to TTL/2, 0 at a full TTL)
//	recency    = score(age of the last heartbeat)
//	regularity = mean of score(gap) over the last 8 heartbeat gaps, where
//	             gaps not yet observed count 0.5 each
//
// An instance that heartbeats at TTL/3 or faster scores 1 once it
// has eight gaps of history. A new instance starts at 0.5 and earns trust
// with each regular heartbeat; one that cuts it close to its TTL, or has
// missed beats, scores lower before it ever expires. Quality is rounded to
// three decimals.
func quality(age, ttl time.Duration, gaps []int64) float64 {
	if ttl <= 0 {
		return 0
	}
	recency := score(float64(age), float64(ttl))
	sum := 0.5 * float64(historyLen-len(gaps))
	for _, g := range gaps {
		sum += score(float64(g), float64(ttl))
	}
	q := recency * sum / historyLen
	return math.Round(q*1000) / 1000
}

func score(d, ttl float64) float64 {
	s := 2 * (1 - d/ttl)
	if s > 1 {
		return 1
	}
	if s < 0 {
		return 0
	}
	return s
}
