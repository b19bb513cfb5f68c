package health

import (
	"hash/maphash"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// historyLen is how many recent heartbeat intervals quality looks at.
const historyLen = 8

// Tracker records heartbeats. It is safe for concurrent use.
//
// Each instance has one record, found by ID through a sharded map
// (heartbeats, the sweep) or through the records of a service view that a
// Liveness caches (lookups, which then read no map). A record is written
// under its own mutex and read without one: readers retry while a write
// is under way (a sequence count), so that lookups never wait for, or
// contend with, heartbeats.
//
// Times are kept as offsets from the tracker's creation, so that with times
// from time.Now they follow the monotonic clock: a step of the wall clock
// neither revives a dead instance nor expires a live one.
type Tracker struct {
	epoch time.Time
	m     recordMap
	n     atomic.Int64
	// comebacks are the records whose heartbeat changed what the sweep
	// judged of them: heard again while counted overdue, or heard so that
	// they would turn overdue before the sweep judges them again (see
	// record.watch). Each is queued once per judgement.
	cbMu      sync.Mutex
	comebacks []*record
	// factor is mass-expiry protection's overdue factor, 0 when it is off
	// (set once, by NewLiveness, before any heartbeat).
	factor float64
}

// takeComebacks appends the records heard again since the last call to
// dst and returns it.
func (t *Tracker) takeComebacks(dst []*record) []*record {
	t.cbMu.Lock()
	dst = append(dst, t.comebacks...)
	clear(t.comebacks)
	t.comebacks = t.comebacks[:0]
	t.cbMu.Unlock()
	return dst
}

// never is a record's last beat before it has heard one: a record can
// exist for an instance that has not beaten yet (a lookup asked for it).
const never = math.MinInt64

// record is one instance's heartbeat history. Its fields are ordered, and
// sized, so that it fits 128 bytes: there is one for every instance.
type record struct {
	id string
	mu sync.Mutex // serialises writers
	// seq is odd while a writer changes the fields below: a reader that
	// saw it odd, or saw it change, reads again.
	seq  atomic.Uint64
	last atomic.Int64 // offset from epoch of the last heartbeat, or never
	// gaps is a ring of the last historyLen heartbeat gaps, in
	// milliseconds (up to maxGapMS); n of them are recorded, and the next
	// goes at pos (written under mu only).
	gaps [historyLen]atomic.Int32
	n    atomic.Int32
	// gone is set when the record is dropped from the tracker's map: a
	// cached view's records are then looked up again.
	gone atomic.Bool
	// overdue is set while the sweep counts the instance overdue (or
	// silent): its next heartbeat tells the sweep (see comebacks).
	overdue atomic.Bool
	// queued is set while the record waits in the comebacks.
	queued atomic.Bool
	// counted is set while the sweep counts the record in a phase: when
	// it is dropped from the tracker (Forget, Retain), the sweep is told,
	// so that it stops counting it.
	counted atomic.Bool
	// The sweep's judgement of the instance (see due.go); only the sweep's
	// goroutine reads or writes gen, duePass, phase and due.
	gen uint32 // the sweeper that judged it
	// duePass is the pass that last found it due, so that a pass
	// proposes for it once.
	duePass uint32
	pos     uint8
	phase   phase // what it was judged to be
	// watch is, while the sweep counts the instance live and not overdue,
	// the moment (an offset from epoch) it next judges whether it turned
	// overdue, and ttl its TTL; watch is 0 otherwise. A heartbeat that
	// makes it due to turn overdue before then tells the sweep: a shorter
	// rhythm makes the overdue delay shorter, and the sweep, which does
	// not see heartbeats, would judge it too late.
	watch, ttl atomic.Int64
	due        int64 // the tick it is next judged at, 0 for none
}

// maxGapMS is the longest heartbeat gap a record keeps, in milliseconds
// (about 24 days); a longer one is kept as this.
const maxGapMS = math.MaxInt32

// storeGap keeps gap in slot i, in milliseconds.
func (r *record) storeGap(i uint8, gap time.Duration) {
	r.gaps[i].Store(int32(min(gap/time.Millisecond, maxGapMS)))
}

// gap returns the gap in slot i.
func (r *record) gap(i int) time.Duration {
	return time.Duration(r.gaps[i].Load()) * time.Millisecond
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	t := &Tracker{epoch: time.Now()}
	t.m.seed = maphash.MakeSeed()
	for i := range t.m.shards {
		t.m.shards[i].m = map[string]*record{}
	}
	return t
}

// recordMap is the tracker's map from ID to record: shards of a plain map
// under a read-write lock. It holds one entry for every instance, so it
// is built for size: a sync.Map spent about 140 bytes of nodes on each
// entry, a Go map about 30.
type recordMap struct {
	seed   maphash.Seed
	shards [recordShards]recordShard
}

// recordShards is how many shards the record map has: enough that
// heartbeats on two cores seldom meet on one lock.
const recordShards = 64

type recordShard struct {
	mu sync.RWMutex
	m  map[string]*record
	_  [64 - 24 - 8]byte // one shard to a cache line
}

func (m *recordMap) shard(id string) *recordShard {
	return &m.shards[maphash.String(m.seed, id)%recordShards]
}

func (m *recordMap) load(id string) *record {
	s := m.shard(id)
	s.mu.RLock()
	r := s.m[id]
	s.mu.RUnlock()
	return r
}

// loadOrStore returns id's record, storing r if there is none, and
// whether it was there.
func (m *recordMap) loadOrStore(id string, r *record) (*record, bool) {
	s := m.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[id]; ok {
		return old, true
	}
	s.m[id] = r
	return r, false
}

// delete removes id's record if it is r (nil: whatever it is), and
// returns the record removed.
func (m *recordMap) delete(id string, r *record) *record {
	s := m.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.m[id]
	if !ok || (r != nil && old != r) {
		return nil
	}
	delete(s.m, id)
	return old
}

// each calls f with every record, one shard at a time, under no lock: f
// may change the map.
func (m *recordMap) each(f func(*record)) {
	var buf []*record
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		buf = buf[:0]
		for _, r := range s.m {
			buf = append(buf, r)
		}
		s.mu.RUnlock()
		for _, r := range buf {
			f(r)
		}
	}
}

// get returns id's record, or nil.
func (t *Tracker) get(id string) *record { return t.m.load(id) }

// ensure returns id's record, creating one that has heard nothing.
func (t *Tracker) ensure(id string) *record {
	if r := t.get(id); r != nil {
		return r
	}
	r := &record{id: id}
	r.last.Store(never)
	r, loaded := t.m.loadOrStore(id, r)
	if !loaded {
		t.n.Add(1)
	}
	return r
}

// Len returns how many instances the tracker holds records of.
func (t *Tracker) Len() int { return int(t.n.Load()) }

// Beat records a heartbeat (or a registration) of id at now. A beat older
// than the last one recorded is ignored.
func (t *Tracker) Beat(id string, now time.Time) {
	r := t.ensure(id)
	if r.beat(now.Sub(t.epoch), t.factor) {
		t.tell(r)
	}
}

// tell queues r for the sweep, unless it is queued already.
func (t *Tracker) tell(r *record) {
	if r.queued.CompareAndSwap(false, true) {
		t.cbMu.Lock()
		t.comebacks = append(t.comebacks, r)
		t.cbMu.Unlock()
	}
}

// drop marks r, just deleted from the map, gone, and tells the sweep if
// it counts it.
func (t *Tracker) drop(r *record) {
	t.n.Add(-1)
	r.gone.Store(true)
	if r.counted.Load() {
		t.tell(r)
	}
}

// beat records a heartbeat at at, and reports whether the sweep must
// judge the instance again: it was counted overdue, or it would now turn
// overdue (by factor) before the sweep's next judgement (see watch).
func (r *record) beat(at time.Duration, factor float64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.last.Load()
	if int64(at) <= last && last != never {
		return false // older than the last: nothing changes
	}
	r.seq.Add(1)
	if last != never {
		r.storeGap(r.pos, time.Duration(int64(at)-last))
		r.pos = (r.pos + 1) % historyLen
		if n := r.n.Load(); n < historyLen {
			r.n.Store(n + 1)
		}
	}
	r.last.Store(int64(at))
	r.seq.Add(1)
	if r.overdue.Load() {
		return true
	}
	w := r.watch.Load()
	if w == 0 || factor <= 0 {
		return false
	}
	// The least overdue delay any rhythm gives is factor × TTL/10: most
	// heartbeats are ruled out without reading the gaps.
	ttl := time.Duration(r.ttl.Load())
	if int64(at)+int64(factor*float64(ttl/10)) >= w {
		return false
	}
	s := snapshot{ok: true, n: int(r.n.Load())}
	for i := range s.n {
		s.intervals[i] = r.gap(i)
	}
	return int64(at+overdueAfter(s, ttl, factor)) < w
}

// snapshot is one consistent read of an instance's liveness.
type snapshot struct {
	ok        bool
	last      time.Time
	intervals [historyLen]time.Duration
	n         int
}

func (t *Tracker) read(id string) snapshot {
	return t.snap(t.get(id))
}

// snap reads r (nil: an instance never heard) without a lock.
func (t *Tracker) snap(r *record) snapshot {
	if r == nil {
		return snapshot{}
	}
	for {
		seq := r.seq.Load()
		if seq&1 == 1 {
			runtime.Gosched()
			continue
		}
		last := r.last.Load()
		if last == never {
			return snapshot{}
		}
		s := snapshot{ok: true, last: t.epoch.Add(time.Duration(last)), n: int(r.n.Load())}
		for i := range s.n {
			s.intervals[i] = r.gap(i)
		}
		if r.seq.Load() == seq {
			return s
		}
	}
}

// Seen returns the time of id's last heartbeat, and false if this tracker
// has none (never heard, or forgotten).
func (t *Tracker) Seen(id string) (time.Time, bool) {
	s := t.read(id)
	return s.last, s.ok
}

// base returns the time from which inst's TTL runs: its last heartbeat,
// or its registration time if this tracker has heard none, but never
// earlier than floor (the moment this node became a ready leader, or
// resumed from a pause, plus the grace). Liveness.Base is its one caller
// outside the status rule below.
//
// The tracker's times are on this process's monotonic clock, but
// RegisteredAt is a wall time from the log, stamped perhaps by an earlier
// process whose clock read later than this one's (the clock stepped back
// across the restart, or another node's clock runs ahead). Such a time
// must not postpone expiry. m, when not nil, says that every instance
// with a CreateIndex up to m.index had been applied by m.at: such an
// instance cannot have registered later than m.at, so a later
// RegisteredAt is read as m.at. The mark is taken by the first sweep under
// each floor (see Liveness.observe), within a sweep interval of the term's
// start, so an instance from before the term is judged from the floor,
// and one registered during the term (applied after the mark) keeps its
// registration time.
func base(inst *catalog.Instance, s snapshot, floor time.Time, m *mark) time.Time {
	b := inst.RegisteredAt
	switch {
	case s.ok:
		b = s.last
	case m != nil && inst.CreateIndex <= m.index && b.After(m.at):
		b = m.at
	}
	if b.Before(floor) {
		return floor
	}
	return b
}

// Committed is inst's status by the one status rule (Liveness.Status)
// with no TTL to judge: what the catalog says, with draining for a
// healthy drained instance. It is what to report for an instance that has
// just been heard from.
func Committed(inst *catalog.Instance) catalog.Status {
	return status(inst, snapshot{}, time.Time{}, time.Time{}, nil, nil)
}

// status is the one status rule: critical if the catalog says so or if
// inst's TTL has run out (judged from base) even before the sweep commits
// the change, unless the hold h of mass-expiry protection holds it (see
// hold.deadline); otherwise draining if it asked to drain; otherwise
// passing. With a zero floor (the node is not a ready leader, so it has
// no heartbeat history to judge by) no TTL is judged, and an instance with
// a TTL of 0 has none: it never heartbeats, and its active checks alone
// decide its status (what the catalog committed).
// ttlRanOut is the TTL part of the status rule: inst has a TTL, this node
// judges (floor set), and the TTL counted from its base has run out,
// unless mass-expiry protection holds it.
func ttlRanOut(inst *catalog.Instance, s snapshot, floor, now time.Time, m *mark, h *hold) bool {
	return !floor.IsZero() && inst.TTL > 0 && expired(inst, base(inst, s, floor, m), floor, now, h)
}

func status(inst *catalog.Instance, s snapshot, floor, now time.Time, m *mark, h *hold) catalog.Status {
	switch {
	case inst.Status == catalog.StatusCritical:
		return catalog.StatusCritical
	case ttlRanOut(inst, s, floor, now, m, h):
		return catalog.StatusCritical
	case inst.Draining:
		return catalog.StatusDraining
	default:
		return catalog.StatusPassing
	}
}

// Forget drops id's history (the instance left the catalog).
func (t *Tracker) Forget(id string) {
	if r := t.m.delete(id, nil); r != nil {
		t.drop(r)
	}
}

// Retain drops every instance for which keep reports false. keep must not
// call the tracker.
func (t *Tracker) Retain(keep func(id string) bool) {
	t.m.each(func(r *record) {
		if !keep(r.id) && t.m.delete(r.id, r) != nil {
			t.drop(r)
		}
	})
}

// IDs returns the IDs the tracker holds.
func (t *Tracker) IDs() []string {
	var out []string
	t.m.each(func(r *record) { out = append(out, r.id) })
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
	return freshness(t.read(id), ttl, now)
}

func freshness(s snapshot, ttl time.Duration, now time.Time) Freshness {
	if !s.ok {
		return Freshness{Age: -1, Quality: 0}
	}
	age := now.Sub(s.last)
	if age < 0 {
		age = 0
	}
	return Freshness{Age: age, Quality: quality(age, ttl, s.intervals[:s.n])}
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
func quality(age, ttl time.Duration, gaps []time.Duration) float64 {
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

// Intervals returns the gaps between id's last heartbeats, oldest first
// (at most the few quality looks at), and nil when it has fewer than two.
// It takes the record's lock: it is for a person looking at one
// instance, not for lookups.
func (t *Tracker) Intervals(id string) []time.Duration {
	r := t.get(id)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := int(r.n.Load())
	out := make([]time.Duration, 0, n)
	start := 0
	if n == historyLen {
		start = int(r.pos)
	}
	for i := range n {
		out = append(out, r.gap((start+i)%historyLen))
	}
	return out
}
