package catalog

import "sync"

// watches hands out channels that close at the next change of one
// service, or of the service list: the wake-up of blocking queries. A
// change wakes only the waiters of what changed, and a channel exists only
// while someone asked for it since the last change.
type watches struct {
	mu       sync.Mutex
	services map[string]chan struct{}
	list     chan struct{} // any service's change
}

// Watch returns the service's current view (nil if the service has never
// had an instance) and a channel that is closed when that view is
// replaced: by a change to the service, or by a Restore.
func (c *Catalog) Watch(service string) (*ServiceView, <-chan struct{}) {
	// The channel is taken before the view is read, so that a change
	// between the two closes the channel the caller holds.
	c.watch.mu.Lock()
	if c.watch.services == nil {
		c.watch.services = map[string]chan struct{}{}
	}
	ch, ok := c.watch.services[service]
	if !ok {
		ch = make(chan struct{})
		c.watch.services[service] = ch
	}
	c.watch.mu.Unlock()
	return c.Service(service), ch
}

// WatchList returns the catalog's index and a channel that is closed at
// the next change to any service (or a Restore).
func (c *Catalog) WatchList() (uint64, <-chan struct{}) {
	c.watch.mu.Lock()
	if c.watch.list == nil {
		c.watch.list = make(chan struct{})
	}
	ch := c.watch.list
	c.watch.mu.Unlock()
	return c.Index(), ch
}

// wake closes the channels of the services touched (all of them when all
// is set), and of the list when any service changed.
func (w *watches) wake(touched []string, all bool) {
	if len(touched) == 0 && !all {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if all {
		for name, ch := range w.services {
			close(ch)
			delete(w.services, name)
		}
	}
	for _, name := range touched {
		if ch, ok := w.services[name]; ok {
			close(ch)
			delete(w.services, name)
		}
	}
	if w.list != nil {
		close(w.list)
		w.list = nil
	}
}
