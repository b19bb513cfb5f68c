package server

import (
	"bytes"
	"fmt"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/cluster"
)

// SnapshotSummary describes a catalog snapshot (a backup).
type SnapshotSummary struct {
	Index     uint64 `json:"index"`
	Instances int    `json:"instances"`
	Services  int    `json:"services"`
	Keys      int    `json:"keys"`
	Evictions int    `json:"evictions"`
}

// InspectSnapshot checks a catalog snapshot in full, as a server
// restoring it does, and summarises it. It is lenient where a restore
// into a running registry is strict (catalog.ReadBackup refuses fields it
// does not know): a snapshot of a newer server saves and inspects with
// an older muster, and the server it is restored into judges it.
func InspectSnapshot(snapshot []byte) (SnapshotSummary, error) {
	c := catalog.New()
	if err := c.Restore(bytes.NewReader(snapshot)); err != nil {
		return SnapshotSummary{}, fmt.Errorf("not a muster catalog snapshot, or a damaged one: %w", err)
	}
	services := 0
	for _, v := range c.Services() {
		if len(v.Instances) > 0 { // as muster services counts them
			services++
		}
	}
	return SnapshotSummary{Index: c.Index(), Instances: len(c.Instances()), Services: services,
		Keys: len(c.Keys()), Evictions: len(c.Bars())}, nil
}

// RestoreSnapshot makes dataDir, which must hold no cluster yet, a
// single-voter cluster holding the catalog snapshot: start a server on
// it to bring the backup back. It returns the snapshot's index. To
// restore a backup into a running registry instead, send it to
// PUT /v1/snapshot (Registry.Restore).
func RestoreSnapshot(dataDir string, snapshot []byte) (uint64, error) {
	return cluster.RestoreSnapshot(dataDir, snapshot)
}
