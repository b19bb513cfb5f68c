package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/random"
)

// The files of a data dir that this package owns.
const (
	// raftDBFile holds the Raft log and the term and vote (raft-boltdb).
	raftDBFile = "raft.db"
	// clusterIDFile records that the data dir holds a cluster's state: it
	// is written as soon as the node first holds Raft state (it
	// bootstraps, or stores the first entry or snapshot a leader sent it:
	// Node.markState), or when it opens a data dir with Raft state and
	// no record (one from before the file existed). While it exists, a
	// raft.db without Raft state means the log was lost.
	clusterIDFile = "cluster-id"
)

// ErrStateLost means raft.db holds no Raft state although the data dir
// shows it held a cluster (DataDir/cluster-id exists, or snapshots/ holds
// a snapshot): raft.db was emptied, deleted or replaced. Open refuses to
// start rather than come up as a new, empty cluster, unless
// Config.ForceNewCluster is set. The error names the files and what to do.
var ErrStateLost = errors.New("cluster: the Raft log in raft.db is lost")

// readClusterID returns the cluster ID recorded in dir, and whether the
// file exists (an empty or unreadable one still counts as existing).
func readClusterID(dir string) (id string, exists bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, clusterIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", true, fmt.Errorf("cluster: %w", err)
	}
	return strings.TrimSpace(string(b)), true, nil
}

// writeClusterID records a new cluster ID in dir and returns it.
func writeClusterID(dir string) (string, error) {
	id := random.ID(16)
	if err := durable.WriteFile(filepath.Join(dir, clusterIDFile), []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("cluster: record cluster id: %w", err)
	}
	return id, nil
}

// removeDurably deletes path, if it exists, and syncs its directory, so
// that the deletion survives a crash.
func removeDurably(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// lostStateError explains ErrStateLost: which file is empty, what shows
// it should not be, and the two ways out.
func lostStateError(dir, clusterID string, hasMarker bool, snapshots int) error {
	var evidence string
	switch {
	case hasMarker && clusterID != "":
		evidence = fmt.Sprintf("%s records cluster %s", filepath.Join(dir, clusterIDFile), clusterID)
	case hasMarker:
		evidence = fmt.Sprintf("%s exists", filepath.Join(dir, clusterIDFile))
	default:
		evidence = fmt.Sprintf("%s holds a snapshot", filepath.Join(dir, "snapshots"))
	}
	accept := "an empty catalog"
	if snapshots > 0 {
		accept = "the catalog of the latest snapshot in snapshots/ (the writes after it are lost)"
	}
	return fmt.Errorf("%w: %s holds no Raft state, but %s: raft.db was emptied, deleted or replaced. "+
		"Restore raft.db from a backup, or start once with force-new-cluster (muster server --force-new-cluster) to accept %s",
		ErrStateLost, filepath.Join(dir, raftDBFile), evidence, accept)
}

// openedStore is raft.db, opened and checked, with what Open needs to know
// of it.
type openedStore struct {
	store *raftboltdb.BoltStore
	// conf is the latest Raft configuration, from the log or the latest
	// snapshot; empty before bootstrap.
	conf raft.Configuration
	// marked is whether DataDir/cluster-id exists.
	marked bool
}

// openStore opens DataDir/raft.db for Raft, refusing a damaged file
// (ErrDamaged, see checkStore and checkLog) and a raft.db without Raft
// state in a data dir that held a cluster (ErrStateLost), unless
// cfg.ForceNewCluster. A file another process holds is reported as such.
func openStore(cfg Config, snaps *raft.FileSnapshotStore) (openedStore, error) {
	log := cfg.Logger
	dir := cfg.DataDir
	path := filepath.Join(dir, raftDBFile)
	list, err := snaps.List()
	if err != nil {
		return openedStore{}, fmt.Errorf("cluster: snapshots: %w", err)
	}
	clusterID, marked, err := readClusterID(dir)
	if err != nil {
		return openedStore{}, err
	}
	held := marked || len(list) > 0 // the data dir shows it held a cluster
	var size int64
	switch fi, err := os.Stat(path); {
	case err == nil:
		size = fi.Size()
	case !errors.Is(err, os.ErrNotExist):
		return openedStore{}, fmt.Errorf("cluster: %w", err)
	}
	if size == 0 && held && !cfg.ForceNewCluster {
		// Refused before raft-boltdb creates a new file over the loss.
		return openedStore{}, lostStateError(dir, clusterID, marked, len(list))
	}
	if size > 0 {
		if err := checkStore(path, time.Second); err != nil {
			if errors.Is(err, berrors.ErrTimeout) {
				return openedStore{}, fmt.Errorf("cluster: open raft.db (is another muster using %s?): %w", dir, err)
			}
			return openedStore{}, damaged(path, err, len(list))
		}
	}
	// The free pages are kept in a map, not a sorted array: the log's
	// compaction after each snapshot frees thousands of pages, and the
	// array was merged again (allocated and copied) on every commit. The
	// file's format is the same either way.
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: time.Second, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return openedStore{}, fmt.Errorf("cluster: open raft.db (is another muster using %s?): %w", dir, err)
	}
	state, err := raftState(store)
	if err != nil {
		store.Close()
		return openedStore{}, damaged(path, err, len(list))
	}
	switch {
	case !state && held && !cfg.ForceNewCluster:
		store.Close()
		return openedStore{}, lostStateError(dir, clusterID, marked, len(list))
	case !state && held:
		log.Warn("force-new-cluster: starting although raft.db holds no Raft state; the writes it held are lost",
			"raft_db", path, "snapshots", len(list))
		if o, ok := cfg.Observer.(interface{ StartedOver() }); ok {
			// The log's indexes begin again: an observer that keeps
			// track of them (the audit trail) must not skip the new ones.
			o.StartedOver()
		}
		if len(list) > 0 {
			// Raft would start over at term 0, below the snapshot's
			// term; and the snapshot store orders snapshots by term, so
			// every later snapshot would sort below this one.
			if err := store.SetUint64(keyCurrentTerm, list[0].Term); err != nil {
				store.Close()
				return openedStore{}, fmt.Errorf("cluster: force-new-cluster: %w", err)
			}
		}
	case state && cfg.ForceNewCluster:
		log.Warn("force-new-cluster has no effect: raft.db holds Raft state", "raft_db", path)
	}
	conf, err := checkLog(store, list)
	if err != nil {
		store.Close()
		return openedStore{}, damaged(path, err, len(list))
	}
	return openedStore{store: store, conf: conf, marked: marked}, nil
}
