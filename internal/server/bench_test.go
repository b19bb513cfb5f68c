package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// benchSetup registers n instances of "bench" and returns the harness, one
// instance ID and its session token.
func benchSetup(b *testing.B, n int) (*harness, string, string) {
	b.Helper()
	h := start(b, nil)
	k := h.Key(b, "bench")
	ctx := context.Background()
	var id, tok string
	for i := 0; i < n; i++ {
		inst := testutil.NewInstance(b, k.Secret, verify.Proof)
		reg, err := h.Anon.Register(ctx, "bench", k.Secret, api.RegisterRequest{
			Address: "127.0.0.1", Port: inst.Port(), TTL: "1h", Tags: []string{"v1"}, Meta: map[string]string{"zone": fmt.Sprint(i % 3)}})
		if err != nil {
			b.Fatal(err)
		}
		call, _ := inst.LastCall()
		id, tok = reg.ID, call.Token
	}
	return h, id, tok
}

// BenchmarkLookup_Handler measures the server side of a lookup of a
// 10-instance service: routing, filtering, freshness, JSON encoding.
func BenchmarkLookup_Handler(b *testing.B) {
	h, _, _ := benchSetup(b, 10)
	handler := h.Srv.Handler()
	req := httptest.NewRequest(http.MethodGet, "/v1/services/bench?tag=v1", nil)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkHeartbeat_Handler measures the server side of a heartbeat: token
// check and tracker update, no Raft write.
func BenchmarkHeartbeat_Handler(b *testing.B) {
	h, id, tok := benchSetup(b, 1)
	handler := h.Srv.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodPut, "/v1/instances/"+id+"/heartbeat", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		for pb.Next() {
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkLookup_Loopback measures a whole lookup over loopback HTTP with
// keep-alive connections.
func BenchmarkLookup_Loopback(b *testing.B) {
	h, _, _ := benchSetup(b, 10)
	url := h.Srv.URL() + "/v1/services/bench"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// BenchmarkRegister_Loopback measures a verified registration: callback,
// Raft commit with fsync, answer.
func BenchmarkRegister_Loopback(b *testing.B) {
	h := start(b, nil)
	k := h.Key(b, "bench")
	inst := testutil.NewInstance(b, k.Secret, verify.Proof)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Anon.Register(ctx, "bench", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBlockingQueries_Idle holds 10,000 blocking lookups of one
// service open on the handler (no sockets: the cost measured is the
// registry's and the handler's, not the kernel's), measures the process's
// CPU while they wait and the heap they hold, then registers one instance
// and measures how long until every one of them has answered. Figures:
// base-cpu-ms/s (CPU milliseconds per second, the process idle with no
// waiter), idle-cpu-ms/s (the same with the waiters held), heap-B/waiter
// and stack-B/waiter (their goroutines' stacks), wake-all-ms. Run it with
//
//	go test -run xxx -bench BlockingQueries -benchtime 1x ./internal/server/
func BenchmarkBlockingQueries_Idle(b *testing.B) {
	const waiters = 10000
	// Every waiter comes from one address here: lift the bound per client.
	// (and keep the bounds within the limit of open files, which the
	// server would otherwise lower them to fit).
	h := start(b, func(c *server.Config) {
		c.Registry.MaxWaiters, c.Registry.MaxWaitersPerClient, c.Registry.MaxStreams, c.Registry.MaxStreamsPerClient = waiters, waiters, 1, 1
	})
	k := h.Key(b, "bench")
	handler := h.Srv.Handler()
	ctx := context.Background()
	resp, err := http.Get(h.Srv.URL() + "/v1/services/bench")
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	index := resp.Header.Get(api.HeaderIndex)
	const idle = 3 * time.Second
	for range b.N {
		base0 := processCPU() // the process idle, with no waiter
		time.Sleep(idle)
		base := processCPU() - base0
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var wg sync.WaitGroup
		var answered atomic.Int64
		for range waiters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := httptest.NewRecorder()
				handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/services/bench?index="+index+"&wait=10m", nil))
				if w.Code == 200 {
					answered.Add(1)
				}
			}()
		}
		for deadline := time.Now().Add(time.Minute); h.Srv.Registry().Waiters() < waiters; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d queries are waiting", h.Srv.Registry().Waiters(), waiters)
			}
		}
		runtime.GC()
		var held runtime.MemStats
		runtime.ReadMemStats(&held)
		cpu0 := processCPU()
		time.Sleep(idle)
		cpu := processCPU() - cpu0

		inst := testutil.NewInstance(b, k.Secret, verify.Proof)
		woke := time.Now()
		if _, err := h.Anon.Register(ctx, "bench", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}); err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		wake := time.Since(woke)
		if answered.Load() != waiters {
			b.Fatalf("%d of %d waiters answered 200", answered.Load(), waiters)
		}
		b.ReportMetric(float64(base.Milliseconds())/idle.Seconds(), "base-cpu-ms/s")
		b.ReportMetric(float64(cpu.Milliseconds())/idle.Seconds(), "idle-cpu-ms/s")
		b.ReportMetric(float64(held.HeapInuse-before.HeapInuse)/waiters, "heap-B/waiter")
		b.ReportMetric(float64(held.StackInuse-before.StackInuse)/waiters, "stack-B/waiter")
		b.ReportMetric(float64(wake.Microseconds())/1000, "wake-all-ms")
		index = strconv.FormatUint(h.Srv.Catalog().Index(), 10)
	}
}

// processCPU returns the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSweep_MassExpiry measures how fast the leader commits a mass
// of deaths: 10,000 instances with a TTL of 5 s fall silent together
// (registered straight through the log, with no heartbeat after), mass-
// expiry protection off, and the figure is the time from the moment
// their TTLs ran out until every one is committed critical
// (commit-all-ms), with the real Raft log fsynced on this machine's disk.
func BenchmarkSweep_MassExpiry(b *testing.B) {
	const n, ttl = 10000, 5 * time.Second
	b.StopTimer()
	for range b.N {
		s := testserver.Start(b, func(c *server.Config) {
			c.Liveness.Protection.Enabled = false
			c.Sweep.Interval = 250 * time.Millisecond
		})
		if _, err := s.Node().Apply(context.Background(), catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{
			ID: "kb", SecretHash: catalog.HashSecret("kb"), Services: []string{"*"}, MaxInstances: 2 * n}}); err != nil {
			b.Fatal(err)
		}
		reg := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 64 {
					id := fmt.Sprintf("%032x", i)
					_, err := s.Node().Apply(context.Background(), catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
						ID: id, Service: fmt.Sprintf("svc-%d", i%100), Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250), Port: 8080,
						Scheme: "http", TTL: ttl, DeregisterAfter: time.Hour, TokenHash: catalog.HashSecret(id), KeyID: "kb",
						Status: catalog.StatusPassing, RegisteredAt: reg.UTC()}})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		if time.Since(reg) > ttl {
			b.Fatalf("registering took %v, longer than the TTL", time.Since(reg))
		}
		due := reg.Add(ttl)
		b.StartTimer()
		for {
			critical := 0
			for _, in := range s.Catalog().Instances() {
				if in.Status == catalog.StatusCritical {
					critical++
				}
			}
			if critical == n {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		b.StopTimer()
		b.ReportMetric(float64(time.Since(due).Milliseconds()), "commit-all-ms")
		s.Close()
	}
}
