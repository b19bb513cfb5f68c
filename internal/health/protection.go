package health

import (
	"errors"
	"math"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// ProtectionConfig configures mass-expiry protection: when a large share
// of the catalog falls silent at once (a network split between the
// registry and part of the fleet looks exactly like that), expiry is held
// instead of emptying the catalog one instance at a time.
//
// The rule, judged by every sweep over the whole catalog: an instance
// that heartbeats (a TTL above 0; a check-only instance is neither
// counted nor held) is live if its status by the one status rule is not
// critical, and overdue
// if it is live and has been silent for more than OverdueFactor times its
// usual heartbeat interval (the median of the last gaps the Tracker
// recorded, TTL/3 until it has three, kept within [TTL/10, TTL]). When at
// least MinInstances are live and more than Threshold of them are
// overdue, a hold begins. Every instance whose TTL runs out after the
// hold began is held: it is not critical to any reader, and the sweep
// does not expire it.
//
// While the hold is on, only the silent keep it on: an overdue instance
// counts only if it has not been heard since the hold began (or
// resumed). The hold ends when that count falls back to Threshold of the
// live or below (heartbeats came back), and at the latest MaxHold after
// it began. A held instance that is still silent when the hold ends by
// itself gets one more TTL from that moment to be heard, but never past
// the MaxHold bound; at the bound, every held expiry happens. A new wave
// of silence before the bound resumes the same hold, with the same
// bound, once.
//
// A hold is over at its bound, or when it ends by itself after it
// resumed. Then no new hold begins for Cooldown after it last held (its
// bound, or the moment it ended), nor before its bound: expiries happen
// normally meanwhile. So however the fleet (or an insider with an
// enrolment key) behaves, expiry is held at most MaxHold out of every
// MaxHold + Cooldown.
//
// Overdue comes long before expiry: with heartbeats every TTL/3 (the
// SDK's rate) and the default factor of 1.5, an instance is overdue
// TTL/2 after its last heartbeat and expires a full TTL after it. The
// instances of one event stop together but last beat up to one interval
// apart, so their TTLs run out over a third of a TTL; every one of them
// is overdue before the first of them expires, so the hold is decided in
// time to cover the whole group. A factor of 2 would leave no margin: the
// last of the group to have beaten would turn overdue just as the first
// expires.
//
// The zero ProtectionConfig is off.
type ProtectionConfig struct {
	// Enabled turns protection on.
	Enabled bool
	// Threshold is the share of live instances that must be overdue at
	// once, more than which expiry is held; between 0 and 1.
	Threshold float64
	// MinInstances is the fewest live instances for which protection
	// acts: in a small catalog a few deaths are a large share.
	MinInstances int
	// OverdueFactor is how many usual heartbeat intervals an instance
	// may be silent before it counts as overdue; above 1.
	OverdueFactor float64
	// MaxHold bounds a hold: every held expiry happens at most MaxHold
	// after the hold began, whatever the heartbeats do.
	MaxHold time.Duration
	// Cooldown is how long after a hold is over no new one may begin,
	// counted from the moment it last held (see above); zero means as
	// long as MaxHold, so that expiry is held at most half the time.
	// Not negative: there is no setting without one, since it is what
	// bounds how much of the time a fleet can keep expiry held.
	Cooldown time.Duration
}

// DefaultProtectionConfig returns the production settings: on, more than
// 30% of at least 20 live instances overdue, overdue after 1.5 usual
// intervals of silence, holds of at most 2 minutes, and a cooldown as
// long as that (Cooldown zero).
func DefaultProtectionConfig() ProtectionConfig {
	return ProtectionConfig{Enabled: true, Threshold: 0.30, MinInstances: 20, OverdueFactor: 1.5, MaxHold: 2 * time.Minute}
}

// Validate reports a configuration error. A configuration that is off is
// not checked further.
func (c ProtectionConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if !(c.Threshold > 0 && c.Threshold < 1) {
		errs = append(errs, errors.New("health: the protection threshold must be a share between 0 and 1, such as 0.3"))
	}
	if c.MinInstances < 1 {
		errs = append(errs, errors.New("health: protection's minimum of instances must be at least 1"))
	}
	if !(c.OverdueFactor > 1) || math.IsInf(c.OverdueFactor, 0) {
		errs = append(errs, errors.New("health: protection's overdue factor must be above 1"))
	}
	if c.MaxHold <= 0 {
		errs = append(errs, errors.New("health: protection's maximum hold must be positive"))
	}
	if c.Cooldown < 0 {
		errs = append(errs, errors.New("health: protection's cooldown must not be negative (0 means as long as the maximum hold)"))
	}
	return errors.Join(errs...)
}

// cooldown returns the cooldown in force: Cooldown, or MaxHold when it
// is zero.
func (c ProtectionConfig) cooldown() time.Duration {
	if c.Cooldown == 0 {
		return c.MaxHold
	}
	return c.Cooldown
}

// hold is one episode of mass-expiry protection. It is immutable: the
// sweep stores a new one on every change, and readers load it with one
// atomic read.
type hold struct {
	// floor is the floor the hold was taken under. Under another floor (a
	// new term, or after a pause) it is ignored: the floor already judges
	// every instance afresh.
	floor time.Time
	// start: an instance whose TTL runs out after start is held.
	start time.Time
	// since is when the hold last turned on: start, or when it resumed.
	// While it is on, an overdue instance counts only if it has not been
	// heard since (see counts).
	since time.Time
	// bound is start + MaxHold: no held expiry waits past it.
	bound time.Time
	// end is when the hold ended, zero while it is on. A hold that ran to
	// its bound has end == bound.
	end time.Time
	// resumed: the hold ended by itself and turned on again; it cannot
	// resume a second time.
	resumed bool
	// refused: a new hold was refused during this one's cooldown, and
	// logged; the log says so once per cooldown.
	refused bool
	// overdue of live instances were counted by the sweep that last
	// changed the hold.
	overdue, live int
}

// on reports whether h holds expiries at now under floor.
func (h *hold) on(floor, now time.Time) bool {
	return h != nil && h.floor.Equal(floor) && h.end.IsZero() && now.Before(h.bound)
}

// counts reports whether an overdue instance whose TTL runs from b counts
// towards the threshold at now under floor: always, unless h is on and
// the instance was heard after h last turned on. A hold is kept on by
// instances that stay silent, as a split's do; one that comes back no
// longer keeps it on, whatever it does next, until the hold ends.
func (h *hold) counts(b, floor, now time.Time) bool {
	return !h.on(floor, now) || !b.After(h.since)
}

// over reports whether h can hold nothing more at now: its bound has
// passed, or it ended by itself after it had resumed.
func (h *hold) over(now time.Time) bool {
	return !now.Before(h.bound) || h.resumed && !h.end.IsZero()
}

// next returns, for a hold that is over, the moment from which a new hold
// may begin: cooldown after it last held (its end, or its bound if it had
// not ended), and never before its bound, so that every deadline it gave
// has passed.
func (h *hold) next(cooldown time.Duration) time.Time {
	last := h.end
	if last.IsZero() {
		last = h.bound
	}
	if t := last.Add(cooldown); t.After(h.bound) {
		return t
	}
	return h.bound
}

// deadline returns the moment after which an instance whose TTL runs out
// at due (its Base plus its TTL) is critical, under h and floor. An
// instance whose TTL ran out before the hold began is not held. One whose
// TTL runs out after it is held while the hold is on; when the hold ended
// by itself (end before bound) it has one more TTL from the end, but no
// held expiry waits past the bound.
func (h *hold) deadline(due time.Time, ttl time.Duration, floor time.Time) time.Time {
	if h == nil || !h.floor.Equal(floor) || !due.After(h.start) {
		return due
	}
	lim := h.bound
	if !h.end.IsZero() {
		if e := h.end.Add(ttl); e.Before(lim) {
			lim = e
		}
	}
	if lim.After(due) {
		return lim
	}
	return due
}

// expired reports whether inst, whose TTL runs from b, is past its
// deadline at now under h and floor.
func expired(inst *catalog.Instance, b, floor, now time.Time, h *hold) bool {
	return now.After(h.deadline(b.Add(inst.TTL), inst.TTL, floor))
}

// minGaps is how many heartbeat gaps the tracker must have recorded for
// an instance before their median is taken as its usual interval. The
// first gap runs from the registration, which says little about the
// rhythm (a first heartbeat may follow a registration closely), and a
// median of one or two is that gap.
const minGaps = 3

// overdueAfter returns how long an instance with heartbeat history s and
// TTL ttl may be silent before it counts as overdue: factor times its
// usual interval, the median of its recorded gaps once it has minGaps of
// them (until then, and after a restart, TTL/3: the SDK's heartbeat
// interval), kept within [TTL/10, TTL] so that a very chatty instance
// does not turn overdue on a scheduling hiccup.
func overdueAfter(s snapshot, ttl time.Duration, factor float64) time.Duration {
	usual := ttl / 3
	if s.n >= minGaps {
		usual = median(s.intervals, s.n)
	}
	usual = min(max(usual, ttl/10), ttl)
	return time.Duration(factor * float64(usual))
}

// median returns the upper median of the first n of gaps, without
// allocating.
func median(gaps [historyLen]time.Duration, n int) time.Duration {
	g := gaps // a copy, sorted in place
	for i := 1; i < n; i++ {
		for j := i; j > 0 && g[j] < g[j-1]; j-- {
			g[j], g[j-1] = g[j-1], g[j]
		}
	}
	return g[n/2]
}

// Protection is the state of mass-expiry protection as one reading sees
// it.
type Protection struct {
	// Active reports whether expiries are held now.
	Active bool
	// Since is when the latest hold under the current floor began, and
	// Until the bound past which none of its expiries waits (Since plus
	// MaxHold); both zero when there has been none.
	Since, Until time.Time
	// Overdue of Live instances were counted by the sweep that last
	// started, resumed or ended the hold.
	Overdue, Live int
	// CooldownUntil is, once the latest hold is over (see
	// ProtectionConfig), the moment from which a new one may begin; it
	// may have passed. Zero while the latest hold is on or may resume,
	// and when there has been none.
	CooldownUntil time.Time
	// Activations counts the times protection turned on (a new hold, or
	// a hold resumed) since this process started.
	Activations uint64
}

// Protecting reports whether mass-expiry protection holds expiries at
// now under floor (from Floor). It is one atomic load: readers may call
// it on every lookup.
func (l *Liveness) Protecting(floor, now time.Time) bool {
	return l.held.Load().on(floor, now)
}

// Protection returns the state of mass-expiry protection at now under
// floor (from Floor).
func (l *Liveness) Protection(floor, now time.Time) Protection {
	p := Protection{Activations: l.activations.Load()}
	if h := l.held.Load(); h != nil && h.floor.Equal(floor) {
		p.Active = h.on(floor, now)
		p.Since, p.Until, p.Overdue, p.Live = h.start, h.bound, h.overdue, h.live
		if h.over(now) {
			p.CooldownUntil = h.next(l.protection.cooldown())
		}
	}
	return p
}

// ProtectionChanged returns a channel that is closed the next time the
// hold starts, resumes or ends: a reader that pushes the state (an event
// stream) waits on it, then asks Protecting again.
func (l *Liveness) ProtectionChanged() <-chan struct{} {
	l.changedMu.Lock()
	defer l.changedMu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

// protectionChanged wakes those waiting on ProtectionChanged.
func (l *Liveness) protectionChanged() {
	l.changedMu.Lock()
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	l.changedMu.Unlock()
}

// holdChange is what one sweep changed about the hold.
type holdChange int

const (
	holdSame     holdChange = iota
	holdStarted             // a new hold began
	holdResumed             // a hold that had ended by itself, before its bound, is on again
	holdReleased            // the overdue share fell back: heartbeats are back
	holdBounded             // the hold ran to its bound: held expiries happen now
	holdDropped             // a hold from an earlier floor was dropped while on
	holdRefused             // too many are overdue, but the last hold's cooldown runs: first time in this cooldown
)

// protect updates the hold from one sweep's counts at now under floor:
// live instances (not critical by the status rule), of which overdue are
// overdue and count (see hold.counts). Only the sweep's goroutine calls
// it. It returns what changed and the hold as it now stands.
func (l *Liveness) protect(floor, now time.Time, live, overdue int) (holdChange, *hold) {
	p := l.protection
	h := l.held.Load()
	if h != nil && !h.floor.Equal(floor) {
		// A new term, or a pause: the floor judges everyone afresh, and
		// the next sweep counts again. The floor already holds every
		// expiry for a TTL and the grace, so no cooldown carries over.
		l.held.Store(nil)
		if h.end.IsZero() {
			l.protectionChanged()
			return holdDropped, nil
		}
		h = nil
	}
	mass := p.Enabled && live >= p.MinInstances && float64(overdue) > p.Threshold*float64(live)
	set := func(c holdChange, n hold) (holdChange, *hold) {
		n.overdue, n.live = overdue, live
		l.held.Store(&n)
		if c == holdStarted || c == holdResumed {
			l.activations.Add(1)
		}
		l.protectionChanged()
		return c, &n
	}
	switch {
	case h == nil:
		// None under this floor: a mass silence starts one.
	case h.end.IsZero() && !now.Before(h.bound):
		n := *h
		n.end = h.bound
		return set(holdBounded, n)
	case h.end.IsZero():
		if !mass {
			n := *h
			n.end = now
			return set(holdReleased, n)
		}
		return holdSame, h
	case !h.over(now):
		// Ended by itself, and its bound has not passed: a new wave of
		// silence resumes the same hold, once, so its bound stands, and
		// instances still within their extra TTL stay held.
		if mass {
			n := *h
			n.end, n.since, n.resumed = time.Time{}, now, true
			return set(holdResumed, n)
		}
		return holdSame, h
	case mass && now.Before(h.next(p.cooldown())):
		// Over, and its cooldown runs: expiries happen normally. Say so
		// once per cooldown.
		if h.refused {
			return holdSame, h
		}
		n := *h
		n.refused = true
		l.held.Store(&n)
		return holdRefused, &n
	}
	if mass {
		return set(holdStarted, hold{floor: floor, start: now, since: now, bound: now.Add(p.MaxHold)})
	}
	return holdSame, h
}
