package cluster

import (
	"bytes"
	"errors"
	"testing"

	"github.com/musterhq/muster/internal/catalog"
)

// TestRestoreSnapshot: a catalog snapshot taken from a running node (a
// backup) is restored into a new data dir, which opens as a cluster
// holding exactly that catalog and takes writes from the snapshot's index
// on; a data dir that holds a cluster, and a snapshot that does not
// parse, are refused.
func TestRestoreSnapshot(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	n, cat := openReady(t, cfg)
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}}})
	mustApply(t, n, registerCmd("i1", "svc", 8001))
	var backup bytes.Buffer
	if _, err := cat.Snapshot().WriteTo(&backup); err != nil {
		t.Fatal(err)
	}
	index := cat.Index()
	n.Close()

	if _, err := RestoreSnapshot(cfg.DataDir, backup.Bytes()); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("restoring over a live data dir: %v", err)
	}
	if _, err := RestoreSnapshot(t.TempDir(), []byte(`{"version":1,`)); err == nil {
		t.Fatal("a truncated snapshot was restored")
	}

	dir := t.TempDir()
	got, err := RestoreSnapshot(dir, backup.Bytes())
	if err != nil || got != index {
		t.Fatalf("RestoreSnapshot = %d, %v; want index %d", got, err, index)
	}
	rcfg := testConfig(t, dir)
	rn, rcat := openReady(t, rcfg)
	if _, ok := rcat.Instance("i1"); !ok || rcat.Index() < index {
		t.Fatalf("restored catalog: instance i1 %v, index %d (snapshot %d)", ok, rcat.Index(), index)
	}
	if _, ok := rcat.Key("k1"); !ok {
		t.Fatal("the restored catalog lacks the key")
	}
	res := mustApply(t, rn, registerCmd("i2", "svc", 8002))
	if res.Index <= index {
		t.Fatalf("a write after the restore got index %d, not above the snapshot's %d", res.Index, index)
	}
	// And it survives a restart.
	rn.Close()
	rn, rcat = openReady(t, rcfg)
	defer rn.Close()
	for _, id := range []string{"i1", "i2"} {
		if _, ok := rcat.Instance(id); !ok {
			t.Fatalf("after a restart the restored dir lacks %s", id)
		}
	}
}
