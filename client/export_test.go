package client

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
