package audit

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// The records of this node's own (refusals, admin reads, no-op drains:
// whatever a request makes the local journal hold) one client network
// may have written one by one: a sustained rate and a burst, and the
// same for all networks together. Past them its records are counted,
// and one ActionSuppressed record a window says how many there were. A
// client who floods the port, with bad credentials or good ones, then
// writes at most totalRate records a second and maxSummaries+1 summaries
// a window to the local journal (about 50 KB a second), however fast it
// sends and from however many networks, instead of rotating away
// everyone's records (and filling a disk) at its own pace.
const (
	networkRate   = 20  // a second, per network
	networkBurst  = 200 // records
	totalRate     = 200 // a second, all networks together
	totalBurst    = 2000
	suppressEvery = 10 * time.Second
	// maxNetworks bounds the networks tracked; past it, records from new
	// networks share one bucket.
	maxNetworks = 4096
	// maxSummaries bounds the summaries a window: the networks with the
	// most suppressed get one each, the rest one together.
	maxSummaries = 64
)

// recordLimiter is a token bucket per client network (an IPv4 /24, an
// IPv6 /48: one host's many addresses share it) and one for them all,
// and the records each suppressed since its last summary. It is safe for concurrent use.
type recordLimiter struct {
	now func() time.Time

	mu    sync.Mutex
	nets  map[netip.Prefix]*bucket
	total bucket // every network's records together
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed uint64
	action     Action // the first suppressed refusal's, for the summary
}

func newRecordLimiter(now func() time.Time) *recordLimiter {
	return &recordLimiter{now: now, nets: map[netip.Prefix]*bucket{}, total: bucket{tokens: totalBurst, last: now()}}
}

// take refills b at rate up to burst and takes one token if it has one.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// networkOf is the network of a caller's address (host:port), and false
// for a caller that is not an IP address.
func networkOf(caller string) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(caller)
	if err != nil {
		return netip.Prefix{}, false
	}
	a := ap.Addr().Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// overflow is the bucket of the networks past maxNetworks.
var overflow = netip.Prefix{}

// allow reports whether a record of caller's request may be written now;
// if not, it is counted for the network's summary.
func (l *recordLimiter) allow(caller string, action Action) bool {
	p, ok := networkOf(caller)
	if !ok {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.nets[p]
	if b == nil {
		if len(l.nets) >= maxNetworks {
			p = overflow
			b = l.nets[p]
		}
		if b == nil {
			b = &bucket{tokens: networkBurst, last: now}
			l.nets[p] = b
		}
	}
	if b.take(now, networkRate, networkBurst) && l.total.take(now, totalRate, totalBurst) {
		return true
	}
	if b.suppressed == 0 {
		b.action = action
	}
	b.suppressed++
	return false
}

// summaries returns one record for each network with refusals suppressed
// since the last call, for the maxSummaries networks that had the most,
// and one for all the others together; and it forgets the networks whose
// buckets are full again (they have sent nothing for a while).
func (l *recordLimiter) summaries(node string) []Record {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	type net struct {
		p netip.Prefix
		b bucket
	}
	var hit []net
	for p, b := range l.nets {
		if b.suppressed > 0 {
			hit = append(hit, net{p, *b})
			b.suppressed = 0
			continue
		}
		if min(networkBurst, b.tokens+now.Sub(b.last).Seconds()*networkRate) >= networkBurst {
			delete(l.nets, p)
		}
	}
	slices.SortFunc(hit, func(a, b net) int { return cmp.Compare(b.b.suppressed, a.b.suppressed) })
	var out []Record
	var rest, restNets uint64
	for i, n := range hit {
		if i >= maxSummaries {
			rest += n.b.suppressed
			restNets++
			continue
		}
		who := fmt.Sprintf("networks past the first %d", maxNetworks)
		if n.p != overflow {
			who = n.p.String()
		}
		out = append(out, Record{Time: now, Action: ActionSuppressed, Outcome: OutcomeRefused, Node: node, Caller: who,
			Reason: fmt.Sprintf("%d records of requests (the first a %s) from %s not written one by one: over %d a second from one network, or %d from all",
				n.b.suppressed, n.b.action, who, networkRate, totalRate)})
	}
	if restNets > 0 {
		out = append(out, Record{Time: now, Action: ActionSuppressed, Outcome: OutcomeRefused, Node: node, Caller: "other networks",
			Reason: fmt.Sprintf("%d records of requests from %d other networks not written one by one (only the %d networks with the most get a summary of their own)",
				rest, restNets, maxSummaries)})
	}
	return out
}
