package httpapi

import (
	"sync"
	"time"
)

// failureLimiter bounds how many failed verifications each enrolment key
// may cause: a token bucket per key, spent only by failures. A key holder
// probing addresses in the allowlisted networks through the callback is
// slowed to the refill rate; a service that registers correctly never
// notices it.
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

// Allow reports whether key may attempt another verification, and if not,
// how long until it may.
func (l *failureLimiter) Allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		return true, 0
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.every))
}

// Fail spends one token of key's bucket.
func (l *failureLimiter) Fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	b.tokens = max(0, b.tokens-1)
	if b.tokens >= l.burst { // full again: forget it
		delete(l.buckets, key)
	}
}
