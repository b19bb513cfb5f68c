package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/testutil"
)

// tnode is one member of an in-process test cluster.
type tnode struct {
	cfg  Config
	n    *Node
	cat  *catalog.Catalog
	logs *testutil.Buffer
}

// clusterConfig is a member's configuration: a fresh data dir, a Raft
// port picked now on 127.0.0.1, fast timeouts, the secret and admin check
// given.
func clusterConfig(tb testing.TB, secret Secret, admin string) Config {
	tb.Helper()
	return clusterConfigOn(tb, "127.0.0.1", secret, admin)
}

// clusterConfigOn is clusterConfig with the Raft port on ip.
func clusterConfigOn(tb testing.TB, ip string, secret Secret, admin string) Config {
	tb.Helper()
	cfg := testConfig(tb, tb.TempDir())
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		tb.Skipf("cannot listen on %s: %v", ip, err)
	}
	cfg.RaftAddr = ln.Addr().String()
	ln.Close()
	// Not testConfig's 50 ms: a leader whose lease (half of this) runs
	// out steps down, and under the race detector on two busy cores a
	// 25 ms lease made the leadership move in the middle of tests.
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 250*time.Millisecond, 250*time.Millisecond
	cfg.Secret = secret
	cfg.Bootstrap = false
	cfg.AdminCheck = hash(admin)
	cfg.ApplyTimeout = 3 * time.Second
	return cfg
}

func openNode(tb testing.TB, cfg Config) *tnode {
	tb.Helper()
	log, buf := logCapture(tb)
	cfg.Logger = log
	cat := catalog.New()
	n, err := Open(cfg, cat)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	return &tnode{cfg: cfg, n: n, cat: cat, logs: buf}
}

// startCluster opens size members at the same moment, each told to
// expect size voters and to join all the others.
func startCluster(tb testing.TB, size int) []*tnode {
	tb.Helper()
	return startClusterWith(tb, size, nil)
}

// startClusterWith is startCluster with member i on 127.0.0.(2+i) and its
// links cut by f (nil: all on 127.0.0.1, no faults), and each member's
// configuration changed by mutate, if given, once its ID is set.
func startClusterWith(tb testing.TB, size int, f *faults, mutate ...func(*Config)) []*tnode {
	tb.Helper()
	secret := testSecret("cluster")
	cfgs := make([]Config, size)
	for i := range cfgs {
		ip := "127.0.0.1"
		if f != nil {
			ip = fmt.Sprintf("127.0.0.%d", i+2)
		}
		cfgs[i] = clusterConfigOn(tb, ip, secret, "admin")
		// A port let go may be picked again: each member's is its own.
		for j := 0; j < i; j++ {
			if cfgs[j].RaftAddr == cfgs[i].RaftAddr {
				cfgs[i] = clusterConfigOn(tb, ip, secret, "admin")
				j = -1
			}
		}
		cfgs[i].NodeID = fmt.Sprintf("n%d", i+1)
		cfgs[i].BootstrapExpect = size
		cfgs[i].faults = f
		for _, m := range mutate {
			m(&cfgs[i])
		}
	}
	for i := range cfgs {
		for j := range cfgs {
			if i != j {
				cfgs[i].Join = append(cfgs[i].Join, cfgs[j].RaftAddr)
			}
		}
	}
	nodes := make([]*tnode, size)
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func() { defer wg.Done(); nodes[i] = openNode(tb, cfgs[i]) }()
	}
	wg.Wait()
	// The enrolment key registerCmd's instances name (again if the
	// leadership moved under the first try).
	key := catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"api", "web"}}}
	for try := 0; ; try++ {
		_, err := nodes[leaderOf(tb, nodes)].n.Apply(context.Background(), key)
		if err == nil || errors.Is(err, catalog.ErrExists) {
			return nodes
		}
		if try == 10 {
			tb.Fatal(err)
		}
	}
}

// leaderOf waits until exactly one of nodes is a ready leader that every
// other live node follows, and returns its index.
func leaderOf(tb testing.TB, nodes []*tnode) int {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		lead := -1
		count := 0
		for i, tn := range nodes {
			if tn != nil && tn.n.IsReady() {
				lead, count = i, count+1
			}
		}
		if count == 1 {
			agreed := true
			for _, tn := range nodes {
				if tn != nil && tn.n.Leader() != nodes[lead].n.RaftAddr() {
					agreed = false
				}
			}
			if agreed {
				return lead
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatal("no single leader emerged")
	return -1
}

func voters(tb testing.TB, n *Node) []string {
	tb.Helper()
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	return ids
}

// TestCluster_FormsOnceAndForwards: three members started at the same
// moment, each expecting three, form exactly one cluster of three voters;
// a write sent to any follower is forwarded to the leader, answered with
// its fate (a catalog error matches its sentinel across the hop), and
// replicated to every member.
func TestCluster_FormsOnceAndForwards(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := leaderOf(t, nodes)
	for _, tn := range nodes {
		waitFor(t, func() bool { return len(voters(t, tn.n)) == 3 }, "three voters in every member's configuration")
	}
	bootstraps := 0
	for _, tn := range nodes {
		bootstraps += strings.Count(tn.logs.String(), "bootstrapped a new cluster")
	}
	if bootstraps != 1 {
		t.Fatalf("%d members bootstrapped a cluster, want exactly 1", bootstraps)
	}
	for i, tn := range nodes {
		if i == lead {
			continue
		}
		res := mustApply(t, tn.n, registerCmd(fmt.Sprintf("via-%d", i), "web", 8000+i))
		if res.Index == 0 {
			t.Fatalf("forwarded write from n%d came back without an index", i+1)
		}
		_, err := tn.n.Apply(context.Background(), catalog.Command{Op: catalog.OpDeregister, ID: "nobody"})
		if !errors.Is(err, catalog.ErrNotFound) {
			t.Fatalf("forwarded deregister of an unknown ID: %v, want catalog.ErrNotFound", err)
		}
	}
	for _, tn := range nodes {
		waitFor(t, func() bool { return len(tn.cat.Instances()) == 2 }, "both forwarded writes on every member")
	}
}

// TestCluster_LeaderFailover: with the leader gone, the two others elect
// one, a write through the survivor follower succeeds, and every write
// acknowledged before the failure is on both survivors.
func TestCluster_LeaderFailover(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := leaderOf(t, nodes)
	for i := range 20 {
		mustApply(t, nodes[(lead+1+i%2)%3].n, registerCmd(fmt.Sprintf("i%d", i), "api", 9000+i))
	}
	nodes[lead].n.Close()
	nodes[lead] = nil
	start := time.Now()
	newLead := leaderOf(t, nodes)
	follower := 3 - lead - newLead
	mustApply(t, nodes[follower].n, registerCmd("after", "api", 9999))
	t.Logf("first write acknowledged %v after the leader stopped", time.Since(start).Round(time.Millisecond))
	for _, i := range []int{newLead, follower} {
		tn := nodes[i]
		waitFor(t, func() bool { return len(tn.cat.Instances()) == 21 }, "every acknowledged write on the survivors")
	}
}

// TestCluster_Membership: a fourth server joins a running cluster through
// any member, Members lists every server with its state, a removed
// member leaves the configuration, and a server whose data dir was
// wiped (a new ID on an old address) is refused until the old one is
// removed: it never forms a second cluster.
func TestCluster_Membership(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := leaderOf(t, nodes)
	mustApply(t, nodes[lead].n, registerCmd("i1", "api", 9001))

	cfg := clusterConfig(t, testSecret("cluster"), "admin")
	cfg.NodeID = "n4"
	cfg.NonVoter = true
	cfg.Join = []string{nodes[(lead+1)%3].n.RaftAddr()}
	n4 := openNode(t, cfg)
	waitFor(t, func() bool { return len(n4.cat.Instances()) == 1 }, "the joined non-voter to replicate the catalog")

	members, err := nodes[(lead+2)%3].n.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, m := range members {
		states[m.ID+"/"+m.Suffrage] = m.State
		if m.State != "unreachable" && m.AppliedIndex == 0 {
			t.Errorf("member %s reported no applied index", m.ID)
		}
	}
	if len(members) != 4 || states["n4/nonvoter"] != "follower" || states[nodes[lead].cfg.NodeID+"/voter"] != "leader" {
		t.Fatalf("members = %+v", members)
	}

	// n4's data dir is wiped: same address, new ID, no state.
	n4.n.Close()
	wiped := cfg
	wiped.DataDir = t.TempDir()
	wiped.NodeID = "n4-again"
	again := openNode(t, wiped)
	waitFor(t, func() bool { return strings.Contains(again.logs.String(), "address_taken") }, "the wiped server to be refused")
	if again.n.hasState() {
		t.Fatal("a wiped server joined under a new ID while its address belonged to a member")
	}
	if err := nodes[(lead+1)%3].n.RemoveMember(context.Background(), "n4"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(again.cat.Instances()) == 1 }, "the wiped server to join once the old member was removed")
	// Another server under a member's ID, on another address (a copied
	// configuration), is refused: it would take the member's place.
	dup := clusterConfig(t, testSecret("cluster"), "admin")
	dup.NodeID = nodes[(lead+1)%3].cfg.NodeID
	dup.Join = []string{nodes[lead].n.RaftAddr()}
	d := openNode(t, dup)
	waitFor(t, func() bool { return strings.Contains(d.logs.String(), "id_taken") }, "a server under a member's ID to be refused")
	for _, s := range nodes[lead].n.raft.GetConfiguration().Configuration().Servers {
		if string(s.ID) == dup.NodeID && string(s.Address) != nodes[(lead+1)%3].n.RaftAddr() {
			t.Fatalf("a server under %s's ID moved it to %s", dup.NodeID, s.Address)
		}
	}
	if err := nodes[lead].n.RemoveMember(context.Background(), "nobody"); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("removing an unknown member: %v", err)
	}
}

// TestCluster_StrangersRefused: a server with another cluster secret, or
// with another admin token, is refused by the members, says so in its
// log, and never receives the cluster's state.
func TestCluster_StrangersRefused(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := leaderOf(t, nodes)
	mustApply(t, nodes[lead].n, registerCmd("i1", "api", 9001))
	for _, tc := range []struct {
		name, secret, admin, want string
	}{
		{"other secret", "intruder", "admin", "same cluster secret"},
		{"other admin token", "cluster", "other-admin", "admin token differs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clusterConfig(t, testSecret(tc.secret), tc.admin)
			cfg.Join = []string{nodes[lead].n.RaftAddr()}
			x := openNode(t, cfg)
			waitFor(t, func() bool { return strings.Contains(x.logs.String(), tc.want) }, "the stranger to be told why")
			time.Sleep(300 * time.Millisecond)
			if x.n.hasState() || len(x.cat.Instances()) != 0 {
				t.Fatal("a stranger received the cluster's state")
			}
			if got := len(voters(t, nodes[lead].n)); got != 3 {
				t.Fatalf("the cluster has %d servers after a stranger knocked", got)
			}
		})
	}
	refused := false
	for _, tn := range nodes {
		refused = refused || strings.Contains(tn.logs.String(), "refused")
	}
	if !refused {
		t.Fatal("no member logged a refusal")
	}
}

// TestCluster_ReadIndex: a consistent read, on the leader or a follower,
// sees every write acknowledged before it.
func TestCluster_ReadIndex(t *testing.T) {
	nodes := startCluster(t, 3)
	lead := leaderOf(t, nodes)
	ctx := context.Background()
	if err := nodes[lead].n.ReadIndex(ctx); err != nil {
		t.Fatalf("leader: %v", err)
	}
	// A write through one follower is seen by a consistent read on the
	// other as soon as ReadIndex returns.
	for i := range 20 {
		mustApply(t, nodes[(lead+1)%3].n, registerCmd(fmt.Sprintf("r%d", i), "api", 7000+i))
		other := nodes[(lead+2)%3]
		if err := other.n.ReadIndex(ctx); err != nil {
			t.Fatalf("follower: %v", err)
		}
		if _, ok := other.cat.Instance(fmt.Sprintf("r%d", i)); !ok {
			t.Fatalf("write %d acknowledged through one follower is missing from another's consistent read", i)
		}
	}
	r := nodes[(lead+1)%3].n.Replica()
	if r.Leader || r.LeaderAddr != nodes[lead].n.RaftAddr() || r.LastContact.IsZero() {
		t.Fatalf("follower replica state %+v", r)
	}
}

// TestCluster_DuplicateIDNeverBootstrapsTwice: four servers expecting
// three, two of them given the same ID (a copied --config), all started
// at once. At most one cluster is bootstrapped (promises bind a
// coordinator by ID and Raft address, so the two cannot both gather
// them), and a server that meets another answering with its own ID says
// so, naming both addresses, and neither bootstraps nor joins.
func TestCluster_DuplicateIDNeverBootstrapsTwice(t *testing.T) {
	secret := testSecret("cluster")
	ids := []string{"a", "a", "b", "c"}
	cfgs := make([]Config, len(ids))
	for i := range cfgs {
		cfgs[i] = clusterConfig(t, secret, "admin")
		cfgs[i].NodeID = ids[i]
		cfgs[i].BootstrapExpect = 3
	}
	for i := range cfgs {
		for j := range cfgs {
			if i != j {
				cfgs[i].Join = append(cfgs[i].Join, cfgs[j].RaftAddr)
			}
		}
	}
	nodes := make([]*tnode, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func() { defer wg.Done(); nodes[i] = openNode(t, cfgs[i]) }()
	}
	wg.Wait()
	a1, a2 := nodes[0], nodes[1]
	said := func() bool {
		for _, tn := range []*tnode{a1, a2} {
			for _, line := range strings.Split(tn.logs.String(), "\n") {
				if strings.Contains(line, "same --node-id") && strings.Contains(line, a1.n.RaftAddr()) && strings.Contains(line, a2.n.RaftAddr()) {
					return true
				}
			}
		}
		return false
	}
	time.Sleep(5 * time.Second) // time enough to bootstrap, twice were it possible
	boots := 0
	for _, tn := range nodes {
		boots += strings.Count(tn.logs.String(), "bootstrapped a new cluster")
	}
	if boots > 1 {
		t.Fatalf("%d servers bootstrapped a cluster", boots)
	}
	if a1.n.hasState() && a2.n.hasState() {
		t.Fatal("both servers with the same ID hold Raft state")
	}
	if !said() {
		t.Fatal("no server with the duplicate ID said so, naming both addresses")
	}
}

// TestCluster_OtherAdminTokenRefusedOnEveryRoute: a member with another
// admin token is refused on a route another package added with
// HandleRPC (the relay's heartbeats), as on the cluster's own, with
// admin_mismatch; the handler never runs, and the member refused says
// why. A member with the same admin token reaches it.
func TestCluster_OtherAdminTokenRefusedOnEveryRoute(t *testing.T) {
	secret := testSecret("cluster")
	c1 := clusterConfig(t, secret, "admin")
	c1.NodeID = "n1"
	n1 := openNode(t, c1)
	var calls atomic.Int32
	n1.n.HandleRPC("POST /relay/beats", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		WriteRPC(w, struct{}{})
	}))
	c2 := clusterConfig(t, secret, "another admin token")
	c2.NodeID = "n2"
	other := openNode(t, c2)
	c3 := clusterConfig(t, secret, "admin")
	c3.NodeID = "n3"
	same := openNode(t, c3)
	ctx := context.Background()

	for _, path := range []string{"/relay/beats", "/cluster/hello"} {
		err := other.n.Call(ctx, n1.n.RaftAddr(), path, helloRequest{Self: other.n.self()}, nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != "admin_mismatch" {
			t.Fatalf("%s from a member with another admin token: %v, want admin_mismatch", path, err)
		}
	}
	if calls.Load() != 0 {
		t.Fatal("the HandleRPC route ran for a member with another admin token")
	}
	waitFor(t, func() bool { return strings.Contains(n1.logs.String(), "admin token differs") }, "the member to log why it refused")
	if err := same.n.Call(ctx, n1.n.RaftAddr(), "/relay/beats", struct{}{}, nil); err != nil {
		t.Fatalf("a member with the same admin token: %v", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("the route ran %d times, want 1", calls.Load())
	}
}

// TestCluster_RPCBodiesAreBounded: the cluster's own RPC routes refuse a
// body beyond rpcMaxBody (16 MiB), as HandleRPC's routes do, rather than
// read it all.
func TestCluster_RPCBodiesAreBounded(t *testing.T) {
	secret := testSecret("cluster")
	c1 := clusterConfig(t, secret, "admin")
	n1 := openNode(t, c1)
	n2 := openNode(t, clusterConfig(t, secret, "admin"))
	big := helloRequest{Self: Peer{ID: strings.Repeat("x", rpcMaxBody+1), RaftAddr: "127.0.0.1:1"}}
	// Sending and refusing 16 MiB is slow under the race detector.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := n2.n.Call(ctx, n1.n.RaftAddr(), "/cluster/hello", big, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != "bad_request" {
		t.Fatalf("a hello of %d bytes: %v, want bad_request", rpcMaxBody+1, err)
	}
	if _, ok := n1.n.peer(big.Self.ID); ok {
		t.Fatal("the oversized hello was taken")
	}
}
