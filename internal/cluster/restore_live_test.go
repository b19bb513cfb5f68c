package cluster

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// keyIDs returns the IDs of cat's keys, sorted.
func keyIDs(cat *catalog.Catalog) []string {
	var ids []string
	for _, k := range cat.Keys() {
		ids = append(ids, k.ID)
	}
	return ids
}

// TestNode_Restore: a backup restored into a running node replaces its
// catalog at an index above every earlier one; the node judges expiry
// afresh from then (Ready's time moves); a command proposed while a
// restore holds the log is refused, not applied; writes go on after it;
// and the node reopens over its data dir (the log the restored snapshot
// covers is gone, not left behind a hole) with the same catalog.
func TestNode_Restore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	n, cat := openReady(t, cfg)
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s1"), Services: []string{"svc*"}}})
	mustApply(t, n, registerCmd("i1", "svc-a", 8080))
	var buf bytes.Buffer
	if _, err := cat.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	backup, err := catalog.ReadBackup(&buf)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k2", SecretHash: hash("s2"), Services: []string{"svc*"}}})
	mustApply(t, n, registerCmd("i2", "svc-b", 8081))
	mustApply(t, n, catalog.Command{Op: catalog.OpDeregister, ID: "i1"})
	before := cat.Index()
	_, since := n.Ready()
	time.Sleep(10 * time.Millisecond)

	index, err := n.Restore(ctx, backup)
	if err != nil {
		t.Fatal(err)
	}
	if index <= before || cat.Index() != index {
		t.Fatalf("restored at %d, catalog at %d; it was at %d", index, cat.Index(), before)
	}
	if _, ok := cat.Instance("i1"); !ok {
		t.Error("i1, removed after the backup, is not back")
	}
	if _, ok := cat.Instance("i2"); ok {
		t.Error("i2, registered after the backup, is still there")
	}
	if got := keyIDs(cat); !slices.Equal(got, []string{"k1"}) {
		t.Errorf("keys %v, want [k1]", got)
	}
	for _, name := range []string{"svc-a", "svc-b"} {
		if v := cat.Service(name); v == nil || v.Index != index {
			t.Errorf("service %s: %+v, want index %d", name, v, index)
		}
	}
	if _, after := n.Ready(); !after.After(since) {
		t.Errorf("Ready's time %v did not move past %v: expiry would be judged from before the restore", after, since)
	}

	// A restore in progress holds the log: a command is refused.
	n.restoreMu.Lock()
	_, err = n.Apply(ctx, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k3", SecretHash: hash("s3"), Services: []string{"svc*"}}})
	n.restoreMu.Unlock()
	var u interface{ Unavailable() bool }
	if !errors.Is(err, ErrTimeout) || !errors.As(err, &u) || !u.Unavailable() {
		t.Errorf("a command during a restore: %v, want ErrTimeout", err)
	}
	if _, ok := cat.Key("k3"); ok {
		t.Error("the command refused during the restore was applied")
	}

	res := mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k4", SecretHash: hash("s4"), Services: []string{"svc*"}}})
	if res.Index <= index {
		t.Errorf("a write after the restore at index %d, not above %d", res.Index, index)
	}
	last := cat.Index()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2, cat2 := openReady(t, cfg)
	defer n2.Close()
	if cat2.Index() != last || !slices.Equal(keyIDs(cat2), []string{"k1", "k4"}) {
		t.Errorf("reopened: index %d (want %d), keys %v", cat2.Index(), last, keyIDs(cat2))
	}
}
