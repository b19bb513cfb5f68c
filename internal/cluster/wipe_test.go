package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestCluster_WipedServerDoesNotVote: a write is acknowledged by the
// leader and one follower while the other follower is cut off; then the
// two that hold it stop, and the one whose data dir is wiped starts again
// on its old address (under a new ID, or under its old one). Its empty
// state must not vote: the follower that lacks the write never becomes
// leader with it, and once the old leader is back the write is there.
func TestCluster_WipedServerDoesNotVote(t *testing.T) {
	for _, sameID := range []bool{false, true} {
		name := "new ID"
		if sameID {
			name = "same ID"
		}
		t.Run(name, func(t *testing.T) {
			f := newFaults()
			nodes := startClusterWith(t, 3, f)
			lead := leaderOf(t, nodes)
			a, b, c := nodes[lead], nodes[(lead+1)%3], nodes[(lead+2)%3]
			isolate(f, nodes, c)
			mustApply(t, a.n, registerCmd("acked", "api", 8000))
			a.n.Close()
			b.n.Close()
			f.Heal()

			wiped := b.cfg
			wiped.DataDir = t.TempDir()
			if !sameID {
				wiped.NodeID = "wiped"
			}
			wiped.Join = []string{c.n.RaftAddr()}
			w := openNode(t, wiped)
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				if c.n.raft.State() == raft.Leader {
					t.Fatalf("%s, which lacks an acknowledged write, was elected with the vote of a wiped server", c.cfg.NodeID)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !strings.Contains(w.logs.String(), "refused a vote") {
				t.Fatal("the wiped server did not say it refused a vote")
			}

			back := openNode(t, a.cfg)
			live := []*tnode{back, c}
			leaderOf(t, live)
			for _, tn := range live {
				waitWithin(t, 10*time.Second, func() bool { _, ok := tn.cat.Instance("acked"); return ok }, "the acknowledged write on "+tn.cfg.NodeID)
			}
		})
	}
}

// TestCluster_OtherAdminTokenShutOut: a member restarted with another
// admin token is shut out of Raft as well as of the RPC: it receives no
// more of the log, and with the leader gone it cannot be elected.
func TestCluster_OtherAdminTokenShutOut(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := leaderOf(t, nodes)
	f := nodes[(lead+1)%3]
	f.n.Close()
	other := f.cfg
	other.AdminCheck = hash("another admin token")
	rogue := openNode(t, other)
	before := rogue.cat.Index()
	mustApply(t, nodes[lead].n, registerCmd("after", "api", 8000))
	waitFor(t, func() bool { return strings.Contains(rogue.logs.String(), "admin token differs") }, "the rogue to be told why")
	time.Sleep(500 * time.Millisecond)
	if _, ok := rogue.cat.Instance("after"); ok || rogue.cat.Index() != before {
		t.Fatal("a member with another admin token still receives the log")
	}
	nodes[lead].n.Close()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if rogue.n.raft.State() == raft.Leader {
			t.Fatal("a member with another admin token became leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
