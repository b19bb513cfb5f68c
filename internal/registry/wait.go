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

// WaitServices is ServicesFor as a blocking query: it returns as soon as
// a service scope covers has changed after index, or when wait has
// passed or ctx ends. Errors: as Services, ErrTooManyWaiters, and
// Recheck's, for a token revoked or expired while it waited.
func (r *Registry) WaitServices(ctx context.Context, client string, index uint64, wait time.Duration, scope ReadScope) ([]Summary, uint64, error) {
	release, ok := r.hold(client)
	if !ok {
		return nil, 0, ErrTooManyWaiters
	}
	defer release()
	t := time.NewTimer(jittered(wait))
	defer t.Stop()
	for {
		cur, changed := r.cat.WatchList()
		if cur > index && (scope.All() || r.scopedIndex(scope) > index) {
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
	if err := r.Recheck(scope); err != nil {
		return nil, 0, err
	}
	return r.ServicesFor(scope)
}

// ServicesFor is Services for a reader of scope: the services it covers,
// and as the index the latest change to one of them (every service's,
// for a scope of all), so that neither the list nor its index tells
// when a service it may not read changed.
func (r *Registry) ServicesFor(scope ReadScope) ([]Summary, uint64, error) {
	sums, index, err := r.Services()
	if err != nil || scope.All() {
		return sums, index, err
	}
	out := sums[:0]
	for _, s := range sums {
		if scope.Covers(s.Name) {
			out = append(out, s)
		}
	}
	return out, r.scopedIndex(scope), nil
}

// scopedIndex is the index of the latest change to a service scope
// covers (a service's view stays, empty, once its last instance is gone,
// so a removal counts too).
func (r *Registry) scopedIndex(scope ReadScope) uint64 {
	var index uint64
	for _, v := range r.cat.Services() {
		if v.Index > index && scope.Covers(v.Name) {
			index = v.Index
		}
	}
	return index
}

// Waiters returns how many blocking queries are held open now.
func (r *Registry) Waiters() int { return int(r.waiters.n.Load()) }
