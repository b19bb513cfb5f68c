package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// The cluster's benchmarks: three `muster server` processes on
// 127.0.0.2–4, pinned together to CPU 0 (taskset) while this process, the
// load, runs on CPU 1, on a machine of two or more cores. Each reports
// operations a second and operations per second of the servers' CPU
// (their user and system time together, from /proc), beside what it
// measures of its own. Run:
//
//	go test -run XXX -bench Cluster -benchtime 3s ./cmd/muster
//
// (-benchtime 1x, as scripts/test's smoke run does, checks they work.)

// benchCluster starts the cluster pinned, with extra server flags, and
// says whether it is pinned.
func benchCluster(b *testing.B, extra ...string) ([]*member, bool) {
	b.Helper()
	var wrap []string
	pinned := false
	if _, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() >= 2 {
		if err := exec.Command("taskset", "-a", "-p", "-c", "1", strconv.Itoa(os.Getpid())).Run(); err == nil {
			wrap, pinned = []string{"taskset", "-c", "0"}, true
		}
	}
	// No key's rate or quota may be what the benchmark measures.
	ms := startClusterProcsWrapped(b, 3, wrap, append([]string{"--register-rate", "1000000",
		"--max-instances-per-key", "100000", "--max-instances-per-address", "100000"}, extra...)...)
	leaderOf(b, ms) // settled
	return ms, pinned
}

// serversCPU is the CPU time the members' processes have used.
func serversCPU(b *testing.B, ms []*member) time.Duration {
	var d time.Duration
	for _, m := range ms {
		d += procCPU(b, m.p.cmd.Process.Pid)
	}
	return d
}

// reportOps adds ops/s and ops per server CPU-second.
func reportOps(b *testing.B, ops int, elapsed, cpu time.Duration, pinned bool) {
	b.ReportMetric(float64(ops)/elapsed.Seconds(), "ops/s")
	if cpu > 0 {
		b.ReportMetric(float64(ops)/cpu.Seconds(), "ops/server-cpu-s")
	}
	if !pinned {
		b.Logf("not pinned (taskset missing or one CPU): the servers and the load share the CPUs")
	}
}

// parallel runs fn(i) for i in [0, n) on c goroutines.
func parallel(n, c int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// benchKey creates a key for bench-* through the cluster and an instance
// that answers its callbacks.
func benchKey(b *testing.B, ms []*member) (string, *testutil.Instance) {
	admin, _ := client.New(client.Config{Addr: addrs(ms), Token: clusterAdmin})
	k, err := admin.CreateKey(context.Background(), []string{"bench-*"}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	return k.Secret, testutil.NewInstance(b, k.Secret, verify.Proof)
}

// benchTransport keeps enough idle connections for the concurrency.
func benchTransport() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}, Timeout: 10 * time.Second}
}

// BenchmarkCluster_Lookup: lookups of one service of 10 instances at
// concurrency 16 per server, on all three at once; ops/s is the sum,
// per-node-ops/s the mean per server.
func BenchmarkCluster_Lookup(b *testing.B) {
	ms, pinned := benchCluster(b)
	secret, in := benchKey(b, ms)
	c, _ := client.New(client.Config{Addr: addrs(ms)})
	for i := range 10 {
		if _, err := c.Register(context.Background(), "bench-lookup", secret, api.RegisterRequest{
			Address: "127.0.0.1", Port: in.Port(), TTL: "10m", Tags: []string{strconv.Itoa(i)}}); err != nil {
			b.Fatal(err)
		}
		in = testutil.NewInstance(b, secret, verify.Proof)
	}
	hc := benchTransport()
	time.Sleep(300 * time.Millisecond) // replicated everywhere
	b.ResetTimer()
	cpu0, start := serversCPU(b, ms), time.Now()
	parallel(b.N, 48, func(i int) {
		resp, err := hc.Get("http://" + ms[i%3].httpAddr + "/v1/services/bench-lookup")
		if err != nil {
			b.Error(err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Errorf("lookup on %s: %s", ms[i%3].id, resp.Status)
		}
	})
	elapsed, cpu := time.Since(start), serversCPU(b, ms)-cpu0
	b.StopTimer()
	reportOps(b, b.N, elapsed, cpu, pinned)
	b.ReportMetric(float64(b.N)/elapsed.Seconds()/3, "per-node-ops/s")
}

// BenchmarkCluster_Register: verified registrations at concurrency 16,
// sent to the leader or to a follower (which makes the callback and
// forwards the command).
func BenchmarkCluster_Register(b *testing.B) {
	for _, via := range []string{"leader", "follower"} {
		b.Run(via, func(b *testing.B) {
			ms, pinned := benchCluster(b)
			secret, in := benchKey(b, ms)
			lead := leaderOf(b, ms)
			target := ms[lead]
			if via == "follower" {
				target = ms[(lead+1)%3]
			}
			c, _ := client.New(client.Config{Addr: "http://" + target.httpAddr, HTTPClient: benchTransport()})
			b.ResetTimer()
			cpu0, start := serversCPU(b, ms), time.Now()
			parallel(b.N, 16, func(i int) {
				if _, err := c.Register(context.Background(), "bench-"+strconv.Itoa(i%200), secret, api.RegisterRequest{
					Address: "127.0.0.1", Port: in.Port(), TTL: "10m", Meta: map[string]string{"i": strconv.Itoa(i)}}); err != nil {
					b.Error(err)
				}
			})
			elapsed, cpu := time.Since(start), serversCPU(b, ms)-cpu0
			b.StopTimer()
			reportOps(b, b.N, elapsed, cpu, pinned)
		})
	}
}

// BenchmarkCluster_HeartbeatFollowers: heartbeats of 1,000 instances at
// concurrency 64, all sent to the two followers, which batch them to the
// leader; leader-cpu-us/op is the leader's CPU per heartbeat.
func BenchmarkCluster_HeartbeatFollowers(b *testing.B) {
	ms, pinned := benchCluster(b)
	secret, in := benchKey(b, ms)
	lead := leaderOf(b, ms)
	c, _ := client.New(client.Config{Addr: "http://" + ms[lead].httpAddr})
	type reg struct{ id, token string }
	regs := make([]reg, 1000)
	parallel(len(regs), 16, func(i int) {
		r, err := c.Register(context.Background(), "bench-hb-"+strconv.Itoa(i), secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "10m"})
		if err != nil {
			b.Error(err)
			return
		}
		regs[i].id = r.ID
	})
	for i := range regs {
		regs[i].token = in.TokenOf(regs[i].id)
	}
	followers := []*member{ms[(lead+1)%3], ms[(lead+2)%3]}
	hc := benchTransport()
	time.Sleep(300 * time.Millisecond)
	b.ResetTimer()
	cpu0, lcpu0, start := serversCPU(b, ms), procCPU(b, ms[lead].p.cmd.Process.Pid), time.Now()
	parallel(b.N, 64, func(i int) {
		r := regs[i%len(regs)]
		req, _ := http.NewRequest(http.MethodPut, "http://"+followers[i%2].httpAddr+"/v1/instances/"+r.id+"/heartbeat", nil)
		req.Header.Set("Authorization", "Bearer "+r.token)
		resp, err := hc.Do(req)
		if err != nil {
			b.Error(err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Errorf("heartbeat through %s: %s", followers[i%2].id, resp.Status)
		}
	})
	elapsed, cpu := time.Since(start), serversCPU(b, ms)-cpu0
	lcpu := procCPU(b, ms[lead].p.cmd.Process.Pid) - lcpu0
	b.StopTimer()
	reportOps(b, b.N, elapsed, cpu, pinned)
	b.ReportMetric(float64(lcpu.Microseconds())/float64(b.N), "leader-cpu-us/op")
}

// BenchmarkCluster_Failover: each iteration kills the leader with -9 and
// measures the time to the first acknowledged write through the
// survivors, then starts it again. 50 instances heartbeat through a
// client that knows all three servers throughout; false-expirations
// counts the times any of them was reported critical or expired. With
// Raft's default timeouts (500 ms) and tuned ones (150 ms).
func BenchmarkCluster_Failover(b *testing.B) {
	for _, tc := range []struct{ name, timeout string }{{"default", "500ms"}, {"tuned", "150ms"}} {
		b.Run(tc.name, func(b *testing.B) {
			ms, _ := benchCluster(b, "--raft-heartbeat-timeout", tc.timeout, "--raft-election-timeout", tc.timeout, "--expiry-grace", "2s")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			secret, in := benchKey(b, ms)
			admin, _ := client.New(client.Config{Addr: addrs(ms), Token: clusterAdmin})
			bad := watchExpiries(ctx, admin)
			var wg sync.WaitGroup
			for i := range 50 {
				c, _ := client.New(client.Config{Addr: addrs(ms)})
				r, err := c.Register(ctx, "bench-fo-"+strconv.Itoa(i), secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "3s"})
				if err != nil {
					b.Fatal(err)
				}
				token := in.TokenOf(r.ID)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						time.Sleep(500 * time.Millisecond)
						c.Heartbeat(ctx, r.ID, token)
					}
				}()
			}
			var took []time.Duration
			b.ResetTimer()
			for range b.N {
				lead := leaderOf(b, ms)
				killed := time.Now()
				ms[lead].p.kill9(b)
				for {
					wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
					_, err := admin.CreateKey(wctx, []string{"probe"}, "")
					wcancel()
					if err == nil {
						break
					}
					if time.Since(killed) > 20*time.Second {
						b.Fatal("no write within 20 s of the kill")
					}
					time.Sleep(5 * time.Millisecond)
				}
				took = append(took, time.Since(killed))
				b.StopTimer()
				time.Sleep(3500 * time.Millisecond) // past a TTL: a false expiry would show
				ms[lead].start(b)
				ms[lead].p.waitReady(b, 20*time.Second)
				b.StartTimer()
			}
			b.StopTimer()
			cancel()
			wg.Wait()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "p50-failover-ms")
			b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-failover-ms")
			b.ReportMetric(float64(len(bad.events())), "false-expirations")
			b.Logf("%s timeouts (%s): kill to first acknowledged write %v", tc.name, tc.timeout, fmt.Sprint(took))
		})
	}
}
