//go:build unix

package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/cluster"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// processCPU is the process's user plus system CPU time.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// proofListener answers callbacks on 127.0.0.1 with the proof under
// secret, as an instance (or a host's agent proving it) does; it returns
// its port.
func proofListener(tb testing.TB, secret string) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req api.VerifyRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		body, _ := json.Marshal(api.VerifyResponse{Proof: verify.Proof(secret, req.Challenge), Nonce: req.Nonce})
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// BenchmarkRegistry_Register measures verified registrations as the
// server makes them, without HTTP in front: the enrolment key checked,
// the callback to an instance answering in this process (over
// loopback), and the commit through a real single-voter Raft node with
// its fsynced log in a temp dir, 64 at once over two keys, 100 instances
// to a service (the bulk load's shape). Figures: regs/s, and cpu-us/op,
// the process's CPU per registration (the instance's answers included).
// Run it with
//
//	go test -run xxx -bench Registry_Register -benchtime 20000x ./internal/registry/
func BenchmarkRegistry_Register(b *testing.B) {
	cfg := cluster.DefaultConfig()
	cfg.DataDir = b.TempDir()
	cfg.Logger = testutil.Logger(b)
	cfg.Bootstrap = true
	cat := catalog.New()
	node, err := cluster.Open(cfg, cat)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { node.Close() })
	ready, _ := node.Ready()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		b.Fatal("the node did not become a ready leader")
	}
	live := health.NewLiveness(health.LivenessConfig{}, health.NewTracker(), node, nil)
	v, err := verify.New(verify.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	rcfg := registry.DefaultConfig()
	rcfg.AdminTokenHash = catalog.HashSecret(adminToken)
	rcfg.RegisterBurst, rcfg.MaxInstancesPerKey, rcfg.MaxInstancesPerAddress = 1_000_000, registry.MaxKeyInstances, 1_000_000
	reg, err := registry.New(rcfg, cat, node, live, v)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { reg.Close() })
	type key struct {
		adm  func(service string) registry.Admission
		port int
	}
	var keys []key
	for range 2 {
		_, secret, err := reg.CreateKey(context.Background(), adminToken, registry.KeySpec{Services: []string{"bench-*"}, MaxInstances: registry.MaxKeyInstances})
		if err != nil {
			b.Fatal(err)
		}
		keys = append(keys, key{port: proofListener(b, secret), adm: func(service string) registry.Admission {
			a, err := reg.AdmitKey(context.Background(), secret, service)
			if err != nil {
				b.Fatal(err)
			}
			return a
		}})
	}
	const conc = 64
	var next, workers atomic.Int64
	b.SetParallelism(max(1, conc/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	cpu0, start := processCPU(b), time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		k := keys[workers.Add(1)%2] // half the workers on each key, as the load's are
		for pb.Next() {
			i := next.Add(1) - 1
			service := fmt.Sprintf("bench-%05d", i/100)
			req := api.RegisterRequest{Address: "127.0.0.1", Port: 10000 + int(i%100), VerifyPort: k.port, TTL: "1h"}
			if _, err := reg.Register(context.Background(), k.adm(service), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	elapsed, cpu := time.Since(start), processCPU(b)-cpu0
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "regs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
}
