package catalog

import (
	"sort"
	"sync"
	"sync/atomic"
)

// EventType says what happened to an instance.
type EventType string

// The event types: an instance came, went, or changed status (passing,
// critical, or the drain flag).
const (
	EventRegistered   EventType = "registered"
	EventDeregistered EventType = "deregistered"
	EventStatus       EventType = "status"
)

// Why an instance was deregistered (Event.Reason).
const (
	// ReasonDeregistered: the instance or an operator removed it.
	ReasonDeregistered = "deregistered"
	// ReasonExpired: it stayed critical past its deregister_after (a
	// removal conditional on the critical status, which the sweep
	// proposes).
	ReasonExpired = "expired"
	// ReasonEvicted: an operator evicted it.
	ReasonEvicted = "evicted"
)

// Event is one change to one instance, as applied at Index. Each applied
// command changes at most one instance, so an index carries at most one
// event: a registration that replaces the instance at the same endpoint is
// one registered event naming the instance it replaced. Events are
// immutable once recorded, except for the memo.
type Event struct {
	Index uint64
	Type  EventType
	// Instance is the instance after the change; for a deregistered
	// event, as it was when it went.
	Instance *Instance
	// Replaced is, for a registered event, the instance it replaced at the
	// same service, address and port, or nil.
	Replaced *Instance
	// Reason is set on deregistered events: ReasonDeregistered,
	// ReasonExpired or ReasonEvicted.
	Reason string

	memo atomic.Pointer[[]byte]
}

// Memo returns what SetMemo stored, or nil. A front end keeps its encoding
// of the event there, so that many streams encode it once; the catalog
// never reads it.
func (e *Event) Memo() []byte {
	if p := e.memo.Load(); p != nil {
		return *p
	}
	return nil
}

// SetMemo stores b for Memo. Concurrent callers may each store theirs; one
// wins, and each must store the same meaning.
func (e *Event) SetMemo(b []byte) { e.memo.Store(&b) }

// DefaultEventHistory is how many recent events a catalog keeps by
// default.
const DefaultEventHistory = 8192

// Option configures a Catalog made by New.
type Option func(*Catalog)

// WithEventHistory sets how many recent events the catalog keeps for
// Events (at least 1).
func WithEventHistory(n int) Option {
	return func(c *Catalog) {
		if n < 1 {
			n = 1
		}
		c.events = newHistory(n)
	}
}

// history is a ring of the most recent events. Every event with an index
// above from is in it; older ones were dropped, or were never seen (they
// came before the snapshot the catalog was restored from).
type history struct {
	mu    sync.RWMutex
	buf   []*Event
	start int // position of the oldest event
	n     int // events held
	from  uint64
	// next is closed when an event is appended (or the history is reset),
	// and replaced: the wake-up of every stream.
	next chan struct{}
}

func newHistory(n int) history {
	return history{buf: make([]*Event, n), next: make(chan struct{})}
}

// record appends e, dropping the oldest event when the ring is full. It
// is called by Apply, under the catalog's write lock, after the change.
func (h *history) record(e *Event) {
	h.mu.Lock()
	if h.n == len(h.buf) {
		h.from = h.buf[h.start].Index
		h.buf[h.start] = nil
		h.start = (h.start + 1) % len(h.buf)
		h.n--
	}
	h.buf[(h.start+h.n)%len(h.buf)] = e
	h.n++
	h.mu.Unlock()
}

// reset forgets every event: the catalog now holds a snapshot at index.
func (h *history) reset(index uint64) {
	h.mu.Lock()
	clear(h.buf)
	h.start, h.n, h.from = 0, 0, index
	h.mu.Unlock()
}

// wake closes the channel of those waiting for the next event, and
// replaces it.
func (h *history) wake() {
	h.mu.Lock()
	close(h.next)
	h.next = make(chan struct{})
	h.mu.Unlock()
}

// Events appends to dst the recorded events with an index above after, in
// index order, at most max of them (max <= 0: no limit), and returns them
// with ok true, or ok false when the history no longer holds every event
// after it (it was dropped to make room, or predates the snapshot the
// catalog was restored from, or after is above the catalog's index, as
// from a catalog that is not this one): the caller must start again from a
// fresh read of the catalog (SnapshotOf). next is closed when a later
// event is recorded; it is taken before the events are read, so that none
// recorded in between is missed.
func (c *Catalog) Events(after uint64, max int, dst []*Event) (evs []*Event, ok bool, next <-chan struct{}) {
	index := c.Index()
	h := &c.events
	h.mu.RLock()
	next = h.next
	if after < h.from || after > index {
		h.mu.RUnlock()
		return dst, false, next
	}
	// Binary search for the first event above after: indexes grow along
	// the ring.
	lo, hi := 0, h.n
	for lo < hi {
		mid := (lo + hi) / 2
		if h.buf[(h.start+mid)%len(h.buf)].Index <= after {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	for i := lo; i < h.n && (max <= 0 || len(dst) < max); i++ {
		dst = append(dst, h.buf[(h.start+i)%len(h.buf)])
	}
	h.mu.RUnlock()
	return dst, true, next
}

// SnapshotOf returns, under one read lock, the catalog's index and the
// views of the named services (every service when names is nil), sorted
// by name; a service that has never had an instance is left out. Events
// after the index continue it.
func (c *Catalog) SnapshotOf(names []string) (index uint64, views []*ServiceView) {
	c.mu.RLock()
	if names == nil {
		views = make([]*ServiceView, 0, len(c.services))
		for _, s := range c.services {
			views = append(views, s.viewLocked())
		}
	} else {
		for _, n := range names {
			if s, ok := c.services[n]; ok {
				views = append(views, s.viewLocked())
			}
		}
	}
	index = c.index.Load()
	c.mu.RUnlock()
	sortViews(views)
	return index, views
}

func sortViews(views []*ServiceView) {
	sort.Slice(views, func(i, j int) bool { return views[i].Name < views[j].Name })
}

// Recent returns the newest events of service still in the history, at
// most max of them, newest first: what a person looking at the service
// wants to know of its recent past. It passes over the whole history
// (DefaultEventHistory events at most), touching no instance.
func (c *Catalog) Recent(service string, max int) []*Event {
	h := &c.events
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []*Event
	for i := h.n - 1; i >= 0 && len(out) < max; i-- {
		if e := h.buf[(h.start+i)%len(h.buf)]; e.Instance != nil && e.Instance.Service == service {
			out = append(out, e)
		}
	}
	return out
}
