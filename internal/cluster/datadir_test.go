package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/musterhq/muster/internal/catalog"
)

// TestNode_RefusesLostRaftDB: a data dir that held a cluster, whose
// raft.db was emptied, deleted or replaced by an empty store, does not
// come up as a new, empty cluster: Open fails with ErrStateLost, on one
// line naming raft.db, the evidence and the way out. With
// ForceNewCluster it opens with an empty catalog (or the latest
// snapshot's), and is a healthy data dir again.
func TestNode_RefusesLostRaftDB(t *testing.T) {
	emptyStore := func(t *testing.T, path string) {
		os.Remove(path)
		s, err := raftboltdb.NewBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	for _, tc := range []struct {
		name     string
		snapshot bool
		damage   func(t *testing.T, path string)
	}{
		{"truncated to 0 bytes", false, func(t *testing.T, p string) { os.Truncate(p, 0) }},
		{"deleted", false, func(t *testing.T, p string) { os.Remove(p) }},
		{"replaced by an empty store", false, emptyStore},
		{"deleted, with a snapshot", true, func(t *testing.T, p string) { os.Remove(p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(t, dir)
			n, cat := openReady(t, cfg)
			mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}}})
			mustApply(t, n, registerCmd("i1", "svc", 1000))
			var atSnapshot []byte
			if tc.snapshot {
				if err := n.Snapshot(); err != nil {
					t.Fatal(err)
				}
				var b bytesBuffer
				cat.Snapshot().WriteTo(&b)
				atSnapshot = b
				mustApply(t, n, registerCmd("i2", "svc", 1001)) // after the snapshot: lost
			}
			n.Close()
			oldID, _, _ := readClusterID(dir)
			db := filepath.Join(dir, raftDBFile)
			tc.damage(t, db)
			_, statErr := os.Stat(db)

			_, err := Open(cfg, catalog.New())
			if !errors.Is(err, ErrStateLost) {
				t.Fatalf("Open = %v, want ErrStateLost", err)
			}
			msg := err.Error()
			for _, want := range []string{db, "force-new-cluster", "Restore raft.db from a backup"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q: %s", want, msg)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is more than one line: %q", msg)
			}
			if _, err := os.Stat(db); (err == nil) != (statErr == nil) {
				t.Errorf("the refused Open created or removed raft.db")
			}

			cfg.ForceNewCluster = true
			n2, cat2 := openReady(t, cfg)
			var got bytesBuffer
			cat2.Snapshot().WriteTo(&got)
			if tc.snapshot {
				if string(got) != string(atSnapshot) {
					t.Fatalf("forced open: catalog\n%s\nwant the snapshot's\n%s", got, atSnapshot)
				}
				if id, _, _ := readClusterID(dir); id != oldID {
					t.Errorf("cluster-id changed from %s to %s although the cluster goes on from its snapshot", oldID, id)
				}
			} else {
				if _, ok := cat2.Key("k1"); ok || cat2.Index() != 0 {
					t.Fatalf("forced open: catalog not empty: %s", got)
				}
				if id, ok, _ := readClusterID(dir); !ok || id == oldID {
					t.Errorf("cluster-id after forcing a new cluster = %q (was %q), want a new one", id, oldID)
				}
			}
			// The data dir is healthy again: writes, snapshots and
			// restarts without the flag keep them.
			k2 := mustApply(t, n2, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k2", SecretHash: hash("s2"), Services: []string{"x"}}})
			if err := n2.Snapshot(); err != nil {
				t.Fatal(err)
			}
			// The new snapshot is the one Raft restores first: its term is
			// not below the old snapshot's (the snapshot store orders by
			// term before index).
			snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			if list, err := snaps.List(); err != nil || len(list) == 0 || list[0].Index < k2.Index {
				t.Fatalf("latest snapshot %+v (err %v), want one at index %d or later", list[0], err, k2.Index)
			}
			mustApply(t, n2, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k3", SecretHash: hash("s3"), Services: []string{"x"}}})
			n2.Close()
			cfg.ForceNewCluster = false
			n3, cat3 := openReady(t, cfg)
			defer n3.Close()
			for _, k := range []string{"k2", "k3"} {
				if _, ok := cat3.Key(k); !ok {
					t.Errorf("key %s written after the forced start is gone after a restart", k)
				}
			}
		})
	}
}

// TestNode_ForceNewClusterOnHealthyDir: the flag does nothing to a data
// dir whose raft.db holds its state.
func TestNode_ForceNewClusterOnHealthyDir(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	n, _ := openReady(t, cfg)
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"x"}}})
	n.Close()
	id, _, _ := readClusterID(cfg.DataDir)
	cfg.ForceNewCluster = true
	n2, cat := openReady(t, cfg)
	defer n2.Close()
	if _, ok := cat.Key("k1"); !ok {
		t.Fatal("force-new-cluster dropped a healthy catalog")
	}
	if id2, _, _ := readClusterID(cfg.DataDir); id2 != id {
		t.Fatalf("cluster-id changed: %s → %s", id, id2)
	}
}
