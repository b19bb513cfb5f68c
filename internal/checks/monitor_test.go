package checks

import (
	"container/heap"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/musterhq/muster/api"
)

// newTestMonitor returns a Monitor that accepts intervals down to 10ms,
// probing through the default allowlist, and runs it until the test ends.
func newTestMonitor(tb testing.TB, concurrency int, targets ...Target) *Monitor {
	tb.Helper()
	m, err := NewMonitor(Config{Concurrency: concurrency, MinInterval: 10 * time.Millisecond}, guard(tb))
	if err != nil {
		tb.Fatal(err)
	}
	for _, t := range targets {
		if err := m.Set(t); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			tb.Errorf("Run = %v", err)
		}
	})
	return m
}

// flaky is an HTTP health endpoint whose answers a test scripts: it fails
// the next Fail requests (all of them if Fail < 0) with 503, and answers
// the others 200. It counts both.
type flaky struct {
	mu        sync.Mutex
	fail      int
	failed    int
	succeeded int
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	bad := f.fail != 0
	if f.fail > 0 {
		f.fail--
	}
	if bad {
		f.failed++
	} else {
		f.succeeded++
	}
	f.mu.Unlock()
	if bad {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "down")
		return
	}
	io.WriteString(w, "ok")
}

// script sets the failures to come and returns the counts so far.
func (f *flaky) script(fail int) (failed, succeeded int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
	return f.failed, f.succeeded
}

func (f *flaky) counts() (failed, succeeded int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed, f.succeeded
}

// waitChange waits for a value on m.Changes and returns Pending.
func waitChange(tb testing.TB, m *Monitor) []Transition {
	tb.Helper()
	select {
	case <-m.Changes():
		return m.Pending()
	case <-time.After(10 * time.Second):
		tb.Fatal("no change within 10s")
		return nil
	}
}

func noChange(tb testing.TB, m *Monitor) {
	tb.Helper()
	select {
	case <-m.Changes():
		tb.Fatalf("unexpected change: pending %v", m.Pending())
	default:
	}
	if p := m.Pending(); len(p) != 0 {
		tb.Fatalf("pending %v", p)
	}
}

func state(tb testing.TB, m *Monitor, id string) api.CheckState {
	tb.Helper()
	s := m.States(id)
	if len(s) != 1 {
		tb.Fatalf("States(%s) = %v", id, s)
	}
	return s[0]
}

// TestMonitor_thresholds: one or two failures do not change an instance's
// status, three do; two successes bring it back; and a transition stays
// pending until it is acknowledged. (TestCheck_step has the successes a
// failure resets.)
func TestMonitor_thresholds(t *testing.T) {
	f := &flaky{}
	addr, port := serveHTTP(t, f)
	const iv = 50 * time.Millisecond
	m := newTestMonitor(t, 4, Target{ID: "i1", Address: addr, Port: port, Checks: []Check{httpCheck("/healthz", iv, iv)}})
	if s := state(t, m, "i1"); s.Status != api.StatusPassing || s.LastRunMS != -1 || s.Type != api.CheckHTTP {
		t.Fatalf("before the first probe: %+v", s)
	}
	waitFor(t, 5*time.Second, "two successes", func() bool { _, s := f.counts(); return s >= 2 })
	if s := state(t, m, "i1"); s.Status != api.StatusPassing || s.Output != "HTTP 200 OK" || s.LastRunMS < 0 {
		t.Fatalf("after successes: %+v", s)
	}

	for _, n := range []int{1, 2} {
		failed0, ok0 := f.script(n)
		waitFor(t, 5*time.Second, "failures then two successes", func() bool {
			failed, ok := f.counts()
			return failed == failed0+n && ok >= ok0+2
		})
		noChange(t, m)
		if s := state(t, m, "i1"); s.Status != api.StatusPassing {
			t.Fatalf("after %d failures: %+v", n, s)
		}
	}

	failed0, _ := f.script(-1)
	if p := waitChange(t, m); !slices.Equal(p, []Transition{{"i1", api.StatusCritical}}) {
		t.Fatalf("pending %v, want i1 critical", p)
	}
	if failed, _ := f.counts(); failed < failed0+3 {
		t.Errorf("critical after %d failures", failed-failed0)
	}
	if s := state(t, m, "i1"); s.Status != api.StatusCritical || s.Output != "HTTP 503 Service Unavailable" {
		t.Errorf("critical: %+v", s)
	}
	if passing, ok := m.Passing("i1"); passing || !ok {
		t.Errorf("Passing = %v, %v", passing, ok)
	}
	// Not acknowledged (the proposal failed): still pending later.
	failed1, _ := f.counts()
	waitFor(t, 5*time.Second, "more failures", func() bool { failed, _ := f.counts(); return failed >= failed1+2 })
	if p := m.Pending(); !slices.Equal(p, []Transition{{"i1", api.StatusCritical}}) {
		t.Fatalf("pending %v, want i1 critical still", p)
	}
	m.Ack(Transition{"i1", api.StatusCritical})
	noChange(t, m)

	_, ok1 := f.script(0)
	if p := waitChange(t, m); !slices.Equal(p, []Transition{{"i1", api.StatusPassing}}) {
		t.Fatalf("pending %v, want i1 passing", p)
	}
	if _, ok := f.counts(); ok < ok1+2 {
		t.Errorf("passing after %d successes", ok-ok1)
	}
	if passing, ok := m.Passing("i1"); !passing || !ok {
		t.Errorf("Passing = %v, %v", passing, ok)
	}
}

// TestMonitor_closedPort: an instance whose port is closed goes critical,
// with the checks' own thresholds (here 1) and outputs.
func TestMonitor_closedPort(t *testing.T) {
	port := closedPort(t)
	const iv = 30 * time.Millisecond
	tcp := Check{Type: api.CheckTCP, Interval: iv, Timeout: iv, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}
	m := newTestMonitor(t, 4, Target{ID: "i1", Address: "127.0.0.1", Port: port, Checks: []Check{tcp}})
	if p := waitChange(t, m); !slices.Equal(p, []Transition{{"i1", api.StatusCritical}}) {
		t.Fatalf("pending %v", p)
	}
	if s := state(t, m, "i1"); s.Status != api.StatusCritical || s.Output != "connection refused" {
		t.Errorf("state %+v", s)
	}
}

// TestMonitor_hanging: a check whose server never answers fails at its
// timeout, and the instance goes critical.
func TestMonitor_hanging(t *testing.T) {
	s := listenSilent(t)
	c := httpCheck("/", 100*time.Millisecond, 50*time.Millisecond)
	c.FailuresBeforeCritical = 2
	m := newTestMonitor(t, 4, Target{ID: "i1", Address: "127.0.0.1", Port: s.port(t), Checks: []Check{c}})
	start := time.Now()
	if p := waitChange(t, m); !slices.Equal(p, []Transition{{"i1", api.StatusCritical}}) {
		t.Fatalf("pending %v", p)
	}
	// Two probes, each started within an interval and ended by its
	// timeout: about 150-250ms; generously bounded.
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("critical after %s", took)
	}
	if st := state(t, m, "i1"); st.Output != "timed out after 50ms" {
		t.Errorf("state %+v", st)
	}
}

// TestMonitor_grpc: a gRPC check follows grpc-go's health server through
// both transitions; a critical instance starts critical and needs its
// successes.
func TestMonitor_grpc(t *testing.T) {
	hs, port := serveGRPC(t, false)
	hs.SetServingStatus("pay.Pay", healthpb.HealthCheckResponse_NOT_SERVING)
	const iv = 30 * time.Millisecond
	c := Check{Type: api.CheckGRPC, GRPCService: "pay.Pay", Interval: iv, Timeout: iv, FailuresBeforeCritical: 2, SuccessesBeforePassing: 2}
	m := newTestMonitor(t, 4, Target{ID: "g1", Address: "127.0.0.1", Port: port, Checks: []Check{c}, Status: api.StatusCritical})
	waitFor(t, 5*time.Second, "a probe", func() bool { return state(t, m, "g1").LastRunMS >= 0 })
	if s := state(t, m, "g1"); s.Status != api.StatusCritical || s.Output != "NOT_SERVING" {
		t.Fatalf("state %+v", s)
	}
	noChange(t, m)
	hs.SetServingStatus("pay.Pay", healthpb.HealthCheckResponse_SERVING)
	if p := waitChange(t, m); !slices.Equal(p, []Transition{{"g1", api.StatusPassing}}) {
		t.Fatalf("pending %v", p)
	}
	m.Ack(Transition{"g1", api.StatusPassing})
	hs.SetServingStatus("pay.Pay", healthpb.HealthCheckResponse_NOT_SERVING)
	if p := waitChange(t, m); !slices.Equal(p, []Transition{{"g1", api.StatusCritical}}) {
		t.Fatalf("pending %v", p)
	}
}

// TestMonitor_aggregate: an instance is passing only when every check
// passes.
func TestMonitor_aggregate(t *testing.T) {
	addr, port := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	const iv = 30 * time.Millisecond
	good := httpCheck("/", iv, iv)
	bad := Check{Type: api.CheckTCP, Port: closedPort(t), Interval: iv, Timeout: iv, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}
	m := newTestMonitor(t, 4, Target{ID: "i1", Address: addr, Port: port, Checks: []Check{good, bad}})
	if p := waitChange(t, m); !slices.Equal(p, []Transition{{"i1", api.StatusCritical}}) {
		t.Fatalf("pending %v", p)
	}
	waitFor(t, 5*time.Second, "both probed", func() bool {
		s := m.States("i1")
		return s[0].LastRunMS >= 0 && s[1].LastRunMS >= 0
	})
	s := m.States("i1")
	if s[0].Status != api.StatusPassing || s[1].Status != api.StatusCritical || s[1].Type != api.CheckTCP {
		t.Errorf("states %+v", s)
	}
}

// TestMonitor_Ack: a transition that flips back before it is handled
// leaves nothing pending; an Ack of a status the checks have left makes
// the current one pending.
func TestMonitor_Ack(t *testing.T) {
	m, err := NewMonitor(Config{Concurrency: 1, MinInterval: 10 * time.Millisecond}, guard(t))
	if err != nil {
		t.Fatal(err)
	}
	c := Check{Type: api.CheckTCP, Interval: time.Second, Timeout: time.Second, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}
	if err := m.Set(Target{ID: "i1", Address: "127.0.0.1", Port: 1, Checks: []Check{c}}); err != nil {
		t.Fatal(err)
	}
	probe := func(ok bool) {
		m.mu.Lock()
		ch := m.targets["i1"].checks[0]
		if ch.idx >= 0 {
			heap.Remove(&m.due, ch.idx)
		}
		m.mu.Unlock()
		m.record(ch, result{ok: ok, output: "scripted"}, time.Now())
	}
	probe(false)
	if p := m.Pending(); !slices.Equal(p, []Transition{{"i1", api.StatusCritical}}) {
		t.Fatalf("pending %v", p)
	}
	probe(true) // back before anyone acted
	if p := m.Pending(); len(p) != 0 {
		t.Fatalf("pending %v after flipping back", p)
	}
	probe(false)
	tr := m.Pending()[0]
	probe(true)
	m.Ack(tr) // the caller committed critical; the checks pass again
	if p := m.Pending(); !slices.Equal(p, []Transition{{"i1", api.StatusPassing}}) {
		t.Fatalf("pending %v, want passing after a stale ack", p)
	}
	m.Ack(Transition{"i1", api.StatusPassing})
	m.Ack(Transition{"nope", api.StatusPassing})
	if p := m.Pending(); len(p) != 0 {
		t.Fatalf("pending %v", p)
	}
	probe(false)
	m.Remove("i1")
	if p := m.Pending(); len(p) != 0 {
		t.Fatalf("pending %v after Remove", p)
	}
}

func TestCheck_step(t *testing.T) {
	for _, tc := range []struct {
		name   string
		start  string
		probes string // + success, - failure
		want   string // status after each probe: p or c
	}{
		{"one failure", api.StatusPassing, "-+", "pp"},
		{"three failures", api.StatusPassing, "---", "ppc"},
		{"failures reset by a success", api.StatusPassing, "--+--+", "pppppp"},
		{"two successes recover", api.StatusCritical, "++", "cp"},
		{"successes reset by a failure", api.StatusCritical, "+-+-++", "ccccc" + "p"},
		{"stays critical", api.StatusCritical, "-----", "ccccc"},
		{"flapping", api.StatusPassing, "---++---", "ppccppp" + "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &check{status: tc.start, spec: Check{FailuresBeforeCritical: 3, SuccessesBeforePassing: 2}}
			var got strings.Builder
			for _, p := range tc.probes {
				c.step(p == '+')
				got.WriteByte(c.status[0])
			}
			if got.String() != tc.want {
				t.Errorf("statuses %s, want %s", got.String(), tc.want)
			}
		})
	}
}

// TestMonitor_Set covers what Set refuses and keeps.
func TestMonitor_Set(t *testing.T) {
	m, err := NewMonitor(Config{Concurrency: 1}, guard(t, "10.0.0.0/8"))
	if err != nil {
		t.Fatal(err)
	}
	good := httpCheck("/", time.Second, time.Second)
	for _, tc := range []struct {
		name  string
		t     Target
		field string // "" for ErrNotAllowed
	}{
		{"loopback outside the allowlist", Target{ID: "a", Address: "127.0.0.1", Port: 80, Checks: []Check{good}}, ""},
		{"metadata address", Target{ID: "a", Address: "169.254.169.254", Port: 80, Checks: []Check{good}}, ""},
		{"no id", Target{Address: "10.0.0.1", Port: 80, Checks: []Check{good}}, "id"},
		{"no address", Target{ID: "a", Port: 80, Checks: []Check{good}}, "address"},
		{"bad port", Target{ID: "a", Address: "10.0.0.1", Checks: []Check{good}}, "port"},
		{"bad status", Target{ID: "a", Address: "10.0.0.1", Port: 80, Checks: []Check{good}, Status: "draining"}, "status"},
		{"too many", Target{ID: "a", Address: "10.0.0.1", Port: 80, Checks: slices.Repeat([]Check{good}, MaxChecks+1)}, "checks"},
		{"short interval", Target{ID: "a", Address: "10.0.0.1", Port: 80, Checks: []Check{good, httpCheck("/", time.Millisecond, time.Millisecond)}}, "checks[1].interval"},
		{"unknown scheme", Target{ID: "a", Address: "10.0.0.1", Port: 80, Scheme: "ftp", Checks: []Check{good}}, "checks[0].type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := m.Set(tc.t)
			var fe *FieldError
			switch {
			case tc.field == "" && !errors.Is(err, ErrNotAllowed):
				t.Errorf("Set = %v, want ErrNotAllowed", err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Errorf("Set = %v, want a field error on %s", err, tc.field)
			}
		})
	}
	// A host name is checked at each dial, not here.
	if err := m.Set(Target{ID: "h", Address: "localhost", Port: 80, Checks: []Check{good}}); err != nil {
		t.Errorf("Set(localhost) = %v", err)
	}
	// https takes every type of check.
	tcp := Check{Type: api.CheckTCP, Interval: time.Second, Timeout: time.Second, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}
	grpc := Check{Type: api.CheckGRPC, Interval: time.Second, Timeout: time.Second, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}
	if err := m.Set(Target{ID: "s", Address: "10.0.0.1", Port: 443, Scheme: "https", Checks: []Check{tcp, good, grpc}}); err != nil {
		t.Errorf("Set(https, tcp, http and grpc) = %v", err)
	}
}

// TestMonitor_Set_again: setting an unchanged target keeps its state;
// changing it starts afresh at the given status; no checks removes it.
func TestMonitor_Set_again(t *testing.T) {
	port := closedPort(t)
	const iv = 20 * time.Millisecond
	tcp := Check{Type: api.CheckTCP, Interval: iv, Timeout: iv, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}
	tg := Target{ID: "i1", Address: "127.0.0.1", Port: port, Checks: []Check{tcp}}
	m := newTestMonitor(t, 2, tg)
	waitChange(t, m)
	if err := m.Set(tg); err != nil { // the same target: no reset
		t.Fatal(err)
	}
	if s := state(t, m, "i1"); s.Status != api.StatusCritical || s.LastRunMS < 0 {
		t.Fatalf("after the same Set: %+v", s)
	}
	tg.Checks = []Check{{Type: api.CheckTCP, Interval: time.Hour, Timeout: time.Second, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}}
	tg.Status = api.StatusCritical
	if err := m.Set(tg); err != nil {
		t.Fatal(err)
	}
	if s := state(t, m, "i1"); s.Status != api.StatusCritical || s.LastRunMS != -1 {
		t.Fatalf("after a changed Set: %+v", s)
	}
	if p := m.Pending(); len(p) != 0 {
		t.Fatalf("pending %v after a changed Set", p)
	}
	tg.Checks = nil
	if err := m.Set(tg); err != nil {
		t.Fatal(err)
	}
	if s := m.States("i1"); s != nil {
		t.Fatalf("States after removal = %v", s)
	}
	if _, ok := m.Passing("i1"); ok {
		t.Fatal("Passing knows a removed target")
	}
}

// TestMonitor_Remove: a removed target is probed no more.
func TestMonitor_Remove(t *testing.T) {
	var hits atomic.Int64
	addr, port := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	const iv = 20 * time.Millisecond
	m := newTestMonitor(t, 2, Target{ID: "i1", Address: addr, Port: port, Checks: []Check{httpCheck("/", iv, iv)}})
	waitFor(t, 5*time.Second, "probes", func() bool { return hits.Load() >= 2 })
	m.Remove("i1")
	time.Sleep(2 * iv) // a probe in flight at Remove may still land
	n := hits.Load()
	time.Sleep(5 * iv)
	if got := hits.Load(); got != n {
		t.Errorf("%d probes after Remove", got-n)
	}
	if m.States("i1") != nil {
		t.Error("States after Remove")
	}
}

// TestMonitor_spread: checks set at once have their first probes spread
// over their interval.
func TestMonitor_spread(t *testing.T) {
	const n = 200
	const iv = time.Second
	var mu sync.Mutex
	first := map[string]time.Time{}
	addr, port := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := first[r.URL.Path]; !ok {
			first[r.URL.Path] = time.Now()
		}
	}))
	var targets []Target
	for i := range n {
		targets = append(targets, Target{ID: "i" + itoa(i), Address: addr, Port: port, Checks: []Check{httpCheck("/"+itoa(i), iv, iv)}})
	}
	start := time.Now()
	newTestMonitor(t, 64, targets...)
	waitFor(t, 10*time.Second, "every first probe", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(first) == n
	})
	var quarters [4]int
	mu.Lock()
	for _, at := range first {
		q := int(at.Sub(start) * 4 / iv)
		if q > 3 {
			// Late: allowed only by a little (a slow machine), and
			// counted in the last quarter.
			if at.Sub(start) > iv+500*time.Millisecond {
				t.Errorf("a first probe %s after the start", at.Sub(start))
			}
			q = 3
		}
		quarters[q]++
	}
	mu.Unlock()
	// Uniform would be n/4 = 50 each; a burst would put them all in one.
	for q, k := range quarters {
		if k < n/10 || k > n/2 {
			t.Errorf("quarter %d of the interval holds %d first probes of %d (all: %v)", q, k, n, quarters)
		}
	}
	t.Logf("first probes per quarter of the interval: %v", quarters)
}

// TestMonitor_concurrency: no more probes are in flight than the bound,
// and every target is probed even when the bound holds them back.
func TestMonitor_concurrency(t *testing.T) {
	const bound = 3
	const n = 24
	var inflight, peak atomic.Int64
	var mu sync.Mutex
	seen := map[string]bool{}
	addr, port := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if now <= p || peak.CompareAndSwap(p, now) {
				break
			}
		}
		mu.Lock()
		seen[r.URL.Path] = true
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
	}))
	var targets []Target
	for i := range n {
		targets = append(targets, Target{ID: "i" + itoa(i), Address: addr, Port: port, Checks: []Check{httpCheck("/"+itoa(i), 100*time.Millisecond, 100*time.Millisecond)}})
	}
	newTestMonitor(t, bound, targets...)
	waitFor(t, 10*time.Second, "every target probed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	})
	time.Sleep(200 * time.Millisecond)
	if p := peak.Load(); p > bound || p < 2 {
		t.Errorf("peak of %d probes in flight with a bound of %d", p, bound)
	}
	t.Logf("peak in flight: %d", peak.Load())
}

// TestMonitor_idle: targets whose probes are not due cost no goroutine.
func TestMonitor_idle(t *testing.T) {
	before := runtime.NumGoroutine()
	port := closedPort(t)
	var targets []Target
	for i := range 2000 {
		tcp := Check{Type: api.CheckTCP, Interval: time.Hour, Timeout: time.Second, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}
		targets = append(targets, Target{ID: "i" + itoa(i), Address: "127.0.0.1", Port: port, Checks: []Check{tcp}})
	}
	newTestMonitor(t, 64, targets...)
	time.Sleep(50 * time.Millisecond)
	// Run's goroutine, and perhaps a probe or two that happened to be due
	// (2000 first probes spread over an hour: one every 1.8s).
	if d := runtime.NumGoroutine() - before; d > 3 {
		t.Errorf("%d more goroutines with 2000 idle targets", d)
	}
}

// TestMonitor_Run: Run runs once, and returns when its context ends even
// with probes in flight.
func TestMonitor_Run(t *testing.T) {
	s := listenSilent(t)
	m, err := NewMonitor(Config{Concurrency: 4, MinInterval: 10 * time.Millisecond}, guard(t))
	if err != nil {
		t.Fatal(err)
	}
	c := httpCheck("/", 5*time.Second, 5*time.Second)
	for i := range 4 {
		if err := m.Set(Target{ID: "i" + itoa(i), Address: "127.0.0.1", Port: s.port(t), Checks: []Check{c}}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitFor(t, 10*time.Second, "probes in flight", func() bool { return s.accepted.Load() >= 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return")
	}
	for i := range 4 {
		if st := m.States("i" + itoa(i)); st[0].LastRunMS != -1 {
			t.Errorf("a probe cut short by the end of Run was recorded: %+v", st)
		}
	}
	if err := m.Run(context.Background()); !errors.Is(err, ErrRan) {
		t.Errorf("second Run = %v", err)
	}
}

func TestConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{DefaultConfig(), true},
		{Config{Concurrency: 1}, true},
		{Config{Concurrency: 0}, false},
		{Config{Concurrency: 5000}, false},
		{Config{Concurrency: 1, MinInterval: -1}, false},
		{Config{Concurrency: 1, MinInterval: 2 * time.Second}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate = %v", tc.cfg, err)
		}
	}
	if _, err := NewMonitor(DefaultConfig(), nil); err == nil {
		t.Error("NewMonitor without a guard")
	}
}

// TestMonitor_fairShare: one owner whose 40 targets hang until their
// timeout holds no more than its share of the probe slots, and another
// owner's probes keep running on time.
func TestMonitor_fairShare(t *testing.T) {
	const bound = 8
	var hanging, peak atomic.Int64
	slow, slowPort := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := hanging.Add(1)
		defer hanging.Add(-1)
		for {
			p := peak.Load()
			if now <= p || peak.CompareAndSwap(p, now) {
				break
			}
		}
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	var quick atomic.Int64
	fast, fastPort := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { quick.Add(1) }))
	var targets []Target
	for i := range 40 {
		targets = append(targets, Target{ID: "hang" + itoa(i), Owner: "greedy", Address: slow, Port: slowPort,
			Checks: []Check{httpCheck("/", 100*time.Millisecond, 100*time.Millisecond)}})
	}
	for i := range 4 {
		targets = append(targets, Target{ID: "ok" + itoa(i), Owner: "other", Address: fast, Port: fastPort,
			Checks: []Check{httpCheck("/"+itoa(i), 100*time.Millisecond, 50*time.Millisecond)}})
	}
	m := newTestMonitor(t, bound, targets...)
	var held int
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		m.mu.RLock()
		held = max(held, m.inflight["greedy"])
		m.mu.RUnlock()
	}
	// 4 targets every 100ms for a second: about 40 probes; a starved owner
	// would get almost none.
	if n := quick.Load(); n < 20 {
		t.Errorf("the other owner's probes ran %d times in a second", n)
	}
	// The greedy owner's share: max(MinShare, 8/(1+1)) alone, 8/(2+1)
	// beside the other; the servers saw the same, give or take a probe
	// whose timeout the server has not yet noticed.
	if held > max(MinShare, bound/2) || held < 2 {
		t.Errorf("the greedy owner held %d of %d slots", held, bound)
	}
	t.Logf("other owner's probes: %d; greedy owner's peak: %d in the Monitor, %d at its server", quick.Load(), held, peak.Load())
}
