package httpapi_test

// Helpers for tests and benchmarks of lookups of large services: a
// registry over a real catalog whose instances are put straight into the
// catalog (no callback, no validation, so any size), an attack of
// concurrent lookups over HTTP, and a sampler of the heap.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/verify"
)

// directProposer applies each command straight to the catalog.
type directProposer struct {
	mu  sync.Mutex
	cat *catalog.Catalog
	idx uint64
}

func (p *directProposer) Apply(_ context.Context, cmd catalog.Command) (catalog.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idx++
	res := p.cat.Apply(p.idx, cmd)
	return res, res.Err
}

func (p *directProposer) Leader() string { return "127.0.0.1:7000" }

// leading is a health.Leadership that has led for an hour.
type leading struct{ since time.Time }

func (l leading) Ready() (<-chan struct{}, time.Time) {
	ch := make(chan struct{})
	close(ch)
	return ch, l.since
}

// labels returns meta entries holding total bytes of keys and values, with
// keys of keyLen bytes and values of at most valLen.
func labels(total, keyLen, valLen int) map[string]string {
	m := map[string]string{}
	for i := 0; total > 0; i++ {
		k := fmt.Sprintf("m%0*d", keyLen-1, i)
		v := strings.Repeat("v", min(valLen, total-len(k)))
		m[k] = v
		total -= len(k) + len(v)
	}
	return m
}

// bigRegistry returns a ready registry holding n passing instances of
// service, never heard from, each with meta of labelBytes bytes (keys of
// 128 bytes, values of 512: the shape of the largest labels the registry
// ever accepted) and the tag t<i%100>, put into the catalog directly.
func bigRegistry(tb testing.TB, service string, n, labelBytes int) *registry.Registry {
	tb.Helper()
	cat := catalog.New()
	p := &directProposer{cat: cat}
	live := health.NewLiveness(health.LivenessConfig{}, health.NewTracker(), leading{time.Now().Add(-time.Hour)}, nil)
	v, err := verify.New(verify.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	reg, err := registry.New(registry.DefaultConfig(), cat, p, live, v)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if _, err := p.Apply(ctx, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k",
		SecretHash: catalog.HashSecret("s"), Services: []string{"*"}}}); err != nil {
		tb.Fatal(err)
	}
	meta := labels(labelBytes, 128, 512)
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("i%05d", i)
		_, err := p.Apply(ctx, catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
			ID: id, Service: service, Address: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Port: 8080, Scheme: "http",
			Tags: []string{fmt.Sprintf("t%d", i%100)}, Meta: meta, TTL: time.Hour, TokenHash: catalog.HashSecret(id), KeyID: "k", Proof: api.ProofAddressPort,
			Status: catalog.StatusPassing, RegisteredAt: now}})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return reg
}

// attackResult counts the answers of an attack.
type attackResult struct {
	ok, busy int
	bytes    int64
}

// attack sends rounds of conc concurrent lookups to url and reads every
// answer to its end, as a client would, without keeping it. An answer is
// either 200 with a whole lookup of at least minBytes, or 503 busy with
// Retry-After; anything else fails the test.
func attack(tb testing.TB, url string, conc, rounds int, minBytes int64) attackResult {
	tb.Helper()
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}, Timeout: 2 * time.Minute}
	defer cl.CloseIdleConnections()
	var (
		mu  sync.Mutex
		res attackResult
	)
	for range rounds {
		var wg sync.WaitGroup
		for range conc {
			wg.Go(func() {
				ok, busy, n, err := lookupOnce(cl, url)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					tb.Error(err)
				case ok && n < minBytes:
					tb.Errorf("lookup answered %d bytes, want at least %d", n, minBytes)
				case ok:
					res.ok++
					res.bytes += n
				case busy:
					res.busy++
				}
			})
		}
		wg.Wait()
	}
	return res
}

// lookupOnce sends one lookup and reads its answer into a counter.
func lookupOnce(cl *http.Client, url string) (ok, busy bool, n int64, err error) {
	resp, err := cl.Get(url)
	if err != nil {
		return false, false, 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		var t tail
		n, err = io.Copy(&t, resp.Body)
		if err != nil {
			return false, false, n, fmt.Errorf("reading a lookup after %d bytes: %w", n, err)
		}
		if string(t.last[:]) != "]}\n" {
			return false, false, n, fmt.Errorf("lookup of %d bytes ends with %q", n, t.last[:])
		}
		return true, false, n, nil
	case http.StatusServiceUnavailable:
		var eb api.ErrorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
			return false, false, 0, err
		}
		if eb.Error.Code != api.CodeBusy || resp.Header.Get("Retry-After") == "" {
			return false, false, 0, fmt.Errorf("503 with code %q and Retry-After %q, want busy and a Retry-After",
				eb.Error.Code, resp.Header.Get("Retry-After"))
		}
		return false, true, 0, nil
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return false, false, 0, fmt.Errorf("lookup: status %d: %s", resp.StatusCode, b)
	}
}

// tail is an io.Writer that keeps only the last three bytes written.
type tail struct{ last [3]byte }

func (t *tail) Write(p []byte) (int, error) {
	if len(p) >= 3 {
		copy(t.last[:], p[len(p)-3:])
	} else {
		k := copy(t.last[:], t.last[len(p):])
		copy(t.last[k:], p)
	}
	return len(p), nil
}

// heapStats is the heap after a full collection.
func heapStats() runtime.MemStats {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// heapSampler records the highest HeapInuse seen until stop.
type heapSampler struct {
	stopc chan struct{}
	done  chan struct{}
	peak  uint64
}

func sampleHeap(every time.Duration) *heapSampler {
	s := &heapSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			s.peak = max(s.peak, ms.HeapInuse)
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak.
func (s *heapSampler) stop() uint64 {
	close(s.stopc)
	<-s.done
	return s.peak
}

// discardWriter is an http.ResponseWriter that keeps nothing of the body.
type discardWriter struct {
	h      http.Header
	status int
	n      int64
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(s int)   { w.status = s }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += int64(len(p))
	return len(p), nil
}
