package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ipOf is the IP address a test member listens on.
func ipOf(tn *tnode) string { return hostOf(tn.n.RaftAddr()) }

// isolate cuts tn from every other member.
func isolate(f *faults, nodes []*tnode, tn *tnode) {
	for _, o := range nodes {
		if o != tn {
			f.Cut(ipOf(tn), ipOf(o))
		}
	}
}

// TestCluster_Partition: the leader is cut off from the other two. On its
// side nothing is ever acknowledged, and a consistent read is refused;
// the majority elects a leader and takes writes; once the partition
// heals, the old leader follows the new one and all three hold one
// history, with every write the majority acknowledged and none of the
// minority's.
func TestCluster_Partition(t *testing.T) {
	f := newFaults()
	nodes := startClusterWith(t, 3, f)
	lead := leaderOf(t, nodes)
	old := nodes[lead]
	mustApply(t, old.n, registerCmd("before", "api", 8000))
	for _, tn := range nodes {
		waitFor(t, func() bool { _, ok := tn.cat.Instance("before"); return ok }, "the first write everywhere")
	}

	isolate(f, nodes, old)
	cutAt := time.Now()

	// The minority side: writes keep coming, none may be acknowledged.
	var minorityAcked atomic.Int32
	var minorityTried atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			res, err := old.n.Apply(ctx, registerCmd(fmt.Sprintf("minority-%d", i), "api", 8100+i%100))
			cancel()
			minorityTried.Add(1)
			if err == nil && res.Err == nil {
				minorityAcked.Add(1)
				t.Errorf("the cut-off side acknowledged a write at index %d, %v after the cut", res.Index, time.Since(cutAt))
			}
		}
	}()

	// The majority side elects a leader and takes writes through either
	// of its members.
	majority := []*tnode{}
	for _, tn := range nodes {
		if tn != old {
			majority = append(majority, tn)
		}
	}
	newLead := leaderOf(t, majority)
	t.Logf("the majority elected %s %v after the cut", majority[newLead].cfg.NodeID, time.Since(cutAt).Round(time.Millisecond))
	for i := range 10 {
		mustApply(t, majority[i%2].n, registerCmd(fmt.Sprintf("majority-%d", i), "api", 8200+i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if err := old.n.ReadIndex(ctx); err == nil {
		t.Error("the cut-off old leader confirmed a consistent read")
	}
	cancel()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if minorityTried.Load() == 0 {
		t.Fatal("no write was tried on the minority side")
	}

	f.Heal()
	healedAt := time.Now()
	// hashicorp/raft backs off from a peer it failed to reach, for up to
	// about ten seconds after a long partition.
	waitWithin(t, 20*time.Second, func() bool {
		return old.n.Leader() == majority[newLead].n.RaftAddr() && len(old.cat.Instances()) == 11
	}, "the old leader to follow the new one and catch up")
	t.Logf("the old leader caught up %v after the heal; the minority tried %d writes, acknowledged %d",
		time.Since(healedAt).Round(time.Millisecond), minorityTried.Load(), minorityAcked.Load())
	want := old.cat.Snapshot()
	for _, tn := range majority {
		waitFor(t, func() bool { return len(tn.cat.Instances()) == 11 }, "every member to hold the same instances")
		if !snapshotsEqual(t, want, tn.cat.Snapshot()) {
			t.Fatalf("after the heal, %s and %s hold different catalogs", old.cfg.NodeID, tn.cfg.NodeID)
		}
	}
	for _, inst := range old.cat.Instances() {
		if strings.HasPrefix(inst.ID, "minority-") {
			t.Fatalf("a write of the cut-off side, %s, is in the healed history", inst.ID)
		}
	}
}
