package testserver

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/cluster"
	"github.com/musterhq/muster/internal/server"
)

// ClusterSecret is the cluster secret of StartCluster's servers.
var ClusterSecret = cluster.Secret(strings.Repeat("test-cluster-secret-", 3))

// ClusterAdminToken is the admin token every StartCluster server shares.
const ClusterAdminToken = "ma_test-cluster-admin-token"

// freeAddr returns 127.0.0.1:port with a port nothing listens on now.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// freeAddrs returns n distinct 127.0.0.1 addresses that nothing listens
// on now.
func freeAddrs(tb testing.TB, n int) []string {
	tb.Helper()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out
}

// ClusterConfig returns the configuration of member i of an n-server test
// cluster whose HTTP addresses are httpAddrs: Config's fast timers, the
// shared secret and admin token, bootstrap-expect n, and the others'
// HTTP addresses to join.
func ClusterConfig(tb testing.TB, i int, httpAddrs []string) server.Config {
	cfg := Config(tb)
	cfg.HTTPAddr = httpAddrs[i]
	cfg.Cluster.RaftAddr = freeAddr(tb)
	cfg.Cluster.NodeID = fmt.Sprintf("n%d", i+1)
	cfg.Cluster.Secret = ClusterSecret
	cfg.Cluster.BootstrapExpect = len(httpAddrs)
	cfg.Cluster.ApplyTimeout = 3 * time.Second
	// Longer than Config's 50 ms: a leader steps down when half of this
	// passes without a majority's answer, which a busy machine running
	// the race detector can make happen in the middle of a test.
	cfg.Cluster.HeartbeatTimeout, cfg.Cluster.ElectionTimeout = 250*time.Millisecond, 250*time.Millisecond
	cfg.AdminToken = ClusterAdminToken
	for j, a := range httpAddrs {
		if j != i {
			cfg.Cluster.Join = append(cfg.Cluster.Join, a)
		}
	}
	return cfg
}

// StartCluster starts n servers at the same moment, each expecting n and
// joining the others, and waits until one leads and every other serves
// reads. mutate, if set, changes member i's configuration. The servers
// are closed when the test ends (Close on one that is already closed does
// nothing).
func StartCluster(tb testing.TB, n int, mutate func(i int, c *server.Config)) []*server.Server {
	tb.Helper()
	// Every address at once, each port held until all are picked: one
	// picked and let go could be picked again for another.
	all := freeAddrs(tb, 2*n)
	addrs, raftAddrs := all[:n], all[n:]
	servers := make([]*server.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range servers {
		cfg := ClusterConfig(tb, i, addrs)
		cfg.Cluster.RaftAddr = raftAddrs[i]
		if mutate != nil {
			mutate(i, &cfg)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := server.New(cfg)
			if err == nil {
				err = s.Start(context.Background())
			}
			servers[i], errs[i] = s, err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tb.Fatalf("server %d: %v", i+1, err)
		}
		tb.Cleanup(func() { servers[i].Close() })
	}
	WaitCluster(tb, servers)
	return servers
}

// WaitCluster waits until exactly one of servers (nil entries skipped)
// is a ready leader and every other serves reads, and returns the
// leader's index.
func WaitCluster(tb testing.TB, servers []*server.Server) int {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		lead, leaders, serving := -1, 0, 0
		for i, s := range servers {
			if s == nil {
				continue
			}
			if s.Node().IsReady() {
				lead, leaders = i, leaders+1
			} else if s.Registry().Ready() == nil {
				serving++
			}
		}
		live := 0
		for _, s := range servers {
			if s != nil {
				live++
			}
		}
		if leaders == 1 && serving == live-1 {
			return lead
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatal("the cluster did not settle on one leader with every other server serving")
	return -1
}
