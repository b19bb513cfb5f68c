package httpapi

import "sync"

// Batches of heartbeats are the one body a caller without any credential
// may send at up to maxBeatsBody bytes, and a decoder holds what has
// arrived until the body ends: a thousand callers sending the start of
// a batch and then nothing would each pin that much until the read
// deadline. bodyBudget bounds the bytes of batch bodies being read at
// once, in all and for one client address, so that such callers get a
// 503 at once instead of the server's memory.
const (
	// beatsBudget is the bytes of batch bodies read at once, in all:
	// 64 batches of the largest size.
	beatsBudget = 64 * maxBeatsBody
	// beatsBudgetPerClient is one client address's share of it: a
	// quarter, so that no single address holds it all.
	beatsBudgetPerClient = beatsBudget / 4
)

// bodyBudget is a count of bytes reserved, in all and per client.
type bodyBudget struct {
	mu       sync.Mutex
	total    int64
	perAll   int64
	perOne   int64
	byClient map[string]int64
}

func newBodyBudget(all, one int64) *bodyBudget {
	return &bodyBudget{perAll: all, perOne: one, byClient: map[string]int64{}}
}

// reserve takes n bytes for client, or reports false when either bound
// would be passed. Every true is followed by one release of the same n.
func (b *bodyBudget) reserve(client string, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.total+n > b.perAll || b.byClient[client]+n > b.perOne {
		return false
	}
	b.total += n
	b.byClient[client] += n
	return true
}

func (b *bodyBudget) release(client string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total -= n
	if left := b.byClient[client] - n; left > 0 {
		b.byClient[client] = left
	} else {
		delete(b.byClient, client)
	}
}
