package server_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
)

// TestForceNewCluster_AuditGoesOn: after raft.db lost its state and the
// server starts with ForceNewCluster, the new Raft log numbers its
// entries from the start again, below the indexes the audit trail
// holds; its decisions are recorded all the same (an outside review
// found every one of them missing: they were taken for replays).
func TestForceNewCluster_AuditGoesOn(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	first := testserver.NewHarness(t, func(c *server.Config) { c.DataDir = dir })
	for range 20 {
		first.Key(t, "old")
	}
	first.Srv.Close()
	if err := os.Remove(filepath.Join(dir, "raft.db")); err != nil {
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*"))
	for _, s := range snaps {
		os.RemoveAll(s)
	}

	h := testserver.NewHarness(t, func(c *server.Config) { c.DataDir, c.Cluster.ForceNewCluster = dir, true })
	k := h.Key(t, "new_*")
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := h.Admin.Audit(ctx, client.AuditQuery{Action: "key_create", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range res.Records {
			found = found || r.KeyID == k.ID && r.Outcome == "ok"
		}
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key created after force-new-cluster is not in the audit trail: %+v", res.Records)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
