package httpapi_test

// Mass-expiry protection end to end: a real registry on 127.0.0.1, a
// fleet of 100 instances registered and heartbeating over HTTP, and the
// answers a client sees while part of the fleet falls silent.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// Timings of these tests: a TTL of 2s, heartbeats every 600ms (about
// TTL/3, as the SDK sends them), so an instance is overdue 900ms after
// its last heartbeat and expires 2s after it. The sweep runs every 50ms.
const (
	fleetTTL   = 2 * time.Second
	fleetBeat  = 600 * time.Millisecond
	fleetWarm  = 4 * fleetBeat // gaps enough for the tracker to know the interval
	pollEvery  = 50 * time.Millisecond
	fleetGrace = 4 * time.Second // slack for a loaded machine, on every bound
)

// httpFleet is a registry and instances that heartbeat through its HTTP
// API, each until it is silenced.
type httpFleet struct {
	h *harness

	mu sync.Mutex
	// byService lists each service's instance IDs, and tokens their
	// session tokens; both grow while the fleet registers.
	byService map[string][]string
	tokens    map[string]string
	order     []string // every ID, in the order of registration
	silent    map[string]bool
	round     time.Duration // the longest round of heartbeats
	errs      []error
	stop      chan struct{}
	done      chan struct{}
}

// newHTTPFleet starts a registry (mutate may change its config) and
// registers services[name] instances of each service with a TTL of
// fleetTTL, then heartbeats them every fleetBeat for fleetWarm.
func newHTTPFleet(t *testing.T, services map[string]int, mutate func(*server.Config)) *httpFleet {
	t.Helper()
	h := start(t, mutate)
	k := h.Key(t, "*")
	most := 0
	for _, n := range services {
		most = max(most, n)
	}
	// One listener per instance of the largest service: instance i of
	// every service is called back on listener i (a service, address and
	// port is one instance).
	var listeners []*testutil.Instance
	for range most {
		listeners = append(listeners, testutil.NewInstance(t, k.Secret, verify.Proof))
	}
	f := &httpFleet{h: h, byService: map[string][]string{}, tokens: map[string]string{}, silent: map[string]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	// Each instance heartbeats from its registration on, as the SDK's
	// do: registering 100 takes longer than an instance may be silent.
	go f.beat()
	t.Cleanup(func() {
		close(f.stop)
		<-f.done
	})
	ctx := context.Background()
	for _, svc := range sortedNames(services) {
		for i := range services[svc] {
			in := listeners[i]
			reg, err := h.Anon.Register(ctx, svc, k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: fleetTTL.String()})
			if err != nil {
				t.Fatalf("register %s #%d: %v", svc, i, err)
			}
			call, _ := in.LastCall()
			f.mu.Lock()
			f.byService[svc] = append(f.byService[svc], reg.ID)
			f.tokens[reg.ID] = call.Token
			f.order = append(f.order, reg.ID)
			f.mu.Unlock()
		}
	}
	time.Sleep(fleetWarm)
	f.mu.Lock()
	t.Logf("the longest round of 100 heartbeats took %v", f.round)
	f.mu.Unlock()
	if hb := f.readyz(t); hb.ProtectionActivations != 0 {
		t.Fatalf("protection began while the fleet was registering and heartbeating: %+v", hb)
	}
	if errs := f.errors(); len(errs) > 0 {
		t.Fatalf("heartbeats failed during warm-up: %v", errs)
	}
	return f
}

func sortedNames(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// beat heartbeats every instance that is not silent, every fleetBeat.
func (f *httpFleet) beat() {
	defer close(f.done)
	tick := time.NewTicker(fleetBeat)
	defer tick.Stop()
	for {
		// In the order of registration, so that each instance's gaps are
		// the loop's period, as an SDK's would be.
		f.mu.Lock()
		var beating [][2]string
		for _, ids := range f.order {
			if !f.silent[ids] {
				beating = append(beating, [2]string{ids, f.tokens[ids]})
			}
		}
		f.mu.Unlock()
		began := time.Now()
		for _, b := range beating {
			id, token := b[0], b[1]
			if _, err := f.h.Anon.Heartbeat(context.Background(), id, token); err != nil {
				f.mu.Lock()
				f.errs = append(f.errs, fmt.Errorf("heartbeat %s: %w", id, err))
				f.mu.Unlock()
			}
		}
		f.mu.Lock()
		f.round = max(f.round, time.Since(began))
		f.mu.Unlock()
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
	}
}

// setSilent stops (or, with false, resumes) the heartbeats of the
// services named.
func (f *httpFleet) setSilent(silent bool, services ...string) (n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, svc := range services {
		for _, id := range f.byService[svc] {
			f.silent[id] = silent
			n++
		}
	}
	return n
}

// setSilentEvery silences (or resumes) every other instance of every
// service: half the fleet, across all services.
func (f *httpFleet) setSilentEvery(silent bool) (n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ids := range f.byService {
		for i, id := range ids {
			if i%2 == 0 {
				f.silent[id] = silent
				n++
			}
		}
	}
	return n
}

func (f *httpFleet) errors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

// list reads GET /v1/services: per service, its index and how many of
// its instances are critical; and whether protection is on.
func (f *httpFleet) list(t *testing.T) (index, critical map[string]int, protection bool) {
	t.Helper()
	resp, err := f.h.Anon.Services(context.Background())
	if err != nil {
		t.Fatalf("list services: %v", err)
	}
	index, critical = map[string]int{}, map[string]int{}
	for _, s := range resp.Services {
		index[s.Name], critical[s.Name] = int(s.Index), s.Critical
	}
	return index, critical, resp.Protection
}

// lookup reads GET /v1/services/{svc}?status=any as the wire has it.
func (f *httpFleet) lookup(t *testing.T, svc string) api.LookupResponse {
	t.Helper()
	resp, err := http.Get(f.h.Srv.URL() + "/v1/services/" + svc + "?status=any")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lr api.LookupResponse
	dec := json.NewDecoder(resp.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lr); err != nil || resp.StatusCode != 200 {
		t.Fatalf("lookup %s: %d %v", svc, resp.StatusCode, err)
	}
	return lr
}

// readyz reads /readyz.
func (f *httpFleet) readyz(t *testing.T) api.Health {
	t.Helper()
	_, hb := readyz(t, f.h.Srv.URL())
	return hb
}

// ten is ten services of ten instances.
func ten() map[string]int {
	m := map[string]int{}
	for i := range 10 {
		m[fmt.Sprintf("svc%d", i)] = 10
	}
	return m
}

// TestAPI_ProtectionResumeInsideHold is the first scenario over
// HTTP: the heartbeats of half of 100 instances (every other instance of
// ten services) stop at once. While they are silent, for well over a TTL,
// no answer shows one of them critical, every answer says "protection":
// true once the hold began, and /readyz counts it. Then they resume inside
// the hold: protection lets go by itself, and none ever expired: no
// service's index moved (an expiry is a committed change, which moves it).
func TestAPI_ProtectionResumeInsideHold(t *testing.T) {
	f := newHTTPFleet(t, ten(), nil)
	before, _, _ := f.list(t)
	stream := openWatch(t, f.h.Srv.URL()+"/v1/watch", "")
	stream.protection = true
	snapshotOf(t, stream.next(t, 5*time.Second))
	// An SDK Resolver kept by the stream alone (MaxAge an hour).
	resolver, err := client.NewResolver(client.ResolverConfig{Client: f.h.Anon, MaxAge: time.Hour, MaxStale: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer resolver.Close()
	if res, err := resolver.Lookup(context.Background(), "svc3"); err != nil || res.Protection {
		t.Fatalf("resolver before the silence: %+v, %v", res, err)
	}
	if n := f.setSilentEvery(true); n != 50 {
		t.Fatalf("silenced %d", n)
	}
	stopped := time.Now()
	var heldSince time.Time
	for time.Since(stopped) < 3*fleetTTL {
		_, critical, prot := f.list(t)
		for svc, n := range critical {
			if n > 0 {
				t.Fatalf("%v after the silence, %s has %d critical instances (protection %v)", time.Since(stopped), svc, n, prot)
			}
		}
		if prot && heldSince.IsZero() {
			heldSince = time.Now()
			lr := f.lookup(t, "svc3")
			if !lr.Protection || len(lr.Instances) != 10 {
				t.Fatalf("lookup during the hold: protection %v, %d instances", lr.Protection, len(lr.Instances))
			}
			for _, in := range lr.Instances {
				if in.Status != "passing" {
					t.Fatalf("lookup during the hold: %s is %s", in.ID, in.Status)
				}
			}
			if hb := f.readyz(t); !hb.Protection || hb.ProtectionActivations != 1 || hb.Status != "ready" {
				t.Fatalf("/readyz during the hold: %+v", hb)
			}
			testserver.Eventually(t, 2*time.Second, "the resolver to see protection", func() bool {
				res, err := resolver.Lookup(context.Background(), "svc3")
				return err == nil && res.Protection && len(res.Instances) == 10
			})
		}
		time.Sleep(pollEvery)
	}
	if heldSince.IsZero() {
		t.Fatal("protection never began")
	}
	if !heldSince.Before(stopped.Add(fleetTTL + fleetGrace)) {
		t.Errorf("protection began %v after the silence", heldSince.Sub(stopped))
	}
	f.setSilentEvery(false)
	testserver.Eventually(t, 3*fleetTTL+fleetGrace, "protection to let go", func() bool {
		_, _, prot := f.list(t)
		return !prot
	})
	time.Sleep(fleetTTL) // long enough for a wrongly released instance to expire
	after, critical, _ := f.list(t)
	for svc, idx := range before {
		if after[svc] != idx || critical[svc] != 0 {
			t.Errorf("%s: index %d → %d, %d critical: an instance expired", svc, idx, after[svc], critical[svc])
		}
	}
	if lr := f.lookup(t, "svc3"); lr.Protection {
		t.Error("a lookup after the hold still says protection")
	}
	if res, err := resolver.Lookup(context.Background(), "svc3"); err != nil || res.Protection {
		t.Errorf("the resolver after the hold: protection %v, %v", res.Protection, err)
	}
	if hb := f.readyz(t); hb.Protection || hb.ProtectionActivations != 1 {
		t.Errorf("/readyz after the hold: %+v", hb)
	}
	if errs := f.errors(); len(errs) > 0 {
		t.Errorf("heartbeats failed: %v", errs)
	}
	// The stream said when protection began and ended, and carried no
	// expiry in between.
	var seen []string
	for len(seen) < 2 {
		ev := stream.next(t, 5*time.Second)
		if ev.name != api.EventProtection {
			t.Fatalf("stream during the hold: %s %s", ev.name, ev.data)
		}
		seen = append(seen, ev.data)
	}
	if seen[0] != `{"protection":true}` || seen[1] != `{"protection":false}` {
		t.Fatalf("protection events: %q", seen)
	}
}

// TestAPI_ProtectionBoundedHold: a real death of a whole service (40 of
// 100 instances) while the rest of the fleet is healthy is more than the
// threshold, so protection holds it, and it cannot tell it from a split.
// It still expires, once the hold reaches its bound: no answer shows one
// of its instances critical while protection is on, and every one is
// critical soon after the bound. The healthy services never expire.
func TestAPI_ProtectionBoundedHold(t *testing.T) {
	const maxHold = 3 * time.Second
	services := map[string]int{"big": 40, "s1": 10, "s2": 10, "s3": 10, "s4": 10, "s5": 10, "s6": 10}
	f := newHTTPFleet(t, services, func(c *server.Config) { c.Liveness.Protection.MaxHold = maxHold })
	f.setSilent(true, "big")
	stopped := time.Now()
	var heldSince, releasedAt time.Time
	for {
		_, critical, prot := f.list(t)
		if prot && heldSince.IsZero() {
			heldSince = time.Now()
		}
		if !prot && !heldSince.IsZero() && releasedAt.IsZero() {
			releasedAt = time.Now()
		}
		lr := f.lookup(t, "big") // one read: its statuses and its protection agree
		for _, in := range lr.Instances {
			if in.Status == "critical" && lr.Protection {
				t.Fatalf("%s is critical in an answer that says protection", in.ID)
			}
		}
		for svc, n := range critical {
			if svc != "big" && n > 0 {
				t.Fatalf("%s, healthy, has %d critical", svc, n)
			}
		}
		if critical["big"] == 40 {
			break
		}
		if critical["big"] > 0 && heldSince.IsZero() {
			t.Fatalf("big expired (%d critical) before any hold", critical["big"])
		}
		if time.Since(stopped) > fleetTTL+maxHold+fleetGrace {
			t.Fatalf("big is not wholly critical %v after its silence: %d critical, held since %v, released %v",
				time.Since(stopped), critical["big"], !heldSince.IsZero(), !releasedAt.IsZero())
		}
		time.Sleep(pollEvery)
	}
	if heldSince.IsZero() {
		t.Fatal("never held")
	}
	if held := time.Since(heldSince); held < maxHold-pollEvery {
		t.Errorf("big expired %v after the hold began, before its bound %v", held, maxHold)
	}
	if hb := f.readyz(t); hb.Protection || hb.ProtectionActivations != 1 {
		t.Errorf("/readyz after the bound: %+v; want off, one activation", hb)
	}
	// Readers see the held instances critical from the bound on; the
	// sweep that ends the hold, logs it and commits them runs up to a
	// sweep interval later.
	testserver.Eventually(t, fleetGrace, "the end of the hold in the log", func() bool {
		return strings.Contains(f.h.Logs.String(), "the hold reached its maximum")
	})
	// A cooldown follows the hold, and /readyz says until when.
	hb := f.readyz(t)
	until, err := time.Parse(time.RFC3339, hb.ProtectionCooldownUntil)
	if err != nil || !until.After(time.Now()) {
		t.Errorf("/readyz after the bound: cooldown until %q (%v)", hb.ProtectionCooldownUntil, err)
	}
}

// TestAPI_ProtectionSingleServiceExpires is the last scenario:
// one service of 10 instances among 100 stops. That is below the
// threshold, so nothing is held: it expires on time (within a TTL and a
// few sweeps of its silence, with slack for a loaded machine), and no
// answer ever says protection.
func TestAPI_ProtectionSingleServiceExpires(t *testing.T) {
	f := newHTTPFleet(t, ten(), nil)
	f.setSilent(true, "svc7")
	stopped := time.Now()
	for {
		_, critical, prot := f.list(t)
		if prot {
			t.Fatal("protection began for one service of ten")
		}
		for svc, n := range critical {
			if svc != "svc7" && n > 0 {
				t.Fatalf("%s, healthy, has %d critical", svc, n)
			}
		}
		if critical["svc7"] == 10 {
			break
		}
		if time.Since(stopped) > fleetTTL+fleetGrace {
			t.Fatalf("svc7 not wholly critical %v after its silence: %d", time.Since(stopped), critical["svc7"])
		}
		time.Sleep(pollEvery)
	}
	if hb := f.readyz(t); hb.Protection || hb.ProtectionActivations != 0 {
		t.Errorf("/readyz: %+v; want no protection, ever", hb)
	}
}
