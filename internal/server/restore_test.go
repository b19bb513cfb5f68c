package server_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// catalogIDs returns the IDs of s's instances and keys, sorted.
func catalogIDs(s *server.Server) (instances, keys []string) {
	for _, inst := range s.Catalog().Instances() {
		instances = append(instances, inst.ID)
	}
	for _, k := range s.Catalog().Keys() {
		keys = append(keys, k.ID)
	}
	slices.Sort(instances)
	slices.Sort(keys)
	return instances, keys
}

// restoreThrough sends backup to s, and again while the answer is 503: a
// restore whose fate is unknown may be repeated, and with the tests'
// 50 ms Raft timeouts a leader busy restoring can lose its lease.
func restoreThrough(tb testing.TB, s *server.Server, backup []byte) (api.RestoreResponse, error) {
	tb.Helper()
	c := clientOf(tb, s, testserver.ClusterAdminToken)
	deadline := time.Now().Add(10 * time.Second)
	for attempt := 1; ; attempt++ {
		res, err := c.Restore(context.Background(), backup)
		if err == nil || !errors.Is(err, client.ErrUnavailable) || time.Now().After(deadline) {
			return res, err
		}
		tb.Logf("restore, attempt %d: %v; again", attempt, err)
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCluster_RestoreThroughFollower: a backup sent to a follower of a
// cluster of three is forwarded to the leader, which restores it as one
// Raft operation: the follower answers once it holds the snapshot's
// catalog, and every server then holds it (what was made after the save
// is gone everywhere, what was removed is back), at one index above
// every earlier one; writes go on after it, and a follower restarted
// over its data dir (whose log the installed snapshot cut short) comes
// back with all of it. A damaged backup sent to a follower is refused
// there with 400, and no server changes.
func TestCluster_RestoreThroughFollower(t *testing.T) {
	cfgs := make([]server.Config, 3)
	servers := testserver.StartCluster(t, 3, func(i int, c *server.Config) { cfgs[i] = *c })
	lead := testserver.WaitCluster(t, servers)
	f1, f2 := servers[(lead+1)%3], servers[(lead+2)%3]
	ctx := context.Background()
	admin := clientOf(t, f1, testserver.ClusterAdminToken)

	kept, err := admin.CreateKey(ctx, []string{"api"}, "kept")
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, kept.Secret, verify.Proof)
	regA, err := clientOf(t, f2, "").Register(ctx, "api", kept.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "30s"})
	if err != nil {
		t.Fatal(err)
	}
	var backup bytes.Buffer
	saved, err := clientOf(t, f2, testserver.ClusterAdminToken).Snapshot(ctx, &backup)
	if err != nil {
		t.Fatal(err)
	}
	lost, err := admin.CreateKey(ctx, []string{"db"}, "made after the save")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Deregister(ctx, regA.ID, ""); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 5*time.Second, "every server applied the writes after the save", func() bool {
		for _, s := range servers {
			if ids, _ := catalogIDs(s); len(ids) != 0 {
				return false
			}
		}
		return true
	})
	before := servers[lead].Catalog().Index()

	// Damaged: refused by the follower, nothing changes anywhere.
	damaged := bytes.Replace(backup.Bytes(), []byte(`"version":1`), []byte(`"version":9`), 1)
	if _, err := clientOf(t, f2, testserver.ClusterAdminToken).Restore(ctx, damaged); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("a damaged backup through a follower: %v", err)
	}
	for i, s := range servers {
		if _, keys := catalogIDs(s); len(keys) != 2 || s.Catalog().Index() != before {
			t.Fatalf("server %d changed after a refused restore: keys %v, index %d (was %d)", i+1, keys, s.Catalog().Index(), before)
		}
	}

	res, err := restoreThrough(t, f2, backup.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if res.SnapshotIndex != saved || res.Index <= before || res.Instances != 1 || res.Keys != 1 {
		t.Fatalf("restore answered %+v; saved at %d, the cluster was at %d", res, saved, before)
	}
	if got := f2.Catalog().Index(); got < res.Index {
		t.Errorf("the follower answered before it held the restored catalog: index %d < %d", got, res.Index)
	}
	wantInstances, wantKeys := []string{regA.ID}, []string{kept.ID}
	testserver.Eventually(t, 10*time.Second, "every server holds the snapshot's catalog", func() bool {
		for _, s := range servers {
			ids, keys := catalogIDs(s)
			if s.Catalog().Index() != res.Index || !slices.Equal(ids, wantInstances) || !slices.Equal(keys, wantKeys) {
				return false
			}
		}
		return true
	})
	for i, s := range servers {
		look, err := clientOf(t, s, "").Lookup(ctx, "api")
		if err != nil || len(look.Instances) != 1 || look.Instances[0].ID != regA.ID || look.Instances[0].Status != "passing" {
			t.Errorf("server %d looks up %+v, %v", i+1, look.Instances, err)
		}
		if v := s.Catalog().Service("api"); v == nil || v.Index != res.Index {
			t.Errorf("server %d: service api at %+v, want index %d", i+1, v, res.Index)
		}
	}
	if _, err := clientOf(t, f1, "").Register(ctx, "db", lost.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("the key made after the save still registers: %v", err)
	}

	// Writes go on, after the restored index, on every server.
	after, err := admin.CreateKey(ctx, []string{"web"}, "after the restore")
	if err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 5*time.Second, "every server has the key made after the restore", func() bool {
		for _, s := range servers {
			k, ok := s.Catalog().Key(after.ID)
			if !ok || k.CreateIndex <= res.Index {
				return false
			}
		}
		return true
	})

	i1 := (lead + 1) % 3
	if err := f1.Close(); err != nil {
		t.Fatal(err)
	}
	restarted, err := server.New(cfgs[i1])
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.Start(ctx); err != nil {
		t.Fatalf("the follower restarted after the restore: %v", err)
	}
	t.Cleanup(func() { restarted.Close() })
	servers[i1] = restarted
	testserver.WaitCluster(t, servers)
	testserver.Eventually(t, 10*time.Second, "the restarted follower holds the restored catalog and the key after it", func() bool {
		ids, keys := catalogIDs(restarted)
		want := []string{kept.ID, after.ID}
		slices.Sort(want)
		return slices.Equal(ids, wantInstances) && slices.Equal(keys, want)
	})
}

// TestCluster_RestoreUnderWrites: keys are created through a follower and
// through the leader while a backup is restored through the other
// follower. Every key acknowledged before the restore began is gone,
// every key acknowledged after it returned is kept, and every server
// ends with the same keys: no write lands in the catalog being replaced
// and survives, and none is half applied.
func TestCluster_RestoreUnderWrites(t *testing.T) {
	servers := testserver.StartCluster(t, 3, nil)
	lead := testserver.WaitCluster(t, servers)
	f1, f2 := servers[(lead+1)%3], servers[(lead+2)%3]
	ctx := context.Background()
	var backup bytes.Buffer
	if _, err := clientOf(t, f1, testserver.ClusterAdminToken).Snapshot(ctx, &backup); err != nil {
		t.Fatal(err)
	}

	// A write's place against the restore is known only from its
	// interval: one acknowledged before the restore began precedes it,
	// one sent after the restore returned follows it, and one in between
	// may fall either side (its answer can arrive after the restore's,
	// although Raft ordered it before).
	type ack struct {
		id       string
		sent, at time.Time
		fail     bool
	}
	stop := make(chan struct{})
	acks := make(chan ack, 4096)
	done := make(chan struct{})
	writers := []*server.Server{f1, servers[lead]}
	for _, s := range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			c := clientOf(t, s, testserver.ClusterAdminToken)
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent := time.Now()
				k, err := c.CreateKey(ctx, []string{"w"}, "")
				acks <- ack{id: k.ID, sent: sent, at: time.Now(), fail: err != nil}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	began := time.Now()
	res, err := restoreThrough(t, f2, backup.Bytes())
	returned := time.Now()
	if err != nil {
		close(stop)
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	for range writers {
		<-done
	}
	close(acks)

	var want []string
	testserver.Eventually(t, 10*time.Second, "every server holds the same keys", func() bool {
		_, want = catalogIDs(servers[lead])
		for _, s := range servers {
			if _, keys := catalogIDs(s); !slices.Equal(keys, want) {
				return false
			}
		}
		return true
	})
	before, after := 0, 0
	for a := range acks {
		if a.fail {
			continue
		}
		_, present := slices.BinarySearch(want, a.id)
		switch {
		case a.at.Before(began):
			before++
			if present {
				t.Errorf("key %s, acknowledged before the restore began, survived it", a.id)
			}
		case a.sent.After(returned):
			after++
			if !present {
				t.Errorf("key %s, sent after the restore returned and acknowledged, is missing", a.id)
			}
		}
		if present {
			if k, _ := servers[lead].Catalog().Key(a.id); k.CreateIndex <= res.Index {
				t.Errorf("key %s kept at index %d, not after the restore's %d", a.id, k.CreateIndex, res.Index)
			}
		}
	}
	if before == 0 || after == 0 {
		t.Errorf("the writers acknowledged %d keys before the restore and %d after; the test needs both", before, after)
	}
}
