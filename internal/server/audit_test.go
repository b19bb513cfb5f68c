package server_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// appliedTrail is every record of s's trail that went through Raft,
// once at least n are there, as JSON lines (which compare whole).
func appliedTrail(tb testing.TB, c *client.Client, n int) []string {
	tb.Helper()
	var out []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out = out[:0]
		next := "0.0.0.0"
		for {
			res, err := c.Audit(context.Background(), client.AuditQuery{After: next, Limit: 1000})
			if err != nil {
				tb.Fatal(err)
			}
			for _, r := range res.Records {
				if r.Index > 0 && r.Action != "snapshot_installed" {
					b, _ := json.Marshal(r)
					out = append(out, string(b))
				}
			}
			next = res.Next
			if !res.More {
				break
			}
		}
		if len(out) >= n || time.Now().After(deadline) {
			return out
		}
	}
}

// TestCluster_AuditTrailOnEveryReplica: the records of decisions that
// went through Raft are the same on every server, field for field,
// whichever server took the request: a write a follower forwarded names
// the follower and its caller on the leader too. A refusal is recorded
// only by the server that refused.
func TestCluster_AuditTrailOnEveryReplica(t *testing.T) {
	servers := testserver.StartCluster(t, 3, nil)
	ctx := context.Background()
	lead := testserver.WaitCluster(t, servers)
	follower := (lead + 1) % 3
	admin := clientOf(t, servers[follower], testserver.ClusterAdminToken)
	k, err := admin.CreateKey(ctx, []string{"web"}, "")
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := clientOf(t, servers[lead], "").Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Drain(ctx, reg.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := clientOf(t, servers[follower], "").Register(ctx, "db", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}); err == nil {
		t.Fatal("a key for web registered db")
	}

	var trails [][]string
	for _, s := range servers {
		// The leader's CA (ca_add) came first, then the three writes.
		trails = append(trails, appliedTrail(t, clientOf(t, s, testserver.ClusterAdminToken), 4))
	}
	for i := range servers {
		if !slices.Equal(trails[i], trails[lead]) {
			t.Errorf("server %d's trail differs from the leader's:\n%v\n%v", i+1, trails[i], trails[lead])
		}
	}
	if len(trails[lead]) != 4 {
		t.Fatalf("the leader's trail: %v", trails[lead])
	}
	var ca api.AuditRecord
	json.Unmarshal([]byte(trails[lead][0]), &ca)
	if ca.Action != "ca_add" || ca.Node != servers[lead].Node().NodeID() || ca.Caller != "" {
		t.Errorf("the leader's first CA is recorded as %+v", ca)
	}
	var created api.AuditRecord
	json.Unmarshal([]byte(trails[lead][1]), &created)
	if created.Action != "key_create" || created.Node != servers[follower].Node().NodeID() || created.Caller == "" || created.KeyID != k.ID {
		t.Errorf("the key created through a follower is recorded as %+v", created)
	}
	var registered api.AuditRecord
	json.Unmarshal([]byte(trails[lead][2]), &registered)
	if registered.Action != "register" || registered.Node != servers[lead].Node().NodeID() || registered.InstanceID != reg.ID || registered.Index != reg.Index {
		t.Errorf("the registration through the leader is recorded as %+v", registered)
	}
	// The refusal is the follower's alone.
	for i, s := range servers {
		res, err := clientOf(t, s, testserver.ClusterAdminToken).Audit(ctx, client.AuditQuery{Outcome: "refused", Service: "db"})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(res.Records); (i == follower) != (n == 1) || n > 1 {
			t.Errorf("server %d holds %d records of the refusal on server %d: %+v", i+1, n, follower+1, res.Records)
		}
	}
}

// TestAudit_DeregisterAfterEvictionNamesService: an evicted instance's
// own process, deregistering as it stops, is refused; the record names
// the service from the eviction's bar and says it was evicted, so that
// it does not read as a stranger's attempt.
func TestAudit_DeregisterAfterEvictionNamesService(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	ctx := context.Background()
	k := h.Key(t, "web")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Admin.Evict(ctx, reg.ID, time.Minute, "retired"); err != nil {
		t.Fatal(err)
	}
	if err := h.Anon.Deregister(ctx, reg.ID, inst.TokenOf(reg.ID)); err == nil {
		t.Fatal("an evicted instance was deregistered")
	}
	testserver.Eventually(t, 5*time.Second, "the refused deregistration's record", func() bool {
		res, err := h.Admin.Audit(ctx, client.AuditQuery{Action: "deregister", Outcome: "refused"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Records {
			if r.InstanceID == reg.ID {
				if r.Service != "web" || !strings.Contains(r.Reason, "evicted") {
					t.Fatalf("record: %+v", r)
				}
				return true
			}
		}
		return false
	})
}

// TestAudit_RefusalsStopBeforeTheReserve: with the data dir's disk below
// twice its reserve but above it, the catalog's writes go on (and are
// recorded), while this node's own records, a stranger's refusals
// among them, are dropped and counted: a flood of them can never take
// the room the catalog keeps.
func TestAudit_RefusalsStopBeforeTheReserve(t *testing.T) {
	h := testserver.NewHarness(t, func(c *server.Config) {
		c.Cluster.DiskReserve = 64 << 20
		c.Cluster.DiskFree = func(string) (uint64, error) { return 100 << 20, nil }
	})
	ctx := context.Background()
	k := h.Key(t, "web") // a write of the catalog: accepted
	for range 10 {
		if _, err := h.Anon.Drain(ctx, "0123456789abcdef0123456789abcdef", "not-a-token"); err == nil {
			t.Fatal("a drain by a stranger was accepted")
		}
	}
	testserver.Eventually(t, 5*time.Second, "the key's creation record, and the refusals counted as dropped", func() bool {
		res, err := h.Admin.Audit(ctx, client.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		created := false
		for _, r := range res.Records {
			if r.Action == "drain" {
				t.Fatalf("a refusal was recorded below twice the reserve: %+v", r)
			}
			created = created || (r.Action == "key_create" && r.KeyID == k.ID)
		}
		return created && res.Dropped >= 10
	})
}

// TestAudit_RecordsWhoAsked: the record of a change names the credential
// that asked when it was not the instance's own session token: an
// operator token's ID for its drain and eviction, "admin" for the admin
// token's deregistration and key creation; the instance's own drain
// names none. Every server derives the same from the log.
func TestAudit_RecordsWhoAsked(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	ctx := context.Background()
	k := h.Key(t, "web")
	op := h.Token(t, "operator", "web")
	opc, err := client.New(client.Config{Addr: h.Srv.URL(), Token: op.Secret})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	var tokens []string
	for range 3 {
		inst := testutil.NewInstance(t, k.Secret, verify.Proof)
		reg, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		ids, tokens = append(ids, reg.ID), append(tokens, inst.TokenOf(reg.ID))
	}
	if _, err := h.Anon.Drain(ctx, ids[0], tokens[0]); err != nil { // its own
		t.Fatal(err)
	}
	if _, err := opc.Drain(ctx, ids[1], op.Secret); err != nil {
		t.Fatal(err)
	}
	if _, err := opc.Evict(ctx, ids[1], time.Minute, "operator"); err != nil {
		t.Fatal(err)
	}
	if err := h.Admin.Deregister(ctx, ids[2], h.AdminToken(t)); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"drain " + ids[0]: "", "drain " + ids[1]: op.ID, "evict " + ids[1]: op.ID, "deregister " + ids[2]: "admin"}
	testserver.Eventually(t, 5*time.Second, "the records", func() bool {
		res, err := h.Admin.Audit(ctx, client.AuditQuery{Service: "web"})
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, r := range res.Records {
			if by, ok := want[r.Action+" "+r.InstanceID]; ok && r.Outcome == "ok" {
				seen++
				if r.By != by {
					t.Fatalf("%s %s: by %q, want %q (%+v)", r.Action, r.InstanceID, r.By, by, r)
				}
			}
		}
		return seen == len(want)
	})
	res, err := h.Admin.Audit(ctx, client.AuditQuery{Action: "key_create"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) == 0 {
		t.Fatal("no key_create records")
	}
	for _, r := range res.Records {
		if r.By != "admin" {
			t.Errorf("key_create by the admin token: by %q (%+v)", r.By, r)
		}
	}
}
