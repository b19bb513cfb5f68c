package cluster

import (
	"cmp"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// When the node takes snapshots, and how a single voter starts. A restart
// reads the latest snapshot and replays the log after it before the node
// is ready, so both are kept short: the snapshot is the catalog's binary
// format (catalog.Snapshot.WriteBinary, several times faster to read than
// the JSON it replaced), and the log after it is at most about a
// sixteenth of the catalog's size in entries.
const (
	// DefaultSnapshotThreshold is the least number of log entries since
	// the last snapshot that trigger the next one.
	DefaultSnapshotThreshold = 1024
	// snapshotDivisor scales the threshold with the catalog: a snapshot
	// is taken once the log since the last one holds a sixteenth of the
	// catalog's instances in entries (and at least the configured
	// threshold). A snapshot's cost grows with the catalog, so this
	// keeps its share of each write's cost the same at every size (each
	// entry pays for writing 16 instances, about 25 µs), while a restart
	// replays at most a sixteenth as many entries as it restores
	// instances, on top of what one interval below lets through.
	snapshotDivisor = 16
	// snapshotInterval is how often Raft checks the threshold (it waits
	// between this and twice this) and the node tunes it. Raft's default,
	// 120 s, let a bulk load of 100,000 registrations stay in the log,
	// every entry of it replayed at the next start.
	snapshotInterval = time.Second
	// singleVoterTimeout bounds the Raft timeouts of a node without a
	// Raft listener (see singleVoterConfig).
	singleVoterTimeout = 50 * time.Millisecond
	// singleVoterTrailingLogs is how many entries a node without a Raft
	// listener keeps before its latest snapshot (Raft's default, 10,240,
	// is there for followers that fall behind, which such a node never
	// has); they stay readable for debugging, and the data dir's check
	// at each start reads them.
	singleVoterTrailingLogs = 1024
)

// snapshotThreshold is the number of log entries since the last snapshot
// that trigger the next one, for a catalog of instances instances: at
// least least (0: DefaultSnapshotThreshold), and a sixteenth of the
// catalog.
func snapshotThreshold(least uint64, instances int) uint64 {
	return max(cmp.Or(least, DefaultSnapshotThreshold), uint64(instances)/snapshotDivisor)
}

// singleVoterConfig sets the Raft configuration of a node without a Raft
// listener, which is its cluster's only voter (singleVoterRule), so that
// it is a ready leader soon after it starts. No other server can lead, so
// waiting out a heartbeat timeout for one (Raft's wait is between one and
// two, 0.5 to 1 s by default) only delays every start: the node elects
// itself after 50 to 100 ms. The price is its lease, which it renews from
// itself alone and which Raft requires to be no longer than the heartbeat
// timeout: a timer every 50 ms instead of every 250 ms, about 0.2 % of a
// core more at rest on the project's machine (20 ms, tried first, cost
// 0.6 %). A node with peers keeps the timeouts it was given: its
// elections are real.
func singleVoterConfig(rc *raft.Config) {
	rc.HeartbeatTimeout = min(rc.HeartbeatTimeout, singleVoterTimeout)
	rc.ElectionTimeout = min(rc.ElectionTimeout, singleVoterTimeout)
	rc.LeaderLeaseTimeout = min(rc.LeaderLeaseTimeout, rc.HeartbeatTimeout)
	rc.TrailingLogs = singleVoterTrailingLogs
}

// tuneSnapshots keeps Raft's snapshot threshold at snapshotThreshold of
// the catalog's size, looking every snapshotInterval, until the node
// closes.
func (n *Node) tuneSnapshots() {
	defer n.wg.Done()
	t := time.NewTicker(snapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			n.setSnapshotThreshold()
		}
	}
}

// setSnapshotThreshold sets Raft's snapshot threshold for the catalog's
// size now. Only this node's goroutines call it, one at a time (Open,
// then tuneSnapshots), which Raft's ReloadConfig asks of its callers.
func (n *Node) setSnapshotThreshold() {
	rc := n.raft.ReloadableConfig()
	want := snapshotThreshold(n.cfg.SnapshotThreshold, n.cat.Len())
	if rc.SnapshotThreshold == want {
		return
	}
	rc.SnapshotThreshold = want
	if err := n.raft.ReloadConfig(rc); err != nil {
		n.log.Warn("could not change the snapshot threshold", "err", err, "threshold", want)
	}
}

// reapTempSnapshots removes the snapshots a crash left unfinished in dir
// (hashicorp/raft writes each into NAME.tmp and renames it when done, and
// never looks at a .tmp again: they would pile up, one per crash during a
// snapshot, each as large as the catalog). The caller holds raft.db's
// lock, so no snapshot of this data dir is being written.
func reapTempSnapshots(dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			log.Warn("could not remove an unfinished snapshot", "path", p, "err", err)
			continue
		}
		log.Info("removed an unfinished snapshot, left by a crash while it was written", "path", p)
	}
}
