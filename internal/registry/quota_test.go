package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// quota expects a *registry.QuotaError whose message holds want, with a
// wait when waits.
func quota(want string, waits bool) errCheck {
	return func(tb testing.TB, err error) {
		tb.Helper()
		var qe *registry.QuotaError
		if !errors.As(err, &qe) || !strings.Contains(qe.Message, want) || (qe.Wait > 0) != waits {
			tb.Fatalf("error %v (%T), want a QuotaError about %q (waits %v)", err, err, want, waits)
		}
	}
}

// onPort registers the instance at another port of its address, proving
// the host through its own listener (verify_port).
func onPort(in *testutil.Instance, port int) api.RegisterRequest {
	req := at(in)
	req.Port, req.VerifyPort = port, in.Port()
	return req
}

// TestRegistry_Register_quotaPerKey: a key holds at most its
// max_instances (or the server's default); over it, a QuotaError, no
// callback and nothing proposed. Replacing one of its own instances and
// registering after a deregistration stay possible.
func TestRegistry_Register_quotaPerKey(t *testing.T) {
	r := newRig(t, withConfig(func(c *registry.Config) { c.MaxInstancesPerKey = 2 }))
	t.Run("own limit", func(t *testing.T) {
		k, sec, err := r.reg.CreateKey(t.Context(), adminToken, registry.KeySpec{Services: []string{"own"}, MaxInstances: 3})
		if err != nil || k.MaxInstances != 3 {
			t.Fatalf("CreateKey: %+v %v", k, err)
		}
		in := newInstance(t, sec)
		var first registered
		for i := range 3 {
			reg := r.register(t, sec, "own", in, onPort(in, 30000+i))
			if i == 0 {
				first = reg
			}
		}
		calls := in.CallCount()
		r.prop.reset()
		_, err = r.reg.Register(t.Context(), r.admit(t, sec, "own"), onPort(in, 30003))
		checkErr(t, err, quota("holds 3 instances", false))
		if in.CallCount() != calls || len(r.prop.proposed()) != 0 {
			t.Fatal("a registration over quota called back or proposed")
		}
		// Replacing its own instance at the limit is fine.
		r.register(t, sec, "own", in, onPort(in, 30001))
		// After a deregistration there is room again.
		if _, err := r.reg.Deregister(t.Context(), first.ID, first.Token); err != nil {
			t.Fatal(err)
		}
		r.register(t, sec, "own", in, onPort(in, 30003))
		if limit, held := r.reg.KeyUsage(k); limit != 3 || held != 3 {
			t.Fatalf("KeyUsage = %d, %d; want 3, 3", limit, held)
		}
	})
	t.Run("default limit", func(t *testing.T) {
		k, sec, err := r.reg.CreateKey(t.Context(), adminToken, registry.KeySpec{Services: []string{"dflt"}})
		if err != nil {
			t.Fatal(err)
		}
		in := newInstance(t, sec)
		r.register(t, sec, "dflt", in, onPort(in, 31000))
		r.register(t, sec, "dflt", in, onPort(in, 31001))
		_, err = r.reg.Register(t.Context(), r.admit(t, sec, "dflt"), onPort(in, 31002))
		checkErr(t, err, quota("holds 2 instances", false))
		if limit, held := r.reg.KeyUsage(k); limit != 2 || held != 2 {
			t.Fatalf("KeyUsage = %d, %d; want 2, 2", limit, held)
		}
	})
}

// TestRegistry_Register_quotaPerAddress: one address holds at most
// MaxInstancesPerAddress instances, whatever the keys; so one listener
// proving a host cannot vouch for more.
func TestRegistry_Register_quotaPerAddress(t *testing.T) {
	r := newRig(t, withConfig(func(c *registry.Config) { c.MaxInstancesPerAddress = 3 }))
	_, a := r.key(t, "web")
	_, b := r.key(t, "web")
	inA, inB := newInstance(t, a), newInstance(t, b)
	r.register(t, a, "web", inA, onPort(inA, 32000))
	r.register(t, a, "web", inA, onPort(inA, 32001))
	r.register(t, b, "web", inB, onPort(inB, 32002))
	for _, tc := range []struct {
		secret string
		in     *testutil.Instance
	}{{a, inA}, {b, inB}} {
		_, err := r.reg.Register(t.Context(), r.admit(t, tc.secret, "web"), onPort(tc.in, 32003))
		checkErr(t, err, quota("address 127.0.0.1 already holds 3 instances", false))
	}
	// Replacing an instance at the address does not add one.
	r.register(t, b, "web", inB, onPort(inB, 32002))
}

// TestRegistry_Register_rate: RegisterBurst registrations per key at
// once, then one per RegisterEvery, whatever their outcome; over it a
// QuotaError with a wait, and no callback. Another key has its own.
func TestRegistry_Register_rate(t *testing.T) {
	const every = time.Minute
	r := newRig(t, withConfig(func(c *registry.Config) { c.RegisterBurst, c.RegisterEvery = 2, every }))
	_, sec := r.key(t, "web")
	in := newInstance(t, sec)
	r.register(t, sec, "web", in, onPort(in, 33000))
	bad := newInstance(t, "not-the-key")
	_, err := r.reg.Register(t.Context(), r.admit(t, sec, "web"), at(bad))
	checkErr(t, err, verifyErr(api.ReasonBadProof)) // a failure spends too
	calls := in.CallCount()
	_, err = r.reg.Register(t.Context(), r.admit(t, sec, "web"), onPort(in, 33001))
	checkErr(t, err, quota("registers faster", true))
	if in.CallCount() != calls {
		t.Fatal("a registration over the rate called back")
	}
	_, other := r.key(t, "web")
	in2 := newInstance(t, other)
	r.register(t, other, "web", in2, onPort(in2, 33002))
	r.clock.Advance(every)
	r.register(t, sec, "web", in, onPort(in, 33001))
}

// TestRegistry_Register_quotaConcurrent: registrations racing for the
// last places of a key's quota never overshoot it: exactly the limit
// succeed.
func TestRegistry_Register_quotaConcurrent(t *testing.T) {
	const limit, tries = 5, 24
	r := newRig(t)
	_, sec, err := r.reg.CreateKey(t.Context(), adminToken, registry.KeySpec{Services: []string{"web"}, MaxInstances: limit})
	if err != nil {
		t.Fatal(err)
	}
	// The first limit callbacks wait until all of them have arrived, so
	// that registrations are in flight together. A callback past them (a
	// registration that found a place while another was between its
	// release and the catalog's count: the catalog, which holds the
	// limit, refuses it when applied) is answered at once.
	var arrived sync.WaitGroup
	var calls atomic.Int32
	arrived.Add(limit)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var vr api.VerifyRequest
		json.NewDecoder(req.Body).Decode(&vr)
		if calls.Add(1) <= limit {
			arrived.Done()
		}
		arrived.Wait()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.VerifyResponse{Proof: verify.Proof(sec, vr.Challenge)})
	}))
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	var wg sync.WaitGroup
	errs := make([]error, tries)
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := api.RegisterRequest{Address: "127.0.0.1", Port: 34000 + i, VerifyPort: port}
			_, errs[i] = r.reg.Register(context.Background(), r.admit(t, sec, "web"), req)
		}()
	}
	wg.Wait()
	ok, over := 0, 0
	for _, err := range errs {
		var qe *registry.QuotaError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &qe):
			over++
		default:
			t.Errorf("registration: %v", err)
		}
	}
	if ok != limit || over != tries-limit {
		t.Fatalf("%d registered and %d over quota; want %d and %d", ok, over, limit, tries-limit)
	}
	if n := len(r.cat.Instances()); n != limit {
		t.Fatalf("%d instances stored, want %d", n, limit)
	}
}

// TestRegistry_Register_replaceDenied: another key that proves only the
// host (a listener on another port, verify_port) cannot replace an
// instance, so the victim keeps heartbeating; the same key can, and
// nothing is called back for the refusal.
func TestRegistry_Register_replaceDenied(t *testing.T) {
	r := newRig(t)
	_, victim := r.key(t, "web")
	_, attacker := r.key(t, "web")
	vin, ain := newInstance(t, victim), newInstance(t, attacker)
	v := r.register(t, victim, "web", vin, at(vin))

	calls := ain.CallCount()
	_, err := r.reg.Register(t.Context(), r.admit(t, attacker, "web"), onPort(ain, vin.Port()))
	checkErr(t, err, is(catalog.ErrReplaceDenied))
	if ain.CallCount() != calls {
		t.Fatal("a refused replacement called back")
	}
	if _, _, err := r.reg.Heartbeat(t.Context(), v.ID, v.Token); err != nil {
		t.Fatalf("the victim's heartbeat after the attempt: %v", err)
	}
	// The catalog refuses it too, whatever the registry checked.
	res := r.prop.apply(catalog.Command{Op: catalog.OpRegister, Rules: catalog.RulesCurrent, Instance: &catalog.Instance{
		ID: "x", Service: "web", Address: "127.0.0.1", Port: vin.Port(), Scheme: "http", TTL: time.Second,
		DeregisterAfter: time.Minute, TokenHash: catalog.HashSecret("x"), KeyID: keyID(t, r, attacker), Status: catalog.StatusPassing,
		Proof: api.ProofAddress}})
	if !errors.Is(res.Err, catalog.ErrReplaceDenied) {
		t.Fatalf("catalog: %v", res.Err)
	}
	// The victim's own key may move its instance to a sidecar's proof.
	vside := newInstance(t, victim)
	r.register(t, victim, "web", vside, onPort(vside, vin.Port()))
	if catalog.ProofAddressPort != api.ProofAddressPort {
		t.Fatal("catalog and api spell the proof of a port differently")
	}
}

func keyID(tb testing.TB, r *rig, secret string) string {
	tb.Helper()
	k, ok := r.cat.KeyBySecretHash(catalog.HashSecret(secret))
	if !ok {
		tb.Fatal("no such key")
	}
	return k.ID
}

// TestRegistry_AdmitSeed_keyedName: a name that has had /v1 instances is
// never taken by the tutorial protocol, even once they are all gone (a
// rolling restart deregisters, then registers).
func TestRegistry_AdmitSeed_keyedName(t *testing.T) {
	r := newRig(t, withSeed())
	_, sec := r.key(t, "seed-billing")
	in := newInstance(t, sec)
	reg := r.register(t, sec, "seed-billing", in, at(in))
	if _, err := r.reg.Deregister(t.Context(), reg.ID, reg.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := r.reg.AdmitSeed("127.0.0.1:40000", "seed-billing"); !errors.Is(err, catalog.ErrProtocolMix) {
		t.Fatalf("AdmitSeed of a name /v1 held: %v", err)
	}
	if _, err := r.reg.AdmitSeed("127.0.0.1:40000", "seed-other"); err != nil {
		t.Fatalf("AdmitSeed of a name /v1 never held: %v", err)
	}
}

// TestRegistry_RegisterSeed_globalFailures: callers of the tutorial
// protocol rotating their source address through 127/8 escape the
// per-address failure limit, but not the protocol's own: after its
// burst, failed callbacks stop, for every caller.
func TestRegistry_RegisterSeed_globalFailures(t *testing.T) {
	r := newRig(t, withSeed())
	addr := registry.SeedAddr{Scheme: "http", Host: "127.0.0.1", Port: closedPort(t)}
	burst := 10 * registry.DefaultConfig().FailureBurst
	limited := 0
	for i := range 3 * burst {
		adm, err := r.reg.AdmitSeed(fmt.Sprintf("127.%d.%d.1:5000", i/256, i%256), "fetch_url")
		if err != nil {
			t.Fatal(err)
		}
		v, err := r.reg.RegisterSeed(t.Context(), adm, addr)
		if err == nil {
			_, err = v.Wait(t.Context()) // its failure spends when it ends
		}
		var rle *registry.RateLimitError
		if errors.As(err, &rle) {
			limited++
		}
	}
	if failed := 3*burst - limited; failed > burst+1 {
		t.Fatalf("%d failed callbacks from rotating addresses; want at most %d", failed, burst+1)
	}
}

// TestRegistry_Register_quotaCommittedNotPending: a registration that is
// committed but has not yet returned is counted once, not as committed
// and pending both: another registration for the key's last place is
// admitted.
func TestRegistry_Register_quotaCommittedNotPending(t *testing.T) {
	r := newRig(t)
	_, sec, err := r.reg.CreateKey(t.Context(), adminToken, registry.KeySpec{Services: []string{"web"}, MaxInstances: 2})
	if err != nil {
		t.Fatal(err)
	}
	a, b := newInstance(t, sec), newInstance(t, sec)
	bCalled := make(chan struct{})
	setHandler(b, answering(b, func() { close(bCalled) }))
	// A's commit is applied, then A waits (before its reservation is
	// released) until B has been admitted and called back.
	var once sync.Once
	r.prop.setAfter(func(catalog.Command) { once.Do(func() { <-bCalled }) })
	errA := make(chan error, 1)
	go func() {
		_, err := r.reg.Register(context.Background(), r.admit(t, sec, "web"), at(a))
		errA <- err
	}()
	for len(r.cat.Instances()) == 0 {
		time.Sleep(time.Millisecond)
	}
	_, errB := r.reg.Register(t.Context(), r.admit(t, sec, "web"), at(b))
	if errB != nil {
		t.Fatalf("the key's second place, while the first registration returns: %v", errB)
	}
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
}

// TestRegistry_WritesBoundedPerKey: a token holder cannot grow the log
// without end: draining a draining instance writes nothing, and the
// returns to passing of a flapping instance spend its key's write budget;
// out of budget, the beat is kept and the instance stays critical.
func TestRegistry_WritesBoundedPerKey(t *testing.T) {
	const every = time.Minute
	r := newRig(t, withConfig(func(c *registry.Config) { c.RegisterBurst, c.RegisterEvery = 3, every }))
	_, sec := r.key(t, "web")
	in := newInstance(t, sec)
	reg := r.register(t, sec, "web", in, at(in)) // spends 1 of 3

	r.prop.reset()
	for range 100 {
		if _, _, err := r.reg.Drain(t.Context(), reg.ID, reg.Token); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.prop.count(catalog.OpDrain); n != 1 {
		t.Fatalf("100 drains proposed %d commands, want 1", n)
	}

	flap := func() catalog.Status {
		t.Helper()
		r.commit(t, catalog.Command{Op: catalog.OpSetStatus, ID: reg.ID, Status: catalog.StatusCritical})
		_, st, err := r.reg.Heartbeat(t.Context(), reg.ID, reg.Token)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	r.prop.reset()
	for i, want := range []catalog.Status{catalog.StatusDraining, catalog.StatusDraining, catalog.StatusCritical, catalog.StatusCritical} {
		if got := flap(); got != want {
			t.Fatalf("flap %d: status %s, want %s", i, got, want)
		}
	}
	if n := r.prop.count(catalog.OpSetStatus); n != 2 {
		t.Fatalf("4 recoveries proposed %d commands, want 2 (the budget left)", n)
	}
	r.clock.Advance(every)
	if got := flap(); got != catalog.StatusDraining {
		t.Fatalf("after a refill: status %s", got)
	}
}

// TestRegistry_Register_rateLimitNamesTheLimit: once a key's failures
// across all addresses are spent, a never-tried address is refused with
// a message naming the key's limit, not the key-and-address one.
func TestRegistry_Register_rateLimitNamesTheLimit(t *testing.T) {
	const every = time.Minute
	r := newRig(t, withConfig(func(c *registry.Config) { c.FailureBurst, c.FailureEvery = 1, every }))
	_, sec := r.key(t, "web")
	port := closedPort(t)
	for i := range 3 { // the key's own burst is three times the address's
		_, err := r.reg.Register(t.Context(), r.admit(t, sec, "web"), api.RegisterRequest{Address: fmt.Sprintf("127.0.0.%d", i+2), Port: port})
		checkErr(t, err, verifyErr(api.ReasonUnreachable))
	}
	_, err := r.reg.Register(t.Context(), r.admit(t, sec, "web"), api.RegisterRequest{Address: "127.0.0.9", Port: port})
	var rle *registry.RateLimitError
	if !errors.As(err, &rle) || rle.Who != "enrolment key" {
		t.Fatalf("a never-tried address after the key's failures: %v", err)
	}
}

// TestRegistry_Register_quotaPerHostNotSpelling: the limit per address
// counts hosts, not spellings: instances at 127.0.0.1 and at localhost
// (which resolves to it) count together, and an instance records the
// address that stood for its host.
func TestRegistry_Register_quotaPerHostNotSpelling(t *testing.T) {
	r := newRig(t, withConfig(func(c *registry.Config) { c.MaxInstancesPerAddress = 2 }))
	_, sec := r.key(t, "web")
	in := newInstance(t, sec)
	r.register(t, sec, "web", in, onPort(in, 35000))
	named := onPort(in, 35001)
	named.Address = "localhost"
	reg := r.register(t, sec, "web", in, named)
	if inst, _ := r.cat.Instance(reg.ID); inst.HostIP != "127.0.0.1" || inst.Address != "localhost" {
		t.Fatalf("instance at localhost recorded host %q, address %q", inst.HostIP, inst.Address)
	}
	for _, addr := range []string{"localhost", "127.0.0.1", "LOCALHOST."} {
		req := onPort(in, 35002)
		req.Address = addr
		_, err := r.reg.Register(t.Context(), r.admit(t, sec, "web"), req)
		checkErr(t, err, quota("address 127.0.0.1 already holds 2 instances", false))
	}
}
