package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/cluster"
	"github.com/musterhq/muster/internal/durable"
)

// SnapshotSummary describes a catalog snapshot (a backup).
type SnapshotSummary struct {
	Index     uint64 `json:"index"`
	Instances int    `json:"instances"`
	Services  int    `json:"services"`
	Keys      int    `json:"keys"`
	Evictions int    `json:"evictions"`
}

// MaxSnapshotSize is the largest snapshot a registry takes, in bytes.
const MaxSnapshotSize = catalog.MaxSnapshotSize

// InspectSnapshot checks a catalog snapshot exactly as a registry
// restoring it does (catalog.ReadBackup: in full, refusing a field this
// version does not know and data after the snapshot), and summarises
// it. Its error is the one the registry would answer, without the
// package's prefix.
func InspectSnapshot(snapshot []byte) (SnapshotSummary, error) {
	b, err := catalog.ReadBackup(bytes.NewReader(snapshot))
	if err != nil {
		return SnapshotSummary{}, errors.New(strings.TrimPrefix(err.Error(), "catalog: "))
	}
	s := b.Summary()
	return SnapshotSummary{Index: s.Index, Instances: s.Instances, Services: s.Services, Keys: s.Keys, Evictions: s.Evictions}, nil
}

// CheckSavedSnapshot checks that what a registry answered to a request
// for a snapshot is one, leniently: a field this muster does not know
// (a newer registry's) is accepted, so that an older CLI still saves a
// newer registry's backup; InspectSnapshot and a restore judge it.
func CheckSavedSnapshot(snapshot []byte) error {
	if err := catalog.New().Restore(bytes.NewReader(snapshot)); err != nil {
		return fmt.Errorf("not a muster catalog snapshot, or a damaged one: %w", err)
	}
	return nil
}

// RestoreSnapshot makes dataDir, which must hold no cluster yet, a
// single-voter cluster holding the catalog snapshot, checked first as
// InspectSnapshot does: start a server on it to bring the backup back.
// The voter is nodeID, which the server is then started with
// (--node-id); empty means the ID in dataDir/node-id, made up there if
// absent. It returns the snapshot's index. To restore a backup into a
// running registry instead, send it to PUT /v1/snapshot
// (Registry.Restore).
func RestoreSnapshot(dataDir, nodeID string, snapshot []byte) (uint64, error) {
	if _, err := InspectSnapshot(snapshot); err != nil {
		return 0, err
	}
	created := ""
	if nodeID != "" {
		// The cluster restores as the ID in node-id: write it there,
		// unless the dir holds one already.
		p := filepath.Join(dataDir, "node-id")
		b, err := os.ReadFile(p)
		switch {
		case err == nil && len(b) > 0 && string(b) != nodeID:
			return 0, fmt.Errorf("%s holds node ID %q (in %s), not %q; restore into a new directory", dataDir, b, p, nodeID)
		case err == nil && len(b) > 0:
		case err != nil && !errors.Is(err, os.ErrNotExist):
			return 0, fmt.Errorf("node id: %w", err)
		default:
			if _, err := durable.PrivateDir(dataDir); err != nil {
				return 0, fmt.Errorf("data dir: %w", err)
			}
			if err := durable.WriteFile(p, []byte(nodeID), 0o600); err != nil {
				return 0, fmt.Errorf("node id: %w", err)
			}
			created = p
		}
	}
	index, err := cluster.RestoreSnapshot(dataDir, snapshot)
	if err != nil && created != "" {
		os.Remove(created) // what this call wrote, in a dir it did not restore into
	}
	return index, err
}
