package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestCluster_GrowUnderLoad: while writes go on through every member, a
// fourth and a fifth server join as voters, a follower dies and is
// removed, and the cluster of four keeps taking writes; afterwards every
// acknowledged write is on every live member, and the configuration
// lists exactly the four.
func TestCluster_GrowUnderLoad(t *testing.T) {
	nodes := startCluster(t, 3)
	var mu sync.Mutex
	live := append([]*tnode(nil), nodes...)
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				tn := live[(w+i)%len(live)]
				mu.Unlock()
				id := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := tn.n.Apply(ctx, registerCmd(id, "api", 10000+w*1000+i%1000))
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	phase := func(name string, from int) int {
		time.Sleep(300 * time.Millisecond)
		n := count()
		if n-from < 5 {
			t.Fatalf("only %d writes were acknowledged %s", n-from, name)
		}
		return n
	}
	mark := phase("before the joins", 0)
	for _, id := range []string{"n4", "n5"} {
		cfg := clusterConfig(t, testSecret("cluster"), "admin")
		cfg.NodeID = id
		cfg.Join = []string{nodes[0].n.RaftAddr(), nodes[1].n.RaftAddr()}
		tn := openNode(t, cfg)
		waitWithin(t, 10*time.Second, func() bool {
			for _, v := range voters(t, nodes[0].n) {
				if v == id {
					return tn.n.hasState()
				}
			}
			return false
		}, id+" to join as a voter")
		mu.Lock()
		live = append(live, tn)
		mu.Unlock()
	}
	if got := len(voters(t, nodes[0].n)); got != 5 {
		t.Fatalf("%d servers after two joined, want 5", got)
	}
	mark = phase("in the cluster of five", mark)

	// A follower dies, and is removed through another member.
	lead := leaderOf(t, nodes)
	dead := nodes[(lead+1)%3]
	mu.Lock()
	for i, tn := range live {
		if tn == dead {
			live = append(live[:i], live[i+1:]...)
			break
		}
	}
	mu.Unlock()
	dead.n.Close()
	if err := live[len(live)-1].n.RemoveMember(context.Background(), dead.cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	phase("after the removal", mark)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for _, tn := range live {
		if got := len(voters(t, tn.n)); got != 4 {
			t.Fatalf("%s lists %d servers, want 4", tn.cfg.NodeID, got)
		}
		waitFor(t, func() bool {
			for _, id := range acked {
				if _, ok := tn.cat.Instance(id); !ok {
					return false
				}
			}
			return true
		}, "every acknowledged write on "+tn.cfg.NodeID)
	}
	t.Logf("%d writes acknowledged while two servers joined and one was removed", len(acked))
}

// TestCluster_Leave: a follower that leaves is removed from the
// configuration; a leader that leaves hands its leadership over first,
// and the remaining two go on taking writes with a leader among them.
func TestCluster_Leave(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := leaderOf(t, nodes)
	ctx := context.Background()
	f := nodes[(lead+1)%3]
	if err := f.n.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	f.n.Close()
	rest := []*tnode{nodes[lead], nodes[(lead+2)%3]}
	waitFor(t, func() bool { return len(voters(t, rest[0].n)) == 2 }, "the follower to be gone from the configuration")

	start := time.Now()
	if err := rest[0].n.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	rest[0].n.Close()
	waitFor(t, func() bool { return rest[1].n.IsReady() }, "the last server to lead")
	t.Logf("the last server led %v after the leader began to leave", time.Since(start).Round(time.Millisecond))
	if got := voters(t, rest[1].n); len(got) != 1 || got[0] != rest[1].cfg.NodeID {
		t.Fatalf("configuration after both left: %v", got)
	}
	mustApply(t, rest[1].n, registerCmd("after", "api", 9000))
	if err := rest[1].n.Leave(ctx); err != nil {
		t.Fatalf("the only voter's Leave: %v (it should stay, and say nothing)", err)
	}
}
