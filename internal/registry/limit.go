package registry

import (
	"sync"
	"time"
)

// failureLimiter bounds how many failed verifications a caller may cause:
// token buckets by name. An attempt is let through while every named
// bucket holds a token, and only a failure spends one. Concurrent attempts
// can therefore overdraw a bucket, by at most the number of verifications
// in flight (64); the debt is paid back before the next attempt is let
// through. A caller probing addresses in the allowlisted networks through
// the callback is slowed to the refill rate; a service that registers
// correctly never spends anything, however many replicas register at once.
type failureLimiter struct {
	burst float64
	every time.Duration // one token back per every

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBuckets is the map size at which full buckets are swept out.
const maxBuckets = 10000

func newFailureLimiter(burst int, every time.Duration) *failureLimiter {
	return &failureLimiter{burst: float64(burst), every: every, buckets: map[string]*bucket{}}
}

// refill brings b up to date at now. Call with l.mu held.
func (l *failureLimiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.every))
		b.at = now
	}
}

// Allow reports whether every named bucket holds a token, and if not, how
// long until they all do.
func (l *failureLimiter) Allow(now time.Time, names ...string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, n := range names {
		b := l.buckets[n]
		if b == nil {
			continue
		}
		if l.refill(b, now); b.tokens < 1 {
			wait = max(wait, time.Duration((1-b.tokens)*float64(l.every)))
		}
	}
	return wait == 0, wait
}

// Fail spends a token of every named bucket (a failed verification).
func (l *failureLimiter) Fail(now time.Time, names ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) >= maxBuckets {
		l.sweep(now)
	}
	for _, n := range names {
		b := l.buckets[n]
		if b == nil {
			b = &bucket{tokens: l.burst, at: now}
			l.buckets[n] = b
		}
		l.refill(b, now)
		b.tokens--
	}
}

// sweep forgets buckets that have refilled: they hold nothing a fresh
// bucket would not. Call with l.mu held.
func (l *failureLimiter) sweep(now time.Time) {
	for n, b := range l.buckets {
		if l.refill(b, now); b.tokens >= l.burst {
			delete(l.buckets, n)
		}
	}
}

// share is one named part of the callback capacity and the most slots it
// may hold at once.
type share struct {
	name string
	max  int
}

// slotPool hands out registration callback slots by shares: a slot is
// taken only if every share it is counted in is below its maximum. The
// whole capacity is one share; each caller (an enrolment key, a tutorial
// caller's network) is another, so that one caller holding slow callbacks
// can take its share and no more; the tutorial protocol as a whole is a
// third, so that keyless callers can never crowd out keyed ones.
type slotPool struct {
	mu   sync.Mutex
	used map[string]int
}

func newSlotPool() *slotPool { return &slotPool{used: map[string]int{}} }

// take counts a slot in every share and returns its release, or reports
// false (and takes nothing) if any share is full.
func (p *slotPool) take(shares ...share) (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range shares {
		if p.used[s.name] >= s.max {
			return nil, false
		}
	}
	for _, s := range shares {
		p.used[s.name]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, s := range shares {
				if p.used[s.name]--; p.used[s.name] == 0 {
					delete(p.used, s.name)
				}
			}
		})
	}, true
}
