package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// After a burst of work (a bulk registration, a restore, a mass expiry)
// the Go heap holds the burst's garbage until the runtime's next
// collection, which a server at rest does not reach for two minutes, and
// the freed pages stay resident until the runtime's scavenger returns
// them, slowly: a registry at rest with 100,000 instances held about
// 200 MiB of RSS for 70 MiB of live heap. So the server watches how fast
// it allocates, and once a busy spell is followed by a quiet window it
// collects and returns the freed memory to the system, once
// (debug.FreeOSMemory): a collection of the live heap, tens of
// milliseconds at that size, paid once per burst. It drops raft.db's
// resident pages then too (cluster.Node.ShedResident): the pages of the
// log entries the burst wrote since the last compaction, which a server
// at rest would otherwise keep until its next one. A steady load never
// trims: it is never quiet, and its heap is what the load needs.

const (
	trimEvery = 5 * time.Second
	// A window in which this much was allocated is busy, and one with at
	// most trimQuiet quiet (1.6 and 0.2 MiB a second over trimEvery).
	trimBusy  = 8 << 20
	trimQuiet = 1 << 20
)

// trimmer decides, window by window, when to return memory.
type trimmer struct {
	busy bool
	last uint64
}

// observe takes the bytes the heap has allocated since the process
// started, read at the end of a window, and reports whether to return
// memory now: the window was quiet and a busy one came since the last
// time it did.
func (t *trimmer) observe(total uint64) bool {
	d := total - t.last
	t.last = total
	switch {
	case d >= trimBusy:
		t.busy = true
	case d <= trimQuiet && t.busy:
		t.busy = false
		return true
	}
	return false
}

// heapAllocated returns the bytes the heap has allocated since the
// process started.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// trimAfterBursts returns memory after each burst until ctx ends, and
// calls also then.
func trimAfterBursts(ctx context.Context, log *slog.Logger, also func()) {
	t := trimmer{last: heapAllocated()}
	tick := time.NewTicker(trimEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if t.observe(heapAllocated()) {
			start := time.Now()
			debug.FreeOSMemory()
			also()
			log.Debug("returned the memory of a burst of work to the system", "took", time.Since(start).Round(time.Millisecond))
		}
	}
}
