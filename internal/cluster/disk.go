package cluster

import (
	"fmt"
	"sync"
	"time"
)

// DefaultDiskReserve is the free space, in bytes, below which a node
// refuses writes unless Config.DiskReserve says otherwise: 64 MiB, room
// for thousands of log entries, a snapshot of a large catalog, and the
// Raft term and vote that an election writes.
const DefaultDiskReserve = 64 << 20

// Statfs reports the bytes available to an unprivileged writer on the
// filesystem that holds dir. It is Config.DiskFree's type; the default
// calls statfs(2).
type Statfs func(dir string) (free uint64, err error)

// diskGuard refuses writes while the filesystem of the data dir has less
// free space than the reserve. It exists because hashicorp/raft steps the
// leader down when the log store fails to append: a write that reached
// Raft on a full disk would take reads down with it until the next
// election, and the election itself must write the term. So the check
// comes before Raft.
//
// Freshness: far from the reserve (at least four reserves free) a reading
// is kept for a quarter second, so the hot path costs a mutex; nearer,
// every call reads statfs again (about a microsecond, against the fsync
// each write costs), so a disk that is filling is seen at once. A
// filesystem that goes from four reserves free to full within that
// quarter second (another program writing 1 GiB/s with the default
// reserve) can still get a write to Raft; that write fails with
// ErrDiskFull or ErrStorage, and Raft's leader steps down once. After a
// storage failure the next call reads statfs again.
//
// It is safe for concurrent use.
type diskGuard struct {
	dir     string
	reserve uint64 // 0: the guard is off
	statfs  Statfs

	mu      sync.Mutex
	checked time.Time // when free was read (monotonic); zero: never, or invalidated
	free    uint64
	known   bool // the last statfs succeeded
	// storageFailed is when a write of the log last failed for a reason of
	// the disk; Degraded reports it for storageGrace.
	storageFailed time.Time
}

const (
	diskFreshFar = 250 * time.Millisecond
	storageGrace = 10 * time.Second
)

func newDiskGuard(cfg Config) *diskGuard {
	g := &diskGuard{dir: cfg.DataDir, statfs: cfg.DiskFree}
	switch {
	case cfg.DiskReserve == 0:
		g.reserve = DefaultDiskReserve
	case cfg.DiskReserve > 0:
		g.reserve = uint64(cfg.DiskReserve)
	}
	if g.statfs == nil {
		g.statfs = statfs
	}
	return g
}

// check returns nil, or ErrDiskFull wrapped with the dir and the free
// space if the filesystem is below the reserve. If free space cannot be
// read it does not refuse: the write will tell.
func (g *diskGuard) check() error {
	if g.reserve == 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if g.checked.IsZero() || !g.known || g.free/4 < g.reserve || now.Sub(g.checked) >= diskFreshFar {
		free, err := g.statfs(g.dir)
		g.free, g.known, g.checked = free, err == nil, now
	}
	if g.known && g.free < g.reserve {
		return fmt.Errorf("%w: the filesystem of %s has %s free, less than the reserve of %s; free space there and writes resume",
			ErrDiskFull, g.dir, bytesString(g.free), bytesString(g.reserve))
	}
	return nil
}

// failed records a failure to write the log for a reason of the disk: the
// next check reads statfs again, and Degraded reports "disk" for a while.
func (g *diskGuard) failed() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.checked = time.Time{}
	g.storageFailed = time.Now()
}

// degraded reports whether the guard refuses writes now, or a write of
// the log failed for a reason of the disk in the last storageGrace.
func (g *diskGuard) degraded() bool {
	if g.check() != nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.storageFailed.IsZero() && time.Since(g.storageFailed) < storageGrace
}

// bytesString is n in the largest binary unit that keeps it at least 1.
func bytesString(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// DiskRoom reports the free space of the data dir's filesystem as the
// node last read it (read again as Writable would), its reserve (0: the
// check is off), and whether the free space could be read. Other writers
// of the data dir (the audit trail) use it to stop well before the
// reserve that the catalog's writes keep.
func (n *Node) DiskRoom() (free, reserve uint64, known bool) {
	g := n.disk()
	if g.reserve == 0 {
		return 0, 0, false
	}
	g.check()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.free, g.reserve, g.known
}

// disk returns the node's disk guard, made on first use from the config.
func (n *Node) disk() *diskGuard {
	n.diskOnce.Do(func() { n.diskGuard = newDiskGuard(n.cfg) })
	return n.diskGuard
}

// Writable returns nil unless this node already knows that a write would
// be refused whoever proposed it: it has halted (ErrHalted), or its data
// dir's filesystem is below the reserve (ErrDiskFull, wrapped with the
// dir and the free space). It is cheap (see Apply's disk check), so that
// a proposer can call it before work that a refused write would waste,
// such as a registration's callback. It does not check leadership.
func (n *Node) Writable() error {
	select {
	case <-n.halted:
		return ErrHalted
	default:
	}
	if n.removed.Load() {
		return ErrRemoved
	}
	return n.disk().check()
}

// Degraded names what is impaired while the node still serves reads
// ("removed": this server found that its cluster no longer counts it, see
// watchRemoval):
// "disk" while its data dir's filesystem is below the reserve (writes are
// refused with ErrDiskFull), or for ten seconds after a write of the log
// failed for a reason of the disk; "" otherwise.
func (n *Node) Degraded() string {
	if n.removed.Load() {
		return "removed"
	}
	if n.disk().degraded() {
		return "disk"
	}
	return ""
}
