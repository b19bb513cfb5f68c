package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCluster_RemovedWhileDownSaysSo: a follower removed while it was
// down, started again over its data dir, still holds a configuration
// that lists it and hears no leader; it asks the members, learns that
// they no longer count it, says so in its log, reports "removed", and
// refuses writes at once instead of waiting for a leader. The cluster
// goes on.
func TestCluster_RemovedWhileDownSaysSo(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := leaderOf(t, nodes)
	gone := nodes[(lead+1)%3]
	cfg := gone.cfg
	gone.n.Close()
	if err := nodes[lead].n.RemoveMember(context.Background(), cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	back := openNode(t, cfg)
	waitWithin(t, 15*time.Second, back.n.Removed, "the removed server to learn it was removed")
	if d := back.n.Degraded(); d != "removed" {
		t.Fatalf("Degraded = %q, want removed", d)
	}
	if err := back.n.Writable(); !errors.Is(err, ErrRemoved) {
		t.Fatalf("Writable = %v, want ErrRemoved", err)
	}
	if !strings.Contains(back.logs.String(), "this server was removed from its cluster") {
		t.Fatalf("its log does not say it was removed:\n%s", back.logs.String())
	}
	mustApply(t, nodes[lead].n, registerCmd("after", "api", 9000))
}

// TestCluster_AddOfAServerNoLongerAskingIsRefused: a request to join
// whose asker gave up (it stopped, so the request's context ended) is
// not carried out by the leader; otherwise a server removed while its
// request waited would be added back (seen in CI as a removed server
// that never learnt it was removed).
func TestCluster_AddOfAServerNoLongerAskingIsRefused(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := nodes[leaderOf(t, nodes)].n
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := memberRequest{Self: Peer{ID: "n9", RaftAddr: "127.0.0.1:1"}} // a non-voter: quorum unchanged
	if err := lead.addServer(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("addServer with its asker gone = %v, want context.Canceled", err)
	}
	f := lead.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == "n9" {
			t.Fatalf("the server was added: %+v", f.Configuration().Servers)
		}
	}
	if err := lead.addServer(context.Background(), req); err != nil {
		t.Fatalf("addServer with its asker waiting = %v", err)
	}
}
