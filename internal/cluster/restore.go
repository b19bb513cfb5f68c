package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/durable"
)

// ErrDataDirInUse means RestoreSnapshot was asked to write into a data
// dir that already holds Raft state.
var ErrDataDirInUse = errors.New("cluster: the data dir already holds a cluster")

// RestoreSnapshot makes dataDir a single-voter cluster whose state is
// snapshot, a catalog snapshot as Catalog.Snapshot writes it (what
// GET /v1/snapshot answers): a backup brought back. The snapshot is
// checked in full first. dataDir must hold no Raft state: restore into a
// new directory, then start the server on it. It returns the snapshot's
// index, which the restored catalog resumes from.
func RestoreSnapshot(dataDir string, snapshot []byte) (uint64, error) {
	cat := catalog.New()
	if err := cat.Restore(bytes.NewReader(snapshot)); err != nil {
		return 0, fmt.Errorf("not a muster catalog snapshot, or a damaged one: %w", err)
	}
	index := cat.Index()
	if index == 0 {
		return 0, errors.New("cluster: the snapshot holds no index; it was not written by a muster server")
	}
	for _, dir := range []string{dataDir, filepath.Join(dataDir, "snapshots")} {
		if _, err := durable.PrivateDir(dir); err != nil {
			return 0, fmt.Errorf("cluster: data dir: %w", err)
		}
	}
	if _, exists, err := readClusterID(dataDir); err != nil || exists {
		if err == nil {
			err = fmt.Errorf("%w (%s exists); restore into a new directory", ErrDataDirInUse, filepath.Join(dataDir, clusterIDFile))
		}
		return 0, err
	}
	if _, err := os.Stat(filepath.Join(dataDir, raftDBFile)); err == nil {
		return 0, fmt.Errorf("%w (%s exists); restore into a new directory", ErrDataDirInUse, filepath.Join(dataDir, raftDBFile))
	}
	nodeID, err := loadNodeID(dataDir)
	if err != nil {
		return 0, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, 2, hclog.NewNullLogger())
	if err != nil {
		return 0, fmt.Errorf("cluster: snapshots: %w", err)
	}
	if list, err := snaps.List(); err != nil || len(list) > 0 {
		return 0, fmt.Errorf("%w (snapshots/ is not empty); restore into a new directory", ErrDataDirInUse)
	}
	// One term, one voter: this node, by ID (its address is corrected
	// when it leads).
	const term = 1
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(nodeID), Address: raft.ServerAddress(InMemoryAddrPrefix + nodeID),
	}}}
	// The snapshot's legacy peer list is encoded by a transport; an
	// in-memory one, as the node itself uses without a secret.
	_, trans := raft.NewInmemTransport(conf.Servers[0].Address)
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, conf, index, trans)
	if err != nil {
		return 0, fmt.Errorf("cluster: snapshots: %w", err)
	}
	if _, err := sink.Write(snapshot); err != nil {
		sink.Cancel()
		return 0, fmt.Errorf("cluster: write the snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return 0, fmt.Errorf("cluster: write the snapshot: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dataDir, raftDBFile)})
	if err != nil {
		return 0, fmt.Errorf("cluster: raft.db: %w", err)
	}
	// The term Raft would have reached to write the snapshot: with it,
	// raft.db holds Raft state, and the node opens as an existing cluster.
	err = store.SetUint64([]byte("CurrentTerm"), term)
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("cluster: raft.db: %w", err)
	}
	if _, err := writeClusterID(dataDir); err != nil {
		return 0, err
	}
	return index, nil
}
