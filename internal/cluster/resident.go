package cluster

import (
	"log/slog"
	"sync"
	"time"
)

// raft.db's resident pages. bbolt reads its file through a read-only
// shared mapping, and every page it reads stays in this process's
// resident set until the mapping goes: appending entries reads the
// log's last pages, and the log's compaction after a snapshot
// (DeleteRange) reads every page of the entries it deletes. After a bulk
// load of 100,000 registrations, 33 MB of the server's RSS at rest was
// raft.db's mapping, pages of entries long deleted. So after each
// compaction the store drops the mapping's resident pages (shedPages):
// the page cache keeps them, and bbolt's next read of a page faults it
// back in. The drop runs under the lock that every write to raft.db
// takes (writeGuard): bbolt maps the file again only inside a write
// transaction (when the file grows), so while the lock is held the
// mapping is where /proc/self/maps says it is, and no other memory can
// take its place. Closing raft.db takes the lock too (Node.closeStore),
// so that no drop runs while the mapping goes.
//
// A server at rest after a burst compacts no more, and the pages of the
// entries since its last compaction stay resident (about 10 MB after a
// bulk load of 100,000); Node.ShedResident drops them too, which the
// server calls at the first quiet window after a burst, when it returns
// the burst's heap (internal/server/memtrim.go).

// writeGuard serialises this node's writes to raft.db (the log's, and
// the stable store's) with the dropping of its resident pages.
type writeGuard struct {
	mu     sync.Mutex
	file   fileID // raft.db's device and inode: how its mapping is found
	closed bool   // raft.db is closed: nothing to drop, and no mapping to trust
	log    *slog.Logger
	shed   shedStats
}

// shedStats counts the drops, for tests and the debug log.
type shedStats struct {
	times  int
	ranges int // the mappings the last drop found
	last   time.Duration
	err    error // the last drop's
}

// newWriteGuard returns the guard of the raft.db at path. When the file
// cannot be identified (or off Linux) it still serialises the writes and
// drops nothing.
func newWriteGuard(path string, log *slog.Logger) *writeGuard {
	id, ok := fileIDOf(path)
	if !ok {
		return &writeGuard{log: log}
	}
	return &writeGuard{file: id, log: log}
}

// shedLocked drops raft.db's resident pages. The caller holds mu.
func (g *writeGuard) shedLocked() {
	if g.file.ino == 0 || g.closed {
		return
	}
	start := time.Now()
	n, err := shedPages(g.file)
	g.shed.times++
	g.shed.ranges, g.shed.err, g.shed.last = n, err, time.Since(start)
	if err != nil {
		g.log.Debug("raft.db: could not drop the mapping's resident pages", "err", err)
		return
	}
	g.log.Debug("raft.db: dropped the mapping's resident pages", "ranges", n, "took", g.shed.last)
}
