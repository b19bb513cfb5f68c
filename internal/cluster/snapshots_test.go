package cluster

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/musterhq/muster/internal/catalog"
)

func TestSnapshotThreshold(t *testing.T) {
	for _, tc := range []struct {
		least     uint64
		instances int
		want      uint64
	}{
		{0, 0, DefaultSnapshotThreshold},
		{0, 16_000, DefaultSnapshotThreshold},
		{0, 100_000, 6250},
		{0, 1_000_000, 62_500},
		{8, 0, 8},
		{20_000, 100_000, 20_000},
	} {
		if got := snapshotThreshold(tc.least, tc.instances); got != tc.want {
			t.Errorf("snapshotThreshold(%d, %d) = %d, want %d", tc.least, tc.instances, got, tc.want)
		}
	}
}

// TestOpen_singleVoterConfig: a node without a Raft listener, the only
// voter its cluster can have, elects itself within 50 to 100 ms whatever
// timeouts it was given, and keeps a short log behind its snapshots; a
// node with a listener keeps the timeouts it was given. Both check for a
// snapshot every second or two.
func TestOpen_singleVoterConfig(t *testing.T) {
	single := testConfig(t, t.TempDir())
	single.HeartbeatTimeout, single.ElectionTimeout = 500*time.Millisecond, time.Second
	n, _ := openReady(t, single)
	defer n.Close()
	rc := n.raft.ReloadableConfig()
	if rc.HeartbeatTimeout != singleVoterTimeout || rc.ElectionTimeout != singleVoterTimeout ||
		rc.TrailingLogs != singleVoterTrailingLogs || rc.SnapshotInterval != snapshotInterval {
		t.Errorf("single voter's Raft configuration: %+v", rc)
	}

	listening := clusterConfig(t, testSecret("cluster"), "admin")
	listening.Bootstrap = true
	ln := openNode(t, listening)
	rc = ln.n.raft.ReloadableConfig()
	if rc.HeartbeatTimeout != listening.HeartbeatTimeout || rc.ElectionTimeout != listening.ElectionTimeout ||
		rc.TrailingLogs != raft.DefaultConfig().TrailingLogs || rc.SnapshotInterval != snapshotInterval {
		t.Errorf("a node with a listener: %+v", rc)
	}
}

// latestSnapshot returns the bytes of the latest snapshot in dir's
// snapshot store, or nil if it holds none.
func latestSnapshot(tb testing.TB, dir string) []byte {
	tb.Helper()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		tb.Fatal(err)
	}
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "snapshots", list[0].ID, "state.bin"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestNode_snapshotsByItself: with no one asking, the node snapshots once
// the log since the last snapshot reaches its threshold, in the catalog's
// binary format, and a restart from that snapshot and the log after it
// holds every write acknowledged before the kill.
func TestNode_snapshotsByItself(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.SnapshotThreshold = 8
	n, cat := openReady(t, cfg)
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}}})
	for i := range 20 {
		mustApply(t, n, registerCmd("i"+string(rune('a'+i)), "svc", 1000+i))
	}
	var snap []byte
	for deadline := time.Now().Add(10 * time.Second); snap == nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		snap = latestSnapshot(t, cfg.DataDir)
	}
	if !bytes.HasPrefix(snap, []byte("\x00muster-snapshot")) {
		t.Fatalf("the node's snapshot is not in the binary format: %.40q", snap)
	}
	last := mustApply(t, n, registerCmd("late", "svc", 2000)).Index // in the log only
	want := cat.Snapshot()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2, cat2 := openReady(t, cfg)
	defer n2.Close()
	if cat2.Index() < last || !snapshotsEqual(t, want, cat2.Snapshot()) {
		t.Fatalf("after a restart the catalog differs (index %d, want %d)", cat2.Index(), last)
	}
}

// TestNode_JSONSnapshotStillRestores: a data dir whose latest Raft
// snapshot is in the JSON of version 1 (as every muster before the
// binary format wrote them, and as a backup restored into a new data dir
// still is) opens with its catalog; its next snapshot is binary, and the
// data dir opens from that one too.
func TestNode_JSONSnapshotStillRestores(t *testing.T) {
	src := catalog.New()
	src.Apply(1, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}}})
	src.Apply(2, registerCmd("i1", "svc", 8001))
	var v1 bytes.Buffer
	if _, err := src.Snapshot().WriteTo(&v1); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := RestoreSnapshot(dir, v1.Bytes()); err != nil {
		t.Fatal(err)
	}
	if got := latestSnapshot(t, dir); !bytes.Equal(got, v1.Bytes()) {
		t.Fatalf("the data dir's snapshot is not the JSON given: %.40q", got)
	}
	cfg := testConfig(t, dir)
	n, cat := openReady(t, cfg)
	if _, ok := cat.Instance("i1"); !ok {
		t.Fatal("the JSON snapshot was not restored")
	}
	mustApply(t, n, registerCmd("i2", "svc", 8002))
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if got := latestSnapshot(t, dir); !bytes.HasPrefix(got, []byte("\x00muster-snapshot")) {
		t.Fatalf("the next snapshot is not binary: %.40q", got)
	}
	want := cat.Snapshot()
	n.Close()
	n2, cat2 := openReady(t, cfg)
	defer n2.Close()
	if !snapshotsEqual(t, want, cat2.Snapshot()) {
		t.Fatal("the catalog restored from the binary snapshot differs")
	}
}

// TestOpen_RemovesUnfinishedSnapshots: a crash while a snapshot is
// written leaves its NAME.tmp directory, which Raft never looks at again;
// the next start removes it, and keeps the finished snapshots and the
// catalog.
func TestOpen_RemovesUnfinishedSnapshots(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.RaftAddr = ""
	n, _ := openReady(t, cfg)
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc"}}})
	mustApply(t, n, registerCmd("i1", "svc", 1))
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	snapDir := filepath.Join(dir, "snapshots")
	tmp := filepath.Join(snapDir, "2-99-1700000000000.tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "state.bin"), make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	kept, _ := filepath.Glob(filepath.Join(snapDir, "*"))

	n2, cat := openReady(t, cfg)
	defer n2.Close()
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("the unfinished snapshot is still there (%v)", err)
	}
	for _, p := range kept {
		if p == tmp {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("a finished snapshot went too: %v", err)
		}
	}
	if len(kept) < 2 {
		t.Fatalf("no finished snapshot beside the unfinished one: %v", kept)
	}
	if got := len(cat.Instances()); got != 1 {
		t.Fatalf("reopened with %d instances, want 1", got)
	}
}
