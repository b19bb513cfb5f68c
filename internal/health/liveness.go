package health

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// Leadership tells whether this node is a ready leader (it leads and has
// applied its whole log) and since when; *cluster.Node implements it.
type Leadership interface {
	// Ready returns a channel that is closed while this node is a ready
	// leader, and the time it became one. A new channel is handed out
	// after leadership is lost. It must be safe for concurrent use.
	Ready() (<-chan struct{}, time.Time)
}

// LivenessConfig configures a Liveness.
type LivenessConfig struct {
	// Grace is added to every TTL after this node becomes a ready leader
	// (or resumes from a pause): no instance expires before TTL + Grace
	// from then, so that every live instance has time to be heard.
	Grace time.Duration
}

// DefaultLivenessConfig returns the production settings.
func DefaultLivenessConfig() LivenessConfig { return LivenessConfig{Grace: 10 * time.Second} }

// Validate reports a configuration error.
func (c LivenessConfig) Validate() error {
	if c.Grace < 0 {
		return errors.New("health: grace must not be negative")
	}
	return nil
}

// Liveness is the one owner of "is this instance alive": the heartbeat
// Tracker, the leadership this node's judgement depends on, and the grace.
// The sweep, every lookup, the tutorial protocol and any later front end
// ask it, so that they cannot disagree. It is safe for concurrent use.
type Liveness struct {
	tracker *Tracker
	lead    Leadership
	grace   time.Duration

	// rebased is when the process resumed from its last pause (see
	// Rebase); it moves the start of judgement forward within a term. It
	// is read on every lookup and heartbeat, so it is an atomic pointer,
	// not a lock.
	rebased atomic.Pointer[time.Time]
}

// NewLiveness returns the liveness of instances heard by t, judged while l
// reports this node a ready leader.
func NewLiveness(cfg LivenessConfig, t *Tracker, l Leadership) *Liveness {
	return &Liveness{tracker: t, lead: l, grace: cfg.Grace}
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
// (Leading plus the grace), and false when this node is not a ready
// leader: its catalog may be partial and it has no heartbeats to judge by.
func (l *Liveness) Floor() (time.Time, bool) {
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

// Beat records a heartbeat (or a registration) of id at now.
func (l *Liveness) Beat(id string, now time.Time) { l.tracker.Beat(id, now) }

// Forget drops id's history (the instance left the catalog).
func (l *Liveness) Forget(id string) { l.tracker.Forget(id) }

// View returns inst's effective status and freshness at now under floor
// (from Floor): the lookup hot path, one read of the tracker.
func (l *Liveness) View(inst *catalog.Instance, floor, now time.Time) (catalog.Status, Freshness) {
	return l.tracker.View(inst, floor, now)
}

// Status returns inst's effective status at now under floor.
func (l *Liveness) Status(inst *catalog.Instance, floor, now time.Time) catalog.Status {
	return l.tracker.Status(inst, floor, now)
}
