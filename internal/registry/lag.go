package registry

import (
	"sync"
	"time"
)

// A registration callback that times out is the instance's failure, and
// spends from the allowance of failed verifications, unless the registry
// itself could not keep time while it waited: a process starved of CPU
// (an overloaded host, a long pause) reads its answer late, and the
// timeout is then the registry's fault. lagMonitor tells the two apart.
// It ticks every lagEvery and records how late each tick came; a callback
// that timed out while some tick came more than a tenth of its wait late
// (worst, read by runProof) is refused as ErrOverloaded (503, retry), and
// spends nothing.

const (
	lagEvery = 50 * time.Millisecond
	lagKept  = 1200 // ticks kept: a minute at lagEvery
)

// lagSample is one tick: when it came, and how late.
type lagSample struct {
	at   time.Time
	late time.Duration
}

type lagMonitor struct {
	once sync.Once
	stop chan struct{}
	done chan struct{}

	mu   sync.Mutex
	ring [lagKept]lagSample
	next int
}

func newLagMonitor() *lagMonitor {
	return &lagMonitor{stop: make(chan struct{}), done: make(chan struct{})}
}

// start runs the monitor, once; close stops it.
func (m *lagMonitor) start() {
	m.once.Do(func() { go m.run() })
}

func (m *lagMonitor) close() {
	started := true
	m.once.Do(func() { started = false })
	if !started {
		return
	}
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

func (m *lagMonitor) run() {
	defer close(m.done)
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		m.record(now, now.Sub(last)-lagEvery)
		last = now
	}
}

// record notes a tick at at, late by late.
func (m *lagMonitor) record(at time.Time, late time.Duration) {
	m.mu.Lock()
	m.ring[m.next] = lagSample{at: at, late: max(late, 0)}
	m.next = (m.next + 1) % lagKept
	m.mu.Unlock()
}

// worst returns the latest any tick came between from and to (a tick
// that came after to, within one interval, counts: it measures a stall
// that began before to).
func (m *lagMonitor) worst(from, to time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var w time.Duration
	for _, s := range m.ring {
		if !s.at.Before(from) && !s.at.After(to.Add(lagEvery)) {
			w = max(w, s.late)
		}
	}
	return w
}
