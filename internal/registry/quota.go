package registry

import (
	"fmt"
	"sync"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// QuotaError means a registration would take an enrolment key or an
// address over its limit of instances, or a key registers faster than
// its rate. Nothing is stored and the instance is not called back. Wait
// is set for the rate: how long until a registration is let through.
type QuotaError struct {
	Message string
	Wait    time.Duration
}

func (e *QuotaError) Error() string { return e.Message }

// quotas holds the registrations a node has admitted but not yet
// committed, so that concurrent registrations cannot together overshoot a
// limit the catalog's counts alone would allow. The catalog counts what
// is committed (catalog.Held); a pending registration, known by its
// instance ID, counts until the catalog holds that ID, so that none is
// counted twice between its commit and its release. On a single server
// the two together are exact; in a cluster, where every server admits,
// the registration's command carries the limits and the state machine
// holds them exactly (catalog.Command.KeyLimit).
type quotas struct {
	mu      sync.Mutex
	pending map[string]map[string]bool // "key|ID" or "host|address" → instance IDs
}

// reserve admits instance id as one more instance of the key and at the
// address, or returns a *QuotaError. sameKey says the registration will
// replace an instance of the same key, and sameHost one at the same
// address that counts against it alike: the key's count, or the
// address's, does not grow. unproved says the instance's address is not
// proved (proof none): it counts against the address apart from proven
// instances (catalog.Unproved). The caller must call release after its
// commit (or its failure).
func (r *Registry) reserve(key *catalog.Key, address, id string, sameKey, sameHost, unproved bool) (release func(), err error) {
	now := r.now()
	if ok, wait := r.registrations.Allow(now, key.ID); !ok {
		return nil, &QuotaError{Wait: wait, Message: fmt.Sprintf(
			"enrolment key %s registers faster than %s allows (%d at once, then one every %s); retry in %s",
			key.ID, "--register-rate", r.cfg.RegisterBurst, r.cfg.RegisterEvery, roundUp(wait))}
	}
	r.registrations.Spend(now, key.ID) // every attempt counts, whatever its outcome
	limit := r.keyLimit(key)
	keyName, hostName := "key|"+key.ID, "host|"+address
	var names []string
	q := &r.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	byKey, byHost, _ := r.cat.Held(key.ID, address)
	if unproved {
		hostName, byHost = "unproved|"+address, r.cat.Unproved(address)
	}
	if !sameKey {
		if r.overLimit(byKey, keyName, limit) {
			return nil, &QuotaError{Message: fmt.Sprintf(
				"enrolment key %s already holds %d instances, its limit (max_instances); deregister some, or create a key with a higher max_instances", key.ID, limit)}
		}
		names = append(names, keyName)
	}
	if !sameHost {
		if r.overLimit(byHost, hostName, r.cfg.MaxInstancesPerAddress) {
			return nil, &QuotaError{Message: fmt.Sprintf(
				"address %s already holds %d instances, the limit per address (--max-instances-per-address)", address, r.cfg.MaxInstancesPerAddress)}
		}
		names = append(names, hostName)
	}
	if q.pending == nil {
		q.pending = map[string]map[string]bool{}
	}
	for _, n := range names {
		if q.pending[n] == nil {
			q.pending[n] = map[string]bool{}
		}
		q.pending[n][id] = true
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			for _, n := range names {
				if delete(q.pending[n], id); len(q.pending[n]) == 0 {
					delete(q.pending, n)
				}
			}
		})
	}, nil
}

// overLimit reports whether held committed instances and the pending
// registrations under name that the catalog does not hold yet reach
// limit. Every pending one counts at most once, so the catalog is asked
// about them only when they could reach it together. Call with
// r.quotas.mu held.
func (r *Registry) overLimit(held int, name string, limit int) bool {
	pending := r.quotas.pending[name]
	if held+len(pending) < limit {
		return false
	}
	n := 0
	for id := range pending {
		if _, ok := r.cat.Instance(id); !ok {
			n++
		}
	}
	return held+n >= limit
}

// roundUp rounds d up to a whole second, for messages that pair with a
// Retry-After header.
func roundUp(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// keyLimit is the most instances key may hold: its own max_instances, or
// the server's default.
func (r *Registry) keyLimit(key *catalog.Key) int {
	if key.MaxInstances > 0 {
		return key.MaxInstances
	}
	return r.cfg.MaxInstancesPerKey
}
