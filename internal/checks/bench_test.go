//go:build unix

package checks

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
)

// benchServersEnv, when set in the environment to a number n, makes the
// test binary serve HTTP health endpoints on n ports instead of running
// tests (TestMain): the benchmark's instances live in a process of their
// own, so that the benchmark's CPU figures are the Monitor's alone.
const benchServersEnv = "MUSTER_CHECKS_BENCH_SERVERS"

func TestMain(m *testing.M) {
	if n, err := strconv.Atoi(os.Getenv(benchServersEnv)); err == nil {
		os.Exit(benchServers(n, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// benchServers listens on n ports of 127.0.0.1, writes them on one line,
// and answers GET /health with 200 "ok". Each line read from in is
// answered with the number of requests served so far; it returns when in
// ends.
func benchServers(n int, in io.Reader, out io.Writer) int {
	var served atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.WriteString(w, "ok")
	})
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
	}
	fmt.Fprintln(out, strings.Join(ports, " "))
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		fmt.Fprintln(out, served.Load())
	}
	return 0
}

// BenchmarkChecks_HTTP10k runs 10,000 instances' HTTP checks, every 10s
// each (the load), against real HTTP servers in a child process,
// and reports the Monitor's share of a CPU (CPU seconds of this process
// per wall second, from getrusage), the probes per second the servers
// answered, and the servers' own CPU share. It skips the first interval,
// over which the first probes are spread, and measures a window of
// MUSTER_CHECKS_BENCH_SECONDS (default 10) after it; the run is one pass
// whatever b.N.
//
//	go test -run '^$' -bench BenchmarkChecks_HTTP10k -benchtime 1x ./internal/checks/
//
// On the 2-core development machine (Go 1.26.8, linux/amd64, no -race;
// the machine shared with other work, so figures vary by a quarter),
// three runs of a 10s window:
//
//	BenchmarkChecks_HTTP10k-2  1  20.0e9 ns/op  0.350 cpu-s/s  0.197 sys-cpu-s/s  999.9 probes/s  0.232 server-cpu-s/s  9.8 heap-MiB
//	BenchmarkChecks_HTTP10k-2  1  20.0e9 ns/op  0.273 cpu-s/s  0.147 sys-cpu-s/s   1000 probes/s  0.207 server-cpu-s/s  8.7 heap-MiB
//	BenchmarkChecks_HTTP10k-2  1  20.0e9 ns/op  0.277 cpu-s/s  0.156 sys-cpu-s/s  999.9 probes/s  0.188 server-cpu-s/s  9.9 heap-MiB
//
// That is 27-35% of one core for 1,000 probes a second, 270-350µs of CPU
// a probe, of which more than half is the kernel's: each probe is a new
// TCP connection (socket, connect, write, read, close), and on loopback
// the connecting process also pays for much of the handshake's receive
// side. A profile puts connect, close and socket at about a third of all
// samples; the Monitor's own work (heap, locks, scheduling) is under 5%.
func BenchmarkChecks_HTTP10k(b *testing.B) {
	const targets = 10_000
	interval := 10 * time.Second
	window := 10 * time.Second
	if s, err := strconv.Atoi(os.Getenv("MUSTER_CHECKS_BENCH_SECONDS")); err == nil && s > 0 {
		window = time.Duration(s) * time.Second
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServersEnv+"=8")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	served := func() int64 {
		b.Helper()
		if _, err := io.WriteString(stdin, "\n"); err != nil || !lines.Scan() {
			b.Fatalf("the servers' process: %v %v", err, lines.Err())
		}
		n, err := strconv.ParseInt(lines.Text(), 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	if !lines.Scan() {
		b.Fatalf("the servers' process wrote no ports: %v", lines.Err())
	}
	var ports []int
	for _, f := range strings.Fields(lines.Text()) {
		p, _ := strconv.Atoi(f)
		ports = append(ports, p)
	}

	m, err := NewMonitor(DefaultConfig(), guard(b))
	if err != nil {
		b.Fatal(err)
	}
	check, err := FromDecl(api.CheckDecl{Type: api.CheckHTTP, Path: "/health", Interval: interval.String()})
	if err != nil {
		b.Fatal(err)
	}
	for i := range targets {
		t := Target{ID: "i" + strconv.Itoa(i), Address: "127.0.0.1", Port: ports[i%len(ports)], Checks: []Check{check}}
		if err := m.Set(t); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	b.ResetTimer()
	time.Sleep(interval)
	user0, sys0 := cpuTime(b)
	n0, t0 := served(), time.Now()
	time.Sleep(window)
	user1, sys1 := cpuTime(b)
	n1, t1 := served(), time.Now()
	b.StopTimer()

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	critical := 0
	for i := range targets {
		if p, _ := m.Passing("i" + strconv.Itoa(i)); !p {
			critical++
		}
	}
	cancel()
	<-done
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatal(err)
	}
	if critical > 0 {
		b.Errorf("%d of %d instances critical", critical, targets)
	}
	wall := t1.Sub(t0).Seconds()
	b.ReportMetric((user1-user0+sys1-sys0).Seconds()/wall, "cpu-s/s")
	b.ReportMetric((sys1-sys0).Seconds()/wall, "sys-cpu-s/s")
	b.ReportMetric(float64(n1-n0)/wall, "probes/s")
	b.ReportMetric(childCPU(cmd).Seconds()/t1.Sub(t0.Add(-interval)).Seconds(), "server-cpu-s/s")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
}

// cpuTime returns the user and system CPU time of this process.
func cpuTime(tb testing.TB) (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// childCPU returns the user and system CPU time of the exited cmd.
func childCPU(cmd *exec.Cmd) time.Duration {
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// BenchmarkProber_http is the cost of one HTTP probe, client and server
// (in this process) together: a new connection, a GET and its answer.
//
// On the development machine: about 155-160µs, 15 KB and 101
// allocations a probe. Through a single-use http.Transport, as first
// written, it was 160-170µs, 19 KB and 143 allocations (two more
// goroutines a probe), and BenchmarkChecks_HTTP10k's user CPU about a
// fifth higher.
func BenchmarkProber_http(b *testing.B) {
	addr, port := serveHTTP(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p := newProber(guard(b), nil)
	c := httpCheck("/health", time.Second, time.Second)
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if r := p.probe(ctx, Target{Address: addr, Port: port}, c); !r.ok {
			b.Fatal(r.output)
		}
		cancel()
	}
}
