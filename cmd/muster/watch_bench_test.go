package main

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/bench"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// BenchmarkWatch_FanOut: 1,000 event streams watch one service of a
// `muster server` process; each iteration registers one instance (the
// real verification callback included) and measures, for every watcher,
// the time from sending the registration to reading its event. It reports
// the 50th and 99th percentiles and the slowest over all iterations (the
// registration's callback and commit included), the 99th percentile
// counted from the registration's 201 instead, and the server's CPU per
// registration fanned out.
//
// On a machine with two or more cores the server is pinned to CPU 0
// (taskset) and this process (the watchers and the registering client)
// to CPU 1, so that the figures are the server's own. Run:
//
//	go test -run xxx -bench Watch_FanOut -benchtime 50x ./cmd/muster/
//
// MUSTER_BENCH_WATCHERS changes the number of watchers.
func BenchmarkWatch_FanOut(b *testing.B) {
	watchers := 1000
	if n, err := strconv.Atoi(os.Getenv("MUSTER_BENCH_WATCHERS")); err == nil && n > 0 {
		watchers = n
	}
	dir := b.TempDir()
	args := []string{binary, "server", "--http-addr", "127.0.0.1:0", "--data-dir", dir, "--log-format", "json"}
	pinned := false
	if _, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() >= 2 {
		args = append([]string{"taskset", "-c", "0"}, args...)
		if err := exec.Command("taskset", "-a", "-p", "-c", "1", strconv.Itoa(os.Getpid())).Run(); err == nil {
			pinned = true
		}
	}
	p := startProcCmd(b, exec.Command(args[0], args[1:]...))
	ctx := context.Background()
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(b, dir)})
	key, err := admin.CreateKey(ctx, []string{"bench"}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	in := testutil.NewInstance(b, key.Secret, verify.Proof)

	// Every watcher reports the time it read each registered event's id.
	w, err := bench.OpenWatchers(ctx, p.url, "bench", watchers, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Close)

	var lat, since201 []time.Duration
	cpu0 := procCPU(b, p.cmd.Process.Pid)
	b.ResetTimer()
	for i := range b.N {
		sent := time.Now()
		res, err := admin.Register(ctx, "bench", key.Secret, api.RegisterRequest{
			Address: "127.0.0.1", Port: 20000 + i, VerifyPort: in.Port(), TTL: "1h"})
		if err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		id := strconv.FormatUint(res.Index, 10)
		for got := 0; got < watchers; {
			select {
			case a := <-w.Arrivals:
				if a.ID != id {
					b.Fatalf("event %s arrived while waiting for %s", a.ID, id)
				}
				lat = append(lat, a.At.Sub(sent))
				since201 = append(since201, max(0, a.At.Sub(acked))) // some read it before the 201
				got++
			case <-time.After(30 * time.Second):
				b.Fatalf("%d of %d watchers had event %s after 30 s", got, watchers, id)
			}
		}
	}
	b.StopTimer()
	cpu := procCPU(b, p.cmd.Process.Pid) - cpu0
	slices.Sort(lat)
	slices.Sort(since201)
	pct := func(l []time.Duration, q float64) float64 {
		return float64(l[int(q*float64(len(l)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(pct(lat, 1), "max-ms")
	b.ReportMetric(pct(since201, 0.99), "p99-after-201-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "server-cpu-ms/op")
	if !pinned {
		b.Logf("not pinned (taskset missing or one CPU): figures include the watchers' own CPU")
	}
	b.Logf("%d watchers, %d registrations", watchers, b.N)
}

// procCPU returns the CPU time (user and system) process pid has used,
// read from /proc by the benchmark suite's reader (Linux); the benchmark
// skips elsewhere.
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	d, err := bench.ReadCPU(pid)
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	return d
}
