package catalog

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Change is what a subscriber learns from Subscription.Take: the catalog
// has applied everything up to Index, and these services changed since the
// subscriber last took a change.
type Change struct {
	Index uint64
	// Services are the names of the services whose views changed, sorted.
	// It is empty when only keys changed.
	Services []string
	// All is set after a Restore: any service may have changed, and
	// Services is empty.
	All bool
}

// Subscription receives the catalog's changes, coalesced: however often
// the catalog changes between two Takes, the subscriber holds at most one
// pending Change (the highest index and the union of the services). The
// catalog therefore never waits for a subscriber, whatever it does: the
// FSM goroutine only merges into the pending change under a lock held for
// a few instructions, and signals Ready without blocking.
//
// Ready, Take and Close may be called from any goroutine.
type Subscription struct {
	subs  *subscribers
	ready chan struct{}

	mu       sync.Mutex
	pending  bool
	index    uint64
	all      bool
	services map[string]struct{}
}

// Subscribe returns a new subscription. It receives every change applied
// after Subscribe returns. Close it when done.
func (c *Catalog) Subscribe() *Subscription {
	s := &Subscription{subs: &c.subs, ready: make(chan struct{}, 1), services: map[string]struct{}{}}
	c.subs.add(s)
	return s
}

// Ready returns a channel that holds a value while a change is pending.
// After receiving from it, call Take.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns the pending change and clears it; ok is false if nothing
// changed since the last Take.
func (s *Subscription) Take() (ch Change, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.pending {
		return Change{}, false
	}
	ch = Change{Index: s.index, All: s.all, Services: make([]string, 0, len(s.services))}
	if !s.all {
		for name := range s.services {
			ch.Services = append(ch.Services, name)
		}
		slices.Sort(ch.Services)
	}
	s.pending, s.all = false, false
	clear(s.services)
	// Drain a signal left by a change this Take already covered.
	select {
	case <-s.ready:
	default:
	}
	return ch, true
}

// Close ends the subscription; no further changes are recorded.
func (s *Subscription) Close() { s.subs.remove(s) }

// record merges one change into the pending one. It never blocks.
func (s *Subscription) record(index uint64, services []string, all bool) {
	s.mu.Lock()
	s.pending = true
	if index > s.index {
		s.index = index
	}
	if all {
		s.all = true
		clear(s.services)
	} else if !s.all {
		for _, name := range services {
			s.services[name] = struct{}{}
		}
	}
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// subscribers is a copy-on-write list: notify, on the FSM goroutine, reads
// it without a lock.
type subscribers struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*Subscription]
}

func (ss *subscribers) add(s *Subscription) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var next []*Subscription
	if cur := ss.list.Load(); cur != nil {
		next = slices.Clone(*cur)
	}
	next = append(next, s)
	ss.list.Store(&next)
}

func (ss *subscribers) remove(s *Subscription) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	cur := ss.list.Load()
	if cur == nil {
		return
	}
	next := slices.DeleteFunc(slices.Clone(*cur), func(x *Subscription) bool { return x == s })
	ss.list.Store(&next)
}

func (ss *subscribers) notify(index uint64, services []string, all bool) {
	cur := ss.list.Load()
	if cur == nil {
		return
	}
	for _, s := range *cur {
		s.record(index, services, all)
	}
}
