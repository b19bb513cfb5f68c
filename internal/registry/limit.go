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

// slotPool hands out registration callback slots fairly. The pool holds
// max slots. The first half is open to anyone; the second half only to
// callers (an enrolment key, a tutorial caller's network) holding fewer
// than their share, perCaller. So one caller holding slow callbacks can
// take at most half the pool, and every other caller still finds a slot
// for its first perCaller callbacks, while a lone caller's burst (a
// fleet restarting) is not refused while the pool is mostly idle. Hard
// shares are caps that hold whatever the pool's state: the tutorial
// protocol as a whole is one, so that keyless callers can never crowd
// out keyed ones.
type slotPool struct {
	mu   sync.Mutex
	used map[string]int // by share name; "" is the whole pool
}

func newSlotPool() *slotPool { return &slotPool{used: map[string]int{}} }

// take counts a slot for caller (and in every hard share) and returns its
// release, or reports false and takes nothing.
func (p *slotPool) take(max, perCaller int, caller string, hard ...share) (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	total := p.used[""]
	if total >= max || (p.used[caller] >= perCaller && total >= max/2) {
		return nil, false
	}
	for _, s := range hard {
		if p.used[s.name] >= s.max {
			return nil, false
		}
	}
	names := append([]string{"", caller}, make([]string, 0, len(hard))...)
	for _, s := range hard {
		names = append(names, s.name)
	}
	for _, n := range names {
		p.used[n]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, n := range names {
				if p.used[n]--; p.used[n] == 0 {
					delete(p.used, n)
				}
			}
		})
	}, true
}
