package audit

import "time"

// Synced reports whether the applied journal has fsynced n records.
func (l *Log) Synced(n uint64) bool { return l.applied.synced.Load() >= n }

// WaitLocalSynced waits up to 5 s until the local journal has fsynced n
// records, and reports whether it did.
func (l *Log) WaitLocalSynced(n uint64) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if l.local.synced.Load() >= n {
			return true
		}
	}
	return false
}

// HoldReader takes a read's slot until the returned func is called.
func (l *Log) HoldReader() func() {
	l.readers <- struct{}{}
	return func() { <-l.readers }
}

// Summarize writes the summaries of suppressed refusals now, as the
// ticker would every suppressEvery.
func (l *Log) Summarize() {
	for _, r := range l.limit.summaries(l.Node()) {
		l.local.put(bound(r), 0)
	}
}
