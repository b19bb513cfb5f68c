package audit

import (
	"log/slog"
	"testing"
	"time"
)

// stalled is a journal whose writer never runs: its queue, once full,
// stays full.
func stalled(size int) *journal {
	return &journal{name: "test", q: newQueue(size), log: slog.New(slog.DiscardHandler)}
}

// TestJournal_FullQueueNeverBlocks: a record for a full queue is dropped
// and counted at once (a local record), or after at most the wait given
// (an applied record), and once one has waited in vain, no record waits
// until the queue has room again: a stalled disk costs the FSM one wait,
// not one per record.
func TestJournal_FullQueueNeverBlocks(t *testing.T) {
	j := stalled(2)
	for range 2 {
		if !j.put(Record{}, 0) {
			t.Fatal("the queue took no record")
		}
	}
	start := time.Now()
	for range 1000 {
		if j.put(Record{Action: ActionHeartbeat}, 0) {
			t.Fatal("a full queue took a record")
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("1000 records for a full queue took %s", d)
	}
	if j.dropped.Load() != 1000 || j.accepted.Load() != 2 {
		t.Errorf("dropped %d, accepted %d", j.dropped.Load(), j.accepted.Load())
	}

	const wait = 50 * time.Millisecond
	start = time.Now()
	if j.put(Record{}, wait) {
		t.Fatal("a full queue took a record")
	}
	if d := time.Since(start); d < wait || d > 20*wait {
		t.Errorf("the first applied record waited %s, want about %s", d, wait)
	}
	start = time.Now()
	for range 100 {
		j.put(Record{}, wait)
	}
	if d := time.Since(start); d > wait {
		t.Errorf("100 more records took %s: each waited", d)
	}
	if !j.overflowing.Load() || j.dropped.Load() != 1101 {
		t.Errorf("overflowing %v, dropped %d", j.overflowing.Load(), j.dropped.Load())
	}
}
