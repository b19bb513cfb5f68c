package registry_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// newHeldTutorial starts a tutorial service whose verify handler waits
// until hold is closed (or the registry hangs up) before answering
// correctly; entered receives once per callback that arrives.
func newHeldTutorial(tb testing.TB, hold <-chan struct{}) (addr registry.SeedAddr, entered <-chan struct{}) {
	tb.Helper()
	in := make(chan struct{}, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in <- struct{}{}
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"reply": "` + registry.DefaultSeedConfig().Response + `", "secret": "` + r.PostForm.Get("secret") + `"}`))
	}))
	// Its connections are closed first, so that a handler still held
	// (a test that failed before it released them) returns, and Close
	// does not wait for it for ever.
	tb.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	return registry.SeedAddr{Scheme: "http", Host: "127.0.0.1", Port: srv.Listener.Addr().(*net.TCPAddr).Port}, in
}

// seedGoroutines counts the goroutines running a tutorial-protocol
// verification.
func seedGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "registry.(*Registry).verifySeed")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestRegistry_RegisterSeed_answersFirst: a service in the tutorial's
// style listens, but serves only once its registration has returned, so
// the callback waits in its listen backlog. RegisterSeed returns at once;
// the verification goes on in the background and commits the instance
// once the service serves.
func TestRegistry_RegisterSeed_answersFirst(t *testing.T) {
	r := newRig(t, withSeed())
	s := newUnstartedTutorial(t)
	start := time.Now()
	v, err := r.startSeed(t, "127.0.0.1:40000", "fetch_url", s.addr())
	if err != nil {
		t.Fatalf("RegisterSeed: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("RegisterSeed took %s; it must not wait for the callback", d)
	}
	select {
	case <-v.Done():
		t.Fatal("the verification ended before the service served")
	case <-time.After(100 * time.Millisecond):
	}
	if _, ok := r.cat.Instance(v.ID); ok {
		t.Fatal("committed before the service answered")
	}
	s.srv.Start() // the service's event loop starts: the challenge is answered
	inst, err := waitSeed(t, v)
	if err != nil {
		t.Fatalf("verification: %v", err)
	}
	_, secret, _, calls := s.last()
	if calls != 1 || inst.ID != v.ID || !inst.TokenMatches(secret) {
		t.Fatalf("%d callbacks; instance %+v", calls, inst)
	}
	if _, ok := r.cat.Instance(v.ID); !ok {
		t.Fatal("not in the catalog")
	}
	if _, err := r.reg.SeedPing(t.Context(), "fetch_url", s.addr(), secret); err != nil {
		t.Fatalf("SeedPing: %v", err)
	}
}

// TestRegistry_RegisterSeed_deadline: a service that never answers ends
// its verification at SeedConfig.VerifyTimeout, refused, with nothing
// stored, while another registration goes through meanwhile; its slot
// and pending place are free afterwards.
func TestRegistry_RegisterSeed_deadline(t *testing.T) {
	const deadline = 500 * time.Millisecond
	r := newRig(t, withSeed(), withConfig(func(c *registry.Config) {
		c.Seed.VerifyTimeout = deadline
		c.Seed.MaxPending, c.Seed.MaxPendingPerCaller = 1, 1
	}))
	silent := newUnstartedTutorial(t) // listens, never serves
	start := time.Now()
	v, err := r.startSeed(t, "127.0.0.1:40000", "fetch_url", silent.addr())
	if err != nil {
		t.Fatal(err)
	}
	// Its pending place is held until then.
	other := newTutorial(t)
	ov, err := r.startSeed(t, "192.0.2.1:40000", "seed-other", other.addr())
	if !errors.Is(err, registry.ErrSeedPending) {
		t.Fatalf("a second pending verification with MaxPending 1: %v, %v", ov, err)
	}
	_, err = waitSeed(t, v)
	took := time.Since(start)
	verifyErr(api.ReasonUnreachable)(t, err) // no key: every network failure is one reason
	if took < deadline || took > deadline+time.Second {
		t.Fatalf("the verification ended after %s; want its deadline, %s", took, deadline)
	}
	if n := len(r.cat.Instances()); n != 0 || len(r.prop.proposed()) != 0 {
		t.Fatalf("%d instances, proposed %+v", n, r.prop.proposed())
	}
	// Its place is free again.
	if _, err := r.startSeed(t, "192.0.2.1:40000", "seed-other", other.addr()); err != nil {
		t.Fatalf("after the deadline: %v", err)
	}
}

// TestRegistry_RegisterSeed_notHeldUp: verifications run side by side: a
// silent service's does not delay another's.
func TestRegistry_RegisterSeed_notHeldUp(t *testing.T) {
	r := newRig(t, withSeed())
	silent := newUnstartedTutorial(t)
	sv, err := r.startSeed(t, "127.0.0.1:40000", "fetch_url", silent.addr())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.registerSeed(t, "seed-other", newTutorial(t))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("another registration took %s while a silent one was pending", d)
	}
	select {
	case <-sv.Done():
		t.Fatal("the silent service's verification ended")
	default:
	}
}

// TestRegistry_RegisterSeed_dedup: while a verification is pending, a
// registration for the same name, url and port returns it and starts no
// second callback; another name, port or scheme is another registration.
func TestRegistry_RegisterSeed_dedup(t *testing.T) {
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	r := newRig(t, withSeed())
	addr, entered := newHeldTutorial(t, hold)
	v, err := r.startSeed(t, "127.0.0.1:40000", "fetch_url", addr)
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	otherPort, _ := newHeldTutorial(t, hold)
	https := addr
	https.Scheme = "https"
	var others []*registry.SeedVerification
	for _, tc := range []struct {
		name    string
		remote  string
		service string
		addr    registry.SeedAddr
		same    bool
	}{
		{"the same caller again", "127.0.0.1:40001", "fetch_url", addr, true},
		{"another caller", "192.0.2.9:5000", "fetch_url", addr, true},
		{"another name", "127.0.0.1:40000", "seed-x", addr, false},
		{"another port", "127.0.0.1:40000", "fetch_url", otherPort, false},
		{"another scheme", "127.0.0.1:40000", "fetch_url", https, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.startSeed(t, tc.remote, tc.service, tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			if (got == v) != tc.same || (got.ID == v.ID) != tc.same {
				t.Fatalf("RegisterSeed returned %s, the pending one is %s; want the same: %v", got.ID, v.ID, tc.same)
			}
			if !tc.same {
				others = append(others, got)
			}
		})
	}
	release()
	inst, err := waitSeed(t, v)
	if err != nil || inst.ID != v.ID {
		t.Fatalf("verification: %+v, %v", inst, err)
	}
	for _, o := range others {
		waitSeed(t, o)
	}
	if n := len(entered); n != 1 { // the one for "another name"
		t.Fatalf("%d more callbacks to the address, want 1", n)
	}
	<-entered
	// Once it has ended, a registration of the endpoint starts afresh.
	again, err := r.startSeed(t, "127.0.0.1:40000", "fetch_url", addr)
	if err != nil || again == v {
		t.Fatalf("after the verification ended: %v, %v", again, err)
	}
	<-entered
}

// TestRegistry_RegisterSeed_pendingBounds: SeedConfig.MaxPendingPerCaller
// bounds the verifications pending for one caller's network, and
// MaxPending those of every caller; places come back as verifications end.
func TestRegistry_RegisterSeed_pendingBounds(t *testing.T) {
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	r := newRig(t, withSeed(), withConfig(func(c *registry.Config) { c.Seed.MaxPending, c.Seed.MaxPendingPerCaller = 3, 2 }))
	addr, _ := newHeldTutorial(t, hold)
	var pending []*registry.SeedVerification
	for _, tc := range []struct {
		name    string
		remote  string
		service string
		want    errCheck
	}{
		{"caller A, first", "192.0.2.1:5000", "seed-1", nil},
		{"caller A, second", "192.0.2.1:5001", "seed-2", nil},
		{"caller A, over its bound", "192.0.2.1:5002", "seed-3", is(registry.ErrSeedPending)},
		{"caller A's network, over its bound", "[::ffff:192.0.2.1]:5003", "seed-3", is(registry.ErrSeedPending)},
		{"caller B, first", "192.0.2.2:5000", "seed-4", nil},
		{"caller C, over the bound of all", "192.0.2.3:5000", "seed-5", is(registry.ErrSeedPending)},
		{"caller A, the same endpoint again", "192.0.2.1:5004", "seed-1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := r.startSeed(t, tc.remote, tc.service, addr)
			checkErr(t, err, tc.want)
			if err == nil {
				pending = append(pending, v)
			}
		})
	}
	if pending[3] != pending[0] {
		t.Fatal("the same endpoint started a second verification")
	}
	release()
	for _, v := range pending {
		if _, err := waitSeed(t, v); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := r.startSeed(t, "192.0.2.3:5000", "seed-5", addr); err != nil {
		t.Fatalf("once the others ended: %v", err)
	} else if _, err := waitSeed(t, v); err != nil {
		t.Fatal(err)
	}
}

// TestRegistry_Close: Close cancels the pending verifications at once
// (their deadline is far), commits nothing even if the service answers
// afterwards, leaves no goroutine, and refuses later registrations.
func TestRegistry_Close(t *testing.T) {
	before := seedGoroutines()
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	r := newRig(t, withSeed(), withConfig(func(c *registry.Config) { c.Seed.VerifyTimeout = time.Minute }))
	var pending []*registry.SeedVerification
	for _, service := range []string{"seed-1", "seed-2", "seed-3"} {
		addr, entered := newHeldTutorial(t, hold)
		v, err := r.startSeed(t, "127.0.0.1:40000", service, addr)
		if err != nil {
			t.Fatal(err)
		}
		<-entered
		pending = append(pending, v)
	}
	if n := seedGoroutines() - before; n != 3 {
		t.Fatalf("%d verification goroutines, want 3", n)
	}

	start := time.Now()
	r.reg.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %s", d)
	}
	for _, v := range pending {
		select {
		case <-v.Done():
		default:
			t.Fatal("a verification is still pending after Close")
		}
		if inst, err := v.Wait(t.Context()); !errors.Is(err, registry.ErrClosed) || inst != nil {
			t.Fatalf("outcome after Close: %+v, %v; want ErrClosed", inst, err)
		}
	}
	// Close waits for every verification to end; a goroutine may still be
	// returning from it for a moment after.
	for deadline := time.Now().Add(time.Second); seedGoroutines()-before != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d verification goroutines left after Close", seedGoroutines()-before)
		}
	}
	release() // the services answer now, too late
	time.Sleep(100 * time.Millisecond)
	if n := len(r.cat.Instances()); n != 0 || r.prop.count(catalog.OpRegister) != 0 {
		t.Fatalf("%d instances, %d registrations proposed after Close", n, r.prop.count(catalog.OpRegister))
	}
	adm, err := r.reg.AdmitSeed("127.0.0.1:40000", "fetch_url")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.reg.RegisterSeed(context.Background(), adm, newTutorial(t).addr()); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("RegisterSeed after Close: %v, %v", v, err)
	}
	r.reg.Close() // again: a no-op
}

// TestRegistry_RegisterSeed_commitWaitsForALeader: a tutorial service
// has been told it is accepted before its callback; if no leader takes
// the commit when the answer comes (an election, longer than one
// proposal's wait), the commit is tried again until a leader takes it,
// and the instance is registered once.
func TestRegistry_RegisterSeed_commitWaitsForALeader(t *testing.T) {
	r := newRig(t, withSeed())
	s := newTutorial(t)
	r.prop.fail(errNoLeader)
	v, err := r.startSeed(t, "127.0.0.1:40000", "fetch_url", s.addr())
	if err != nil {
		t.Fatalf("RegisterSeed: %v", err)
	}
	time.Sleep(time.Second) // the callback is answered; commits fail
	if _, ok := r.cat.Instance(v.ID); ok {
		t.Fatal("committed while no leader took commands")
	}
	r.prop.fail(nil)
	inst, err := waitSeed(t, v)
	if err != nil {
		t.Fatalf("the verification ended with %v once a leader was back", err)
	}
	if got, ok := r.cat.Instance(v.ID); !ok || got.ID != inst.ID {
		t.Fatalf("instance %s not in the catalog", v.ID)
	}
	if _, _, _, calls := s.last(); calls != 1 {
		t.Fatalf("%d callbacks, want 1: retrying the commit must not call again", calls)
	}
}

// TestRegistry_RegisterSeed_commitAnswerLost: the commit of a verified
// tutorial instance is applied but its answer lost (the leader fell
// right after committing); the retry finds the instance there, and the
// verification ends registered, not refused, with one instance.
func TestRegistry_RegisterSeed_commitAnswerLost(t *testing.T) {
	r := newRig(t, withSeed())
	s := newTutorial(t)
	var lost sync.Once
	r.prop.mu.Lock()
	r.prop.lose = func(cmd catalog.Command) bool {
		hit := false
		if cmd.Op == catalog.OpRegister {
			lost.Do(func() { hit = true })
		}
		return hit
	}
	r.prop.mu.Unlock()
	v, err := r.startSeed(t, "127.0.0.1:40000", "fetch_url", s.addr())
	if err != nil {
		t.Fatalf("RegisterSeed: %v", err)
	}
	if _, err := waitSeed(t, v); err != nil {
		t.Fatalf("the verification ended with %v; its instance was committed", err)
	}
	if got := len(r.cat.Instances()); got != 1 {
		t.Fatalf("%d instances, want 1", got)
	}
	if _, ok := r.tracker().Seen(v.ID); !ok {
		t.Fatal("the instance has no heartbeat: it would expire at once")
	}
}
