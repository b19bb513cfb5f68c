package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// recorder collects latencies; safe for concurrent use. It keeps every
// sample (8 bytes each: a few MB for the largest workload).
type recorder struct {
	mu sync.Mutex
	d  []time.Duration
}

func newRecorder() *recorder { return &recorder{} }

func (r *recorder) add(d time.Duration) {
	r.mu.Lock()
	r.d = append(r.d, d)
	r.mu.Unlock()
}

// reset forgets every sample.
func (r *recorder) reset() {
	r.mu.Lock()
	r.d = r.d[:0]
	r.mu.Unlock()
}

// quantiles returns the 50th and 99th percentiles in milliseconds, and
// false when there is no sample.
func (r *recorder) quantiles() (p50, p99 float64, ok bool) {
	r.mu.Lock()
	d := slices.Clone(r.d)
	r.mu.Unlock()
	if len(d) == 0 {
		return 0, 0, false
	}
	slices.Sort(d)
	q := func(f float64) float64 { return float64(d[int(f*float64(len(d)-1))].Microseconds()) / 1000 }
	return q(0.50), q(0.99), true
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.d)
}

// meter measures a timed stretch: wall time, the server's CPU and this
// process's (the load generator's) CPU.
type meter struct {
	serverPID int // 0: unknown
	start     time.Time
	srv0      time.Duration
	self0     time.Duration
	srvOK     bool
}

// usage is what a meter measured.
type usage struct {
	wall      time.Duration
	serverCPU time.Duration
	serverOK  bool // serverCPU could be read
	loadCPU   time.Duration
}

func startMeter(serverPID int) *meter {
	m := &meter{serverPID: serverPID, start: time.Now()}
	if serverPID > 0 {
		c, err := ReadCPU(serverPID)
		m.srv0, m.srvOK = c, err == nil
	}
	m.self0, _ = ReadCPU(os.Getpid())
	return m
}

func (m *meter) stop() usage {
	u := usage{wall: time.Since(m.start)}
	if m.srvOK {
		if c, err := ReadCPU(m.serverPID); err == nil {
			u.serverCPU, u.serverOK = c-m.srv0, true
		}
	}
	if c, err := ReadCPU(os.Getpid()); err == nil {
		u.loadCPU = c - m.self0
	}
	return u
}

// hammer runs fn on conc goroutines until d has passed or ctx ends, and
// returns how many calls succeeded and how many failed. fn gets the
// goroutine's number and its call count.
func hammer(ctx context.Context, conc int, d time.Duration, fn func(ctx context.Context, worker, i int) error) (ok, failed int64, firstErr error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	// A call that fails once the deadline has come was cut short by it
	// (its connection's deadline may fire before ctx says so): not a
	// failure.
	deadline, _ := ctx.Deadline()
	var okN, failN atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if err := fn(ctx, w, i); err != nil {
					if ctx.Err() != nil || !time.Now().Before(deadline) {
						return
					}
					failN.Add(1)
					once.Do(func() { firstErr = err })
					continue
				}
				okN.Add(1)
			}
		}()
	}
	wg.Wait()
	return okN.Load(), failN.Load(), firstErr
}

// newHTTPClient keeps enough idle connections for conc workers, and
// trusts what the SDK would (tlsCfg: nil for the system's roots).
func newHTTPClient(conc int, tlsCfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg,
		MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, DisableCompression: true, IdleConnTimeout: time.Minute}}
}

// do sends a request and reads its answer to the end; anything but want
// is an error.
func do(ctx context.Context, hc *http.Client, method, url, token string, want int) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return err
}

// nonce returns a fresh random registration nonce.
func nonce() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
