package client

import "time"

// QueuedBeats is how many heartbeats wait for a batch in c, for tests
// that must know the queue has formed before they let a batch go.
func QueuedBeats(c *Client) int {
	if c.beats == nil {
		return 0
	}
	c.beats.mu.Lock()
	defer c.beats.mu.Unlock()
	return len(c.beats.queue)
}

// SetChecksOnlyPoll sets how often a checks-only registration asks
// whether the registry still holds it, for the test's length.
func SetChecksOnlyPoll(tb interface{ Cleanup(func()) }, d time.Duration) {
	old := checksOnlyPoll.Swap(int64(d))
	tb.Cleanup(func() { checksOnlyPoll.Store(old) })
}
