package registry

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Blocking queries.
const (
	// DefaultWait is how long a blocking query waits when it names an
	// index but no wait.
	DefaultWait = time.Minute
	// MaxWait is the longest wait a blocking query may ask for.
	MaxWait = 10 * time.Minute
)

// waiters counts the blocking queries held open, in all and by client;
// Config.MaxWaiters and MaxWaitersPerClient bound them.
type waiters struct {
	n        atomic.Int64
	mu       sync.Mutex
	byClient map[string]int
}

// jittered adds up to 1/16 of d, so that many waiters started together
// do not all return together.
func jittered(d time.Duration) time.Duration {
	return d + rand.N(d/16+1)
}

// hold counts one waiter of client, or reports false if MaxWaiters are
// held, or MaxWaitersPerClient by client.
func (r *Registry) hold(client string) (release func(), ok bool) {
	w := &r.waiters
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n.Load() >= int64(r.cfg.MaxWaiters) || w.byClient[client] >= r.cfg.MaxWaitersPerClient {
		return nil, false
	}
	if w.byClient == nil {
		w.byClient = map[string]int{}
	}
	w.n.Add(1)
	w.byClient[client]++
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.n.Add(-1)
		if w.byClient[client]--; w.byClient[client] <= 0 {
			delete(w.byClient, client)
		}
	}, true
}

// WaitService is Service as a blocking query: it returns as soon as the
// service's index is above index, or when wait (plus a little jitter)
// has passed or ctx ends, with the service as it is then. A wake-up costs
// only the waiters of the service that changed. Errors: ErrNotReady,
// ErrTooManyWaiters.
func (r *Registry) WaitService(ctx context.Context, client, name string, index uint64, wait time.Duration) (ServiceRead, error) {
	release, ok := r.hold(client)
	if !ok {
		return ServiceRead{}, ErrTooManyWaiters
	}
	defer release()
	t := time.NewTimer(jittered(wait))
	defer t.Stop()
	for {
		view, changed := r.cat.Watch(name)
		if view != nil && view.Index > index {
			break
		}
		select {
		case <-changed:
			continue
		case <-t.C:
		case <-ctx.Done():
		}
		break
	}
	return r.Service(name)
}

// WaitServices is Services as a blocking query: it returns as soon as the
// catalog's index is above index after a change to any service, or when
// wait has passed or ctx ends. Errors: as Services, and
// ErrTooManyWaiters.
func (r *Registry) WaitServices(ctx context.Context, client string, index uint64, wait time.Duration) ([]Summary, uint64, error) {
	release, ok := r.hold(client)
	if !ok {
		return nil, 0, ErrTooManyWaiters
	}
	defer release()
	t := time.NewTimer(jittered(wait))
	defer t.Stop()
	for {
		cur, changed := r.cat.WatchList()
		if cur > index {
			break
		}
		select {
		case <-changed:
			continue
		case <-t.C:
		case <-ctx.Done():
		}
		break
	}
	return r.Services()
}

// Waiters returns how many blocking queries are held open now.
func (r *Registry) Waiters() int { return int(r.waiters.n.Load()) }
