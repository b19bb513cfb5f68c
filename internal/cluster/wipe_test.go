package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/musterhq/muster/internal/catalog"
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

// TestCluster_MembersRecordTheirStateAtOnce: every member of a new
// cluster, including those that got their state by replication and
// never restarted, records at once that its data dir holds a cluster
// (cluster-id, 0600) and deletes its bootstrap promise. So a member
// whose raft.db is lost refuses to start (ErrStateLost) instead of coming
// back empty and voting for its old coordinator by a stale promise: an
// outside review elected, that way, a leader that lacked an acknowledged
// write, and the replicas diverged.
func TestCluster_MembersRecordTheirStateAtOnce(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := leaderOf(t, nodes)
	mustApply(t, nodes[lead].n, registerCmd("acked", "api", 8000))
	for _, tn := range nodes {
		id := filepath.Join(tn.cfg.DataDir, clusterIDFile)
		waitFor(t, func() bool { _, err := os.Stat(id); return err == nil }, "cluster-id in "+tn.cfg.NodeID+"'s data dir")
		if fi, _ := os.Stat(id); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: cluster-id is %v, want 0600", tn.cfg.NodeID, fi.Mode().Perm())
		}
		if _, err := os.Stat(filepath.Join(tn.cfg.DataDir, promiseFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still holds its bootstrap promise (%v)", tn.cfg.NodeID, err)
		}
	}
	f := nodes[(lead+1)%3]
	f.n.Close()
	if err := os.Remove(filepath.Join(f.cfg.DataDir, raftDBFile)); err != nil {
		t.Fatal(err)
	}
	n, err := Open(f.cfg, catalog.New())
	if err == nil {
		n.Close()
		t.Fatalf("%s started although its raft.db was lost", f.cfg.NodeID)
	}
	if !errors.Is(err, ErrStateLost) {
		t.Fatalf("opening %s without raft.db: %v, want ErrStateLost", f.cfg.NodeID, err)
	}
}

// TestCluster_WipedServerUnderItsOldIDNotTakenBack: a follower's data
// dir is wiped and it starts again, while the cluster runs, under its old
// ID on its old address. The leader refuses it (state_lost), both sides
// say why, and it takes no log either: it does not become a voter again,
// counted as the member that held the writes it lost, until the operator
// removes the old member; then it joins and catches up.
func TestCluster_WipedServerUnderItsOldIDNotTakenBack(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := leaderOf(t, nodes)
	leader, b := nodes[lead], nodes[(lead+1)%3]
	mustApply(t, leader.n, registerCmd("acked", "api", 8000))
	b.n.Close()

	wiped := b.cfg
	wiped.DataDir = t.TempDir()
	w := openNode(t, wiped)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if w.n.hasState() || len(w.n.raft.GetConfiguration().Configuration().Servers) > 0 {
			t.Fatal("the wiped server took the leader's log under its old ID without being removed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, func() bool { return strings.Contains(w.logs.String(), "state_lost") }, "the wiped server to be refused")
	if !strings.Contains(w.logs.String(), "members remove "+b.cfg.NodeID) {
		t.Error("the wiped server did not say what to do")
	}
	if c := nodes[(lead+2)%3]; !strings.Contains(leader.logs.String()+c.logs.String(), "its data was lost") {
		t.Error("the leader did not say why it refused the wiped server")
	}

	if err := leader.n.RemoveMember(context.Background(), b.cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, 15*time.Second, func() bool { _, ok := w.cat.Instance("acked"); return ok }, "the wiped server to join and catch up once removed")
	waitFor(t, func() bool {
		for _, s := range leader.n.raft.GetConfiguration().Configuration().Servers {
			if string(s.ID) == b.cfg.NodeID && s.Suffrage == raft.Voter {
				return true
			}
		}
		return false
	}, "the server to be a voter again")
}

// TestNode_VotesOnlyByABindingPromise: a server without Raft state votes
// only for the coordinator it promised to bootstrap with, by ID and Raft
// address, and only while the promise binds: not for another server
// under the coordinator's ID (two servers given the same ID), not by a
// promise older than promiseTTL (left behind from before its data was
// lost), and not without one. A refusal carries this server's own RPC
// header, not the candidate's.
func TestNode_VotesOnlyByABindingPromise(t *testing.T) {
	const coord, coordAddr = "n0", "127.0.0.1:7001"
	for _, tc := range []struct {
		name    string
		promise map[string]any // the bootstrap-promise file; nil: none
		addr    string         // the candidate's address
		granted bool
	}{
		{"binding promise", map[string]any{"coordinator": coord, "addr": coordAddr, "granted_at": time.Now().UTC()}, coordAddr, true},
		{"another address under the coordinator's ID", map[string]any{"coordinator": coord, "addr": coordAddr, "granted_at": time.Now().UTC()}, "127.0.0.1:7002", false},
		{"promise past its lifetime", map[string]any{"coordinator": coord, "addr": coordAddr, "granted_at": time.Now().Add(-2 * promiseTTL).UTC()}, coordAddr, false},
		{"no promise", nil, coordAddr, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clusterConfig(t, testSecret("cluster"), "admin")
			cfg.NodeID = "voter"
			if tc.promise != nil {
				b, _ := json.Marshal(tc.promise)
				if err := os.WriteFile(filepath.Join(cfg.DataDir, promiseFile), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			x := openNode(t, cfg)
			p := newPeer(t, testSecret("cluster"), nil, time.Second, 8)
			adm := hash("admin")
			p.stream.admin.Store(&adm)
			var resp raft.RequestVoteResponse
			err := p.trans.RequestVote(raft.ServerID(coord), x.n.transport.LocalAddr(), &raft.RequestVoteRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(coord), Addr: []byte(tc.addr)},
				Term:      5, LastLogIndex: 1, LastLogTerm: 1,
			}, &resp)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Granted != tc.granted {
				t.Fatalf("vote granted = %v, want %v", resp.Granted, tc.granted)
			}
			if !tc.granted && string(resp.RPCHeader.ID) != cfg.NodeID {
				t.Fatalf("the refusal carries the header of %q, want this server's (%q)", resp.RPCHeader.ID, cfg.NodeID)
			}
		})
	}
}
