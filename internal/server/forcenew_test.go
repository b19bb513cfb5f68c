package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
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

// TestAudit_SecretAsKeyIDNotRecorded: an operator who passes a key's
// secret where its ID belongs gets 404, and the secret is in no audit
// record (an outside review found it in the trail, and in the Raft log,
// since the command was proposed).
func TestAudit_SecretAsKeyIDNotRecorded(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	ctx := context.Background()
	k := h.Key(t, "svc")
	if err := h.Admin.RevokeKey(ctx, k.Secret); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("revoke with the secret for an ID: %v, want not found", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := h.Admin.Audit(ctx, client.AuditQuery{Action: "key_revoke", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) > 0 {
			b, _ := json.Marshal(res.Records)
			if strings.Contains(string(b), k.Secret) {
				t.Fatalf("the secret is in the audit trail: %s", b)
			}
			if res.Records[0].Outcome != "refused" {
				t.Fatalf("records: %s", b)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the refused revocation was not recorded")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
