package httpapi

import (
	"sync"
	"time"
)

// failureLimiter bounds how many failed verifications a caller may cause:
// token buckets by name, spent when a verification starts and given back
// when it succeeds, so that only failures count and concurrent attempts
// cannot overdraw. A caller probing addresses in the allowlisted networks
// through the callback is slowed to the refill rate; a service that
// registers correctly never spends anything.
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

// get returns name's bucket refilled up to now. Call with l.mu held.
func (l *failureLimiter) get(name string, now time.Time) *bucket {
	b := l.buckets[name]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[name] = b
		return b
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.every))
		b.at = now
	}
	return b
}

// Take spends a token of every named bucket, or of none: it reports false,
// and how long until all have one, when any is empty.
func (l *failureLimiter) Take(now time.Time, names ...string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, n := range names {
		if b := l.get(n, now); b.tokens < 1 {
			wait = max(wait, time.Duration((1-b.tokens)*float64(l.every)))
		}
	}
	if wait > 0 {
		return false, wait
	}
	for _, n := range names {
		l.buckets[n].tokens--
	}
	return true, 0
}

// Refund gives back the tokens Take spent, after a verification that
// succeeded. Buckets that are full again are forgotten, so the map holds
// only callers that failed lately.
func (l *failureLimiter) Refund(now time.Time, names ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range names {
		b := l.get(n, now)
		if b.tokens = min(l.burst, b.tokens+1); b.tokens >= l.burst {
			delete(l.buckets, n)
		}
	}
}
