package registry

import (
	"sync"
	"time"
)

// buckets are token buckets by name: Allow reports whether every named
// bucket holds a token, Spend takes one from each. The registry uses them
// for failed verifications (only a failure spends, so a service that
// registers correctly never spends anything, however many replicas
// register at once, and a caller probing addresses through the callback
// is slowed to the refill rate) and for the write rate per key (every
// attempt spends). Concurrent attempts can overdraw a bucket, by at most
// the number in flight; the debt is paid back before the next attempt is
// let through.
type buckets struct {
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

func newBuckets(burst int, every time.Duration) *buckets {
	return &buckets{burst: float64(burst), every: every, buckets: map[string]*bucket{}}
}

// refill brings b up to date at now. Call with l.mu held.
func (l *buckets) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.every))
		b.at = now
	}
}

// Allow reports whether every named bucket holds a token, and if not, how
// long until they all do.
func (l *buckets) Allow(now time.Time, names ...string) (bool, time.Duration) {
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

// Spend takes a token from every named bucket.
func (l *buckets) Spend(now time.Time, names ...string) {
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
func (l *buckets) sweep(now time.Time) {
	for n, b := range l.buckets {
		if l.refill(b, now); b.tokens >= l.burst {
			delete(l.buckets, n)
		}
	}
}

// slotPool hands out registration callback slots, max at a time, fairly
// between callers (an enrolment key; for the tutorial protocol, a
// caller's network). A caller's share is the capacity open to it divided
// by one more than the number of callers holding slots (itself counted),
// and never less than minShare: so a lone caller (a fleet restarting with
// one key) may take half the capacity, k callers holding slow callbacks
// take at most k/(k+1) of it, and a newcomer always finds its share free
// once callbacks beyond the new shares end. The tutorial protocol is a
// group of its own, capped at half the capacity (its callers can rotate
// addresses at will); keyed callers share what it does not hold.
type slotPool struct {
	mu            sync.Mutex
	total         int
	seed          int            // slots held through the tutorial protocol
	byCaller      map[string]int // slots held by each caller
	keyed, seeded int            // callers holding slots, by group
}

func newSlotPool() *slotPool { return &slotPool{byCaller: map[string]int{}} }

// take counts a slot for caller and returns its release, or reports false
// and takes nothing.
func (p *slotPool) take(max, minShare int, caller string, seed bool) (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total >= max {
		return nil, false
	}
	held := p.byCaller[caller]
	open, callers := max-p.seed, p.keyed
	if seed {
		open, callers = max/2, p.seeded
		if p.seed >= open {
			return nil, false
		}
	}
	if held == 0 {
		callers++
	}
	if held >= maxInt(minShare, open/(callers+1)) {
		return nil, false
	}
	p.add(caller, seed, 1)
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.add(caller, seed, -1)
		})
	}, true
}

// add counts d slots (1 or -1) for caller. Call with p.mu held.
func (p *slotPool) add(caller string, seed bool, d int) {
	before := p.byCaller[caller]
	p.total += d
	if seed {
		p.seed += d
	}
	if p.byCaller[caller] = before + d; p.byCaller[caller] == 0 {
		delete(p.byCaller, caller)
	}
	var change int
	switch {
	case before == 0 && d > 0:
		change = 1
	case before == 1 && d < 0:
		change = -1
	}
	if seed {
		p.seeded += change
	} else {
		p.keyed += change
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}
