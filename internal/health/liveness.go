package health

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// Leadership tells whether this node is a ready leader (it leads and has
// applied its whole log) and since when: since it became one or, if
// later, since a restore from a backup last replaced its catalog, from
// which expiry is judged afresh; *cluster.Node implements it.
type Leadership interface {
	// Ready returns a channel that is closed while this node is a ready
	// leader, and the time it became one. A new channel is handed out
	// after leadership is lost. It must be safe for concurrent use.
	Ready() (<-chan struct{}, time.Time)
}

// Replica is what Liveness needs of this node's replication beyond
// leadership, in a cluster of several servers; the server's relay
// implements it. Its methods must be safe for concurrent use and cheap:
// they are called on every lookup and every heartbeat.
type Replica interface {
	// Serving reports whether this node, while it does not lead, may
	// serve reads from its replica: it has caught up with the log and
	// heard from a leader recently enough.
	Serving() bool
	// Heard is told of every heartbeat Liveness.Beat records, so that a
	// follower can pass it on to the leader, and the leader to its
	// followers.
	Heard(id string, at time.Time)
}

// LivenessConfig configures a Liveness.
type LivenessConfig struct {
	// Grace is added to every TTL after this node becomes a ready leader
	// (or resumes from a pause): no instance expires before TTL + Grace
	// from then, so that every live instance has time to be heard.
	Grace time.Duration
	// Protection holds expiry while a large share of the catalog is
	// silent at once (see ProtectionConfig); the zero value is off.
	Protection ProtectionConfig
}

// DefaultLivenessConfig returns the production settings.
func DefaultLivenessConfig() LivenessConfig {
	return LivenessConfig{Grace: 10 * time.Second, Protection: DefaultProtectionConfig()}
}

// Validate reports a configuration error.
func (c LivenessConfig) Validate() error {
	var errs []error
	if c.Grace < 0 {
		errs = append(errs, errors.New("health: grace must not be negative"))
	}
	return errors.Join(append(errs, c.Protection.Validate())...)
}

// Liveness is the one owner of "is this instance alive": the heartbeat
// Tracker, the leadership this node's judgement depends on, and the grace.
// The sweep, every lookup, the tutorial protocol and any later front end
// ask it, so that they cannot disagree. It is safe for concurrent use.
type Liveness struct {
	tracker *Tracker
	lead    Leadership
	replica Replica // nil on a single node
	grace   time.Duration

	// rebased is when the process resumed from its last pause (see
	// Rebase); it moves the start of judgement forward within a term. It
	// is read on every lookup and heartbeat, so it is an atomic pointer,
	// not a lock.
	rebased atomic.Pointer[time.Time]

	// marked is the latest mark the sweep took (see observe); nil until
	// the first sweep. Written by the sweep's goroutine only, read by
	// every judgement.
	marked atomic.Pointer[mark]

	// protection configures mass-expiry protection. held is the latest
	// hold (see protect), nil when there has been none under the current
	// floor; written by the sweep's goroutine only, read by every
	// judgement. activations counts the holds started or resumed.
	protection  ProtectionConfig
	held        atomic.Pointer[hold]
	activations atomic.Uint64
	// changed is closed, and replaced, when the hold starts or ends, for
	// readers that push it (event streams).
	changedMu sync.Mutex
	changed   chan struct{}

	// views caches, per service name, the tracker's records of the
	// instances of the service's latest view read (see Records).
	views sync.Map // string → *Records
}

// Records are the heartbeat records of one service view's instances, in
// the view's order: a lookup that reads its instances' liveness through
// them looks up no map. Immutable once built.
type Records struct {
	view *catalog.ServiceView
	recs []*record
}

// Records returns the records of v's instances. They are built once per
// view (a view is immutable; a change to the service makes a new one) and
// shared by every reader of it.
func (l *Liveness) Records(v *catalog.ServiceView) *Records {
	if c, ok := l.views.Load(v.Name); ok && c.(*Records).view == v {
		return c.(*Records)
	}
	rs := &Records{view: v, recs: make([]*record, len(v.Instances))}
	for i, inst := range v.Instances {
		rs.recs[i] = l.tracker.ensure(inst.ID)
	}
	l.views.Store(v.Name, rs)
	return rs
}

// ViewAt is View for the i-th instance of the view rs was built from.
func (l *Liveness) ViewAt(rs *Records, i int, floor, now time.Time) (catalog.Status, Freshness) {
	inst, r := rs.view.Instances[i], rs.recs[i]
	if r.gone.Load() {
		// Dropped from the tracker since (a race of a heartbeat with a
		// removal): read what the tracker now holds.
		r = l.tracker.get(inst.ID)
	}
	s := l.tracker.snap(r)
	return status(inst, s, floor, now, l.marked.Load(), l.held.Load()), freshness(s, inst.TTL, now)
}

// mark is what one sweep saw: every instance with a CreateIndex up to
// index had been applied to the catalog by at (a reading of this
// process's clock). Catalog indexes grow in the order of application, so
// an instance applied later has a higher CreateIndex.
type mark struct {
	floor time.Time // the floor of the sweep that took it
	index uint64
	at    time.Time
}

// NewLiveness returns the liveness of instances heard by t, judged while l
// reports this node a ready leader. r, nil on a single node, lets a
// follower serve the statuses its leader committed (see Floor) and
// carries heartbeats between the members.
func NewLiveness(cfg LivenessConfig, t *Tracker, l Leadership, r Replica) *Liveness {
	if cfg.Protection.Enabled {
		t.factor = cfg.Protection.OverdueFactor
	}
	return &Liveness{tracker: t, lead: l, replica: r, grace: cfg.Grace, protection: cfg.Protection}
}

// Tracker returns the heartbeat tracker.
func (l *Liveness) Tracker() *Tracker { return l.tracker }

// Leading reports whether this node is a ready leader, and since when it
// can judge expiry: the moment it became a ready leader, or the moment it
// last resumed from a pause if that is later.
func (l *Liveness) Leading() (since time.Time, ok bool) {
	ch, since := l.lead.Ready()
	select {
	case <-ch:
	default:
		return time.Time{}, false
	}
	if r := l.rebased.Load(); r != nil && r.After(since) {
		since = *r
	}
	return since, true
}

// Floor returns the earliest time an instance's TTL may run from
// (Leading plus the grace), and true, on a ready leader. On a follower
// whose Replica is serving it returns the zero time and true: a follower
// judges no TTL itself and reports the statuses the leader committed
// (its sweep turns a missed TTL into a command within a sweep interval),
// so that the members never disagree about who is alive, mass-expiry
// protection included. Otherwise it returns false: the catalog may be
// partial.
func (l *Liveness) Floor() (time.Time, bool) {
	if floor, ok := l.LeaderFloor(); ok {
		return floor, true
	}
	if l.replica != nil && l.replica.Serving() {
		return time.Time{}, true
	}
	return time.Time{}, false
}

// LeaderFloor is Floor on a ready leader only: what the sweep judges by.
func (l *Liveness) LeaderFloor() (time.Time, bool) {
	since, ok := l.Leading()
	if !ok {
		return time.Time{}, false
	}
	return since.Add(l.grace), true
}

// Rebase moves the start of judgement forward to t, if this node is a
// ready leader. The sweeper calls it after the process was paused
// (stopped, or starved): heartbeats could not be heard before t, so expiry
// must be judged from t, as after an election.
func (l *Liveness) Rebase(t time.Time) {
	if _, ok := l.Leading(); !ok {
		return
	}
	for {
		cur := l.rebased.Load()
		if cur != nil && !t.After(*cur) {
			return
		}
		if l.rebased.CompareAndSwap(cur, &t) {
			return
		}
	}
}

// Beat records a heartbeat (or a registration) of id at now, and tells
// the Replica.
func (l *Liveness) Beat(id string, now time.Time) {
	l.tracker.Beat(id, now)
	if l.replica != nil {
		l.replica.Heard(id, now)
	}
}

// Forget drops id's history (the instance left the catalog).
func (l *Liveness) Forget(id string) { l.tracker.Forget(id) }

// observe takes a mark for the sweep under floor that listed insts and
// then read its clock at at, unless a sweep under the same floor took one
// already: a mark stands for the whole term (or the time since a pause),
// and a later one would move an old registration's base forward again.
// Only the sweep's goroutine calls it.
func (l *Liveness) observe(floor time.Time, insts []*catalog.Instance, at time.Time) {
	if m := l.marked.Load(); m != nil && m.floor.Equal(floor) {
		return
	}
	m := &mark{floor: floor, at: at}
	for _, inst := range insts {
		m.index = max(m.index, inst.CreateIndex)
	}
	l.marked.Store(m)
}

// Base returns the time from which inst's TTL runs under floor (from
// Floor): its last heartbeat, or its registration time if the tracker has
// heard none, but never earlier than floor; and a registration time that
// a clock stepped back across a restart (or another node's clock) put
// after this node began to judge is read as that moment, so that it
// cannot postpone expiry. The sweep and Status judge expiry from it, so
// they agree.
func (l *Liveness) Base(inst *catalog.Instance, floor time.Time) time.Time {
	return base(inst, l.tracker.read(inst.ID), floor, l.marked.Load())
}

// View returns inst's effective status and freshness at now under floor
// (from Floor): the lookup hot path, one read of the tracker.
func (l *Liveness) View(inst *catalog.Instance, floor, now time.Time) (catalog.Status, Freshness) {
	s := l.tracker.read(inst.ID)
	return status(inst, s, floor, now, l.marked.Load(), l.held.Load()), freshness(s, inst.TTL, now)
}

// Expired reports whether inst's TTL has run out at now under floor, by
// the TTL part of the status rule alone, whatever the catalog committed:
// what decides whether something other than a heartbeat (a passing
// check) may bring a critical instance back. An instance without a TTL
// never expires.
func (l *Liveness) Expired(inst *catalog.Instance, floor, now time.Time) bool {
	return ttlRanOut(inst, l.tracker.read(inst.ID), floor, now, l.marked.Load(), l.held.Load())
}

// Status returns inst's effective status at now under floor (from Floor),
// by the one status rule: critical if the catalog says so or if its TTL,
// counted from Base, has run out, even before the sweep commits the
// change, unless mass-expiry protection holds its expiry (see
// ProtectionConfig); otherwise draining if it asked to drain; otherwise
// passing. With a zero floor (this node is not a ready leader, so it has
// no heartbeat history to judge by) no TTL is judged. Every reader (HTTP
// lookups, the tutorial protocol, later DNS and streams) and the sweep use
// this one rule.
func (l *Liveness) Status(inst *catalog.Instance, floor, now time.Time) catalog.Status {
	return status(inst, l.tracker.read(inst.ID), floor, now, l.marked.Load(), l.held.Load())
}
