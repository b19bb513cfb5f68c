package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// The environment variables that make TestCrash longer or repeatable. The
// README's testing section shows them, and TestREADME_CrashCommand keeps
// it true.
const (
	crashRoundsEnv = "MUSTER_CRASH_ROUNDS" // rounds of load and kill -9; default 3
	crashSeedEnv   = "MUSTER_CRASH_SEED"   // seed of the random choices; default random, logged
)

// Sizes of the crash test. Each client keeps at most crashLiveInstances
// instances and crashLiveKeys keys that may exist, so that the registry's
// limits per address and per key never refuse a write.
const (
	crashClients       = 32
	crashCheckers      = 8 // workers checking keys after a restart
	crashLiveInstances = 5
	crashLiveKeys      = 4
	// crashRecheckRevoked is how many keys refused after an earlier
	// restart are tried again after each restart (those revoked since the
	// last one are all tried).
	crashRecheckRevoked = 32
)

// fate is what a client learnt about one write it sent.
type fate int

const (
	fateAcked   fate = iota // a 2xx answer: committed, durably
	fateRefused             // a 4xx answer: not committed
	fateUnknown             // no answer (an error, a timeout, a 5xx): committed or not
)

// classify returns the fate of a write from the client's error.
func classify(err error) fate {
	var ce *client.Error
	switch {
	case err == nil:
		return fateAcked
	case errors.As(err, &ce) && ce.Status >= 400 && ce.Status < 500:
		return fateRefused
	default:
		return fateUnknown
	}
}

// regState is where one registration attempt stands in the model.
type regState int

const (
	regUnknown   regState = iota // registration sent, fate unknown
	regRefused                   // refused: must never appear
	regLive                      // committed: acknowledged, or seen after a restart
	deregUnknown                 // deregistration sent, fate unknown
	regGone                      // deregistration acknowledged, or seen absent after a restart
)

// regAttempt is one registration sent, and what followed. Its service
// and port are unique, so a listed instance names its attempt.
type regAttempt struct {
	service   string
	port      int
	state     regState
	acked     bool // the registration was acknowledged
	deregAck  bool // a deregistration was acknowledged
	id, token string
	check     bool // sent by the key checker, not by a client
}

func (a *regAttempt) where() string { return a.service + "|" + strconv.Itoa(a.port) }

// keyState is where one key creation stands in the model.
type keyState int

const (
	keyUnknown    keyState = iota // creation sent, fate unknown
	keyRefused                    // refused: must never appear
	keyLive                       // committed: acknowledged, or seen after a restart
	revokeUnknown                 // revocation sent, fate unknown
	keyGone                       // revocation acknowledged, or seen absent after a restart
)

// keyAttempt is one key creation sent, and what followed. Its
// description is unique, so a listed key names its attempt.
type keyAttempt struct {
	desc       string
	state      keyState
	acked      bool // the creation was acknowledged
	revokeAck  bool // a revocation was acknowledged
	id, secret string
	refusedOK  bool // registering with it after its revocation was refused once
}

// opCounts counts the writes sent, per operation and fate.
type opCounts map[string]*[3]int

func (o opCounts) add(op string, f fate) {
	if o[op] == nil {
		o[op] = &[3]int{}
	}
	o[op][f]++
}

func (o opCounts) String() string {
	var parts []string
	for _, op := range []string{"register", "deregister", "create key", "revoke key"} {
		if c := o[op]; c != nil {
			parts = append(parts, fmt.Sprintf("%s %d (acknowledged %d, refused %d, no answer %d)", op, c[0]+c[1]+c[2], c[0], c[1], c[2]))
		}
	}
	return strings.Join(parts, "; ")
}

// crashClient is one concurrent client. Its fields are touched by its own
// goroutine during a round, and by the test between rounds.
type crashClient struct {
	n       int
	key     *keyAttempt        // the setup key its instances register with
	inst    *testutil.Instance // answers its registrations' callbacks
	regs    []*regAttempt      // every registration it sent
	keys    []*keyAttempt      // every key it tried to create
	rnd     *rand.Rand
	next    int      // numbers its ports and key descriptions
	sent    opCounts // this round's writes
	anomaly []string // answers that contradict the model, seen while running
}

// TestCrash is a Jepsen-style test of durability: many clients register,
// deregister, create and revoke keys against the real binary, which is
// killed with SIGKILL at a random moment and restarted on the same data
// directory, round after round. After each restart every acknowledged
// write must be reflected (a registered instance is present unless its
// deregistration was acknowledged; a created key is listed and registers;
// a revoked key is refused), a write refused with a 4xx must have had no
// effect, and nothing may appear that no client attempted. A write that
// got no answer may have happened or not; the restart settles which, and
// later rounds hold it to that.
//
// It runs 3 rounds; MUSTER_CRASH_ROUNDS sets more, and MUSTER_CRASH_SEED
// replays the random choices of a logged run (the interleaving of the
// clients still varies).
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	rounds := 3
	if s := os.Getenv(crashRoundsEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number of rounds", crashRoundsEnv, s)
		}
		rounds = n
	}
	seed := rand.Uint64()
	if s := os.Getenv(crashSeedEnv); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want an unsigned number", crashSeedEnv, s)
		}
		seed = n
	}
	t.Logf("%d rounds, %s=%d", rounds, crashSeedEnv, seed)
	rnd := rand.New(rand.NewPCG(seed, 0))

	dir := t.TempDir()
	p := startProc(t, dir)
	token := adminToken(t, dir)
	ctx := context.Background()

	// Before any kill: one key per client, and a fake instance answering
	// its callbacks with that key's secret.
	admin, closeAdmin := crashAPI(t, p.url, token)
	clients := make([]*crashClient, crashClients)
	for i := range clients {
		desc := fmt.Sprintf("crash-setup-c%02d", i)
		k, err := admin.CreateKey(ctx, []string{"crash-*"}, desc)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = &crashClient{
			n:    i,
			key:  &keyAttempt{desc: desc, state: keyLive, acked: true, id: k.ID, secret: k.Secret},
			inst: testutil.NewInstance(t, k.Secret, verify.Proof),
			rnd:  rand.New(rand.NewPCG(seed, uint64(i)+1)),
		}
	}
	closeAdmin()
	checker := newKeyChecker(t)
	var totals crashTotals
	start := time.Now()
	for round := 1; round <= rounds; round++ {
		load := time.Duration(150+rnd.IntN(1350)) * time.Millisecond
		sent := runRound(t, p, token, clients, load)
		p = startProc(t, dir)
		checkCrash(t, p.url, token, clients, checker, &totals)
		t.Logf("round %d: killed after %v of load; sent %s", round, load, sent)
		if t.Failed() {
			t.Fatalf("round %d: the model and the registry disagree (seed %d); the restarted server's log ends:\n%s", round, seed, tail(p.log.String(), 100))
		}
	}
	totals.count(clients)
	t.Logf("%d rounds of kill -9 in %v; acknowledged writes, each checked in the listings after every later restart: %d registrations, %d deregistrations, %d key creations, %d key revocations",
		rounds, time.Since(start).Round(time.Millisecond), totals.regs, totals.deregs, totals.keys, totals.revokes)
	t.Logf("checks: %d of an instance's presence or absence, %d of a key's; %d registrations with a key that must work, %d with a revoked key that must be refused",
		totals.instanceChecks, totals.keyChecks, totals.useChecks, totals.revokedChecks)
	t.Logf("writes without an answer, settled by a restart (happened/sent): registrations %d/%d, deregistrations %d/%d, key creations %d/%d, revocations %d/%d; refused writes shown to have had no effect: %d",
		totals.unknownRegsHappened, totals.unknownRegs, totals.unknownDeregsHappened, totals.unknownDeregs,
		totals.unknownKeysHappened, totals.unknownKeys, totals.unknownRevokesHappened, totals.unknownRevokes, totals.refused)
}

// crashAPI returns a client of the registry at url with token (none if
// empty) and its own connections, and a function that closes them.
func crashAPI(tb testing.TB, url, token string) (*client.Client, func()) {
	tb.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * crashClients}
	c, err := client.New(client.Config{Addr: url, Token: token, HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: tr}})
	if err != nil {
		tb.Fatal(err)
	}
	return c, tr.CloseIdleConnections
}

// runRound runs every client against p for about load, then kills p with
// SIGKILL while their writes are in flight, and returns what they sent.
func runRound(t testing.TB, p *proc, token string, clients []*crashClient, load time.Duration) opCounts {
	admin, closeAdmin := crashAPI(t, p.url, token)
	defer closeAdmin()
	anon, closeAnon := crashAPI(t, p.url, "")
	defer closeAnon()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		c.sent = opCounts{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.step(admin, anon)
			}
		}()
	}
	time.Sleep(load)
	// No client starts a write after this; up to one each is in flight
	// when the server dies.
	close(stop)
	p.kill9(t)
	wg.Wait()
	sent := opCounts{}
	for _, c := range clients {
		for op, n := range c.sent {
			if sent[op] == nil {
				sent[op] = &[3]int{}
			}
			for f, k := range n {
				sent[op][f] += k
			}
		}
		for _, a := range c.anomaly {
			t.Errorf("client %d: %s", c.n, a)
		}
		c.anomaly = nil
	}
	return sent
}

// step sends one write, chosen at random among those the client's caps
// allow, and records its fate.
func (c *crashClient) step(admin, anon *client.Client) {
	var pending, live []*regAttempt
	for _, a := range c.regs {
		switch a.state {
		case regLive:
			live = append(live, a)
			pending = append(pending, a)
		case regUnknown, deregUnknown:
			pending = append(pending, a)
		}
	}
	var pendingKeys, liveKeys []*keyAttempt
	for _, k := range c.keys {
		switch k.state {
		case keyLive:
			liveKeys = append(liveKeys, k)
			pendingKeys = append(pendingKeys, k)
		case keyUnknown, revokeUnknown:
			pendingKeys = append(pendingKeys, k)
		}
	}
	canRegister, canCreate := len(pending) < crashLiveInstances, len(pendingKeys) < crashLiveKeys
	switch r := c.rnd.IntN(100); {
	case canRegister && (r < 45 || r < 70 && len(live) == 0):
		c.register(anon)
	case len(live) > 0 && r < 70:
		c.deregister(anon, live[c.rnd.IntN(len(live))])
	case canCreate && (r < 85 || len(liveKeys) == 0):
		c.createKey(admin)
	case len(liveKeys) > 0:
		c.revokeKey(admin, liveKeys[c.rnd.IntN(len(liveKeys))])
	case len(live) > 0:
		c.deregister(anon, live[c.rnd.IntN(len(live))])
	default:
		time.Sleep(time.Millisecond) // everything it sent awaits a restart
	}
}

// writeTimeout bounds one write; a kill makes the rest fail at once.
const writeTimeout = 10 * time.Second

func (c *crashClient) register(anon *client.Client) {
	n := c.next
	c.next++
	a := &regAttempt{service: fmt.Sprintf("crash-c%02d-%d", c.n, n/60000), port: 1024 + n%60000}
	c.regs = append(c.regs, a)
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	res, err := anon.Register(ctx, a.service, c.key.secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: a.port, VerifyPort: c.inst.Port(), TTL: "1h"})
	f := classify(err)
	c.sent.add("register", f)
	switch f {
	case fateAcked:
		a.state, a.acked, a.id = regLive, true, res.ID
		if a.token = tokenOf(c.inst, res.ID); a.token == "" {
			c.anomaly = append(c.anomaly, fmt.Sprintf("registration %s acknowledged without a callback", res.ID))
		}
	case fateRefused:
		a.state = regRefused
	default:
		a.state = regUnknown
	}
}

func (c *crashClient) deregister(anon *client.Client, a *regAttempt) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	err := anon.Deregister(ctx, a.id, a.token)
	f := classify(err)
	c.sent.add("deregister", f)
	switch f {
	case fateAcked:
		a.state, a.deregAck = regGone, true
	case fateRefused:
		// A committed instance refused its own token's deregistration:
		// "not found" would mean a registration was lost.
		c.anomaly = append(c.anomaly, fmt.Sprintf("deregistering instance %s (%s:%d, committed): %v", a.id, a.service, a.port, err))
		a.state = deregUnknown // let the next check settle it
	default:
		a.state = deregUnknown
	}
}

func (c *crashClient) createKey(admin *client.Client) {
	n := c.next
	c.next++
	k := &keyAttempt{desc: fmt.Sprintf("crash-c%02d-k%d", c.n, n)}
	c.keys = append(c.keys, k)
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	res, err := admin.CreateKey(ctx, []string{"crash-*"}, k.desc)
	f := classify(err)
	c.sent.add("create key", f)
	switch f {
	case fateAcked:
		k.state, k.acked, k.id, k.secret = keyLive, true, res.ID, res.Secret
	case fateRefused:
		k.state = keyRefused
	default:
		k.state = keyUnknown
	}
}

func (c *crashClient) revokeKey(admin *client.Client, k *keyAttempt) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	err := admin.RevokeKey(ctx, k.id)
	f := classify(err)
	c.sent.add("revoke key", f)
	switch f {
	case fateAcked:
		k.state, k.revokeAck = keyGone, true
	case fateRefused:
		c.anomaly = append(c.anomaly, fmt.Sprintf("revoking key %s (%s, committed): %v", k.id, k.desc, err))
		k.state = revokeUnknown
	default:
		k.state = revokeUnknown
	}
}

// tokenOf returns the session token the callback of instance id carried
// to in, or "" if none did.
func tokenOf(in *testutil.Instance, id string) string {
	in.Mu.Lock()
	defer in.Mu.Unlock()
	for i := len(in.Calls) - 1; i >= 0; i-- {
		if in.Calls[i].InstanceID == id {
			return in.Calls[i].Token
		}
	}
	return ""
}

// keyChecker registers with keys after a restart: a created key must
// register, a revoked one must be refused. Its registrations are
// attempts of the model like the clients'; each worker has a fake
// instance that answers with the secret of the key being checked.
type keyChecker struct {
	insts []*testutil.Instance
	mu    sync.Mutex
	regs  []*regAttempt
	next  int
}

func newKeyChecker(tb testing.TB) *keyChecker {
	kc := &keyChecker{}
	for range crashCheckers {
		kc.insts = append(kc.insts, testutil.NewInstance(tb, "", verify.Proof))
	}
	return kc
}

// attempt records a new registration attempt of the checker.
func (kc *keyChecker) attempt() *regAttempt {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	n := kc.next
	kc.next++
	a := &regAttempt{service: fmt.Sprintf("crash-use-%d", n/60000), port: 1024 + n%60000, check: true}
	kc.regs = append(kc.regs, a)
	return a
}

// use registers an instance with k's secret through the worker's fake
// instance in, and deregisters it; it returns what went wrong.
func (kc *keyChecker) use(admin, anon *client.Client, in *testutil.Instance, k *keyAttempt) error {
	in.Mu.Lock()
	in.Secret = k.secret
	in.Mu.Unlock()
	a := kc.attempt()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	res, err := anon.Register(ctx, a.service, k.secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: a.port, VerifyPort: in.Port(), TTL: "1h"})
	switch classify(err) {
	case fateAcked:
		a.state, a.acked, a.id, a.token = regLive, true, res.ID, tokenOf(in, res.ID)
	case fateRefused:
		a.state = regRefused
		return fmt.Errorf("registering with it: %w", err)
	default:
		a.state = regUnknown
		return fmt.Errorf("registering with it: %w", err)
	}
	switch err := admin.Deregister(ctx, a.id, ""); classify(err) {
	case fateAcked:
		a.state, a.deregAck = regGone, true
		return nil
	default:
		a.state = deregUnknown
		return fmt.Errorf("deregistering the instance it registered: %w", err)
	}
}

// refused registers with the revoked key k's secret, which must be
// refused as unknown; it returns what went wrong.
func (kc *keyChecker) refused(anon *client.Client, in *testutil.Instance, k *keyAttempt) error {
	in.Mu.Lock()
	in.Secret = k.secret
	in.Mu.Unlock()
	a := kc.attempt()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	res, err := anon.Register(ctx, a.service, k.secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: a.port, VerifyPort: in.Port(), TTL: "1h"})
	switch classify(err) {
	case fateAcked:
		a.state, a.acked, a.id, a.token = regLive, true, res.ID, tokenOf(in, res.ID)
		return fmt.Errorf("registered instance %s", res.ID)
	case fateRefused:
		a.state = regRefused
		if !errors.Is(err, client.ErrUnauthorized) {
			return fmt.Errorf("refused, but not as an unknown key: %w", err)
		}
		return nil
	default:
		a.state = regUnknown
		return fmt.Errorf("no answer: %w", err)
	}
}

// crashTotals sums up a run: the acknowledged writes the model holds, and
// the checks made.
type crashTotals struct {
	regs, deregs, keys, revokes int

	instanceChecks, keyChecks, useChecks, revokedChecks int
	refused                                             int

	unknownRegs, unknownRegsHappened       int
	unknownDeregs, unknownDeregsHappened   int
	unknownKeys, unknownKeysHappened       int
	unknownRevokes, unknownRevokesHappened int
}

// count adds up the acknowledged writes of the clients (not the
// checker's own).
func (tt *crashTotals) count(clients []*crashClient) {
	for _, c := range clients {
		for _, a := range c.regs {
			tt.regs += b2i(a.acked)
			tt.deregs += b2i(a.deregAck)
		}
		for _, k := range c.keys {
			tt.keys += b2i(k.acked)
			tt.revokes += b2i(k.revokeAck)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkCrash compares the restarted registry at url with the model,
// settles the writes whose fate was unknown, and checks every key by
// registering with it. Disagreements are test errors.
func checkCrash(t testing.TB, url, token string, clients []*crashClient, kc *keyChecker, tt *crashTotals) {
	ctx := context.Background()
	admin, closeAdmin := crashAPI(t, url, token)
	defer closeAdmin()
	anon, closeAnon := crashAPI(t, url, "")
	defer closeAnon()

	// What the registry holds.
	listed := map[string]client.Instance{}
	svcs, err := admin.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs.Services {
		res, err := admin.Lookup(ctx, s.Name, client.WithStatus("any"))
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range res.Instances {
			listed[in.Service+"|"+strconv.Itoa(in.Port)] = in
		}
	}
	keyList, err := admin.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keysListed := map[string]api.Key{}
	for _, k := range keyList {
		keysListed[k.Description] = k
	}

	// Instances: every attempt against what is listed.
	attempts := map[string]*regAttempt{}
	var regs []*regAttempt
	for _, c := range clients {
		regs = append(regs, c.regs...)
	}
	regs = append(regs, kc.regs...)
	tokens := func(a *regAttempt) string {
		for _, c := range clients {
			if strings.HasPrefix(a.service, fmt.Sprintf("crash-c%02d-", c.n)) {
				return tokenOf(c.inst, a.id)
			}
		}
		for _, in := range kc.insts {
			if tok := tokenOf(in, a.id); tok != "" {
				return tok
			}
		}
		return ""
	}
	for _, a := range regs {
		attempts[a.where()] = a
		in, present := listed[a.where()]
		tt.instanceChecks++
		switch a.state {
		case regUnknown:
			tt.unknownRegs++
			a.state = regGone
			if present {
				tt.unknownRegsHappened++
				a.state, a.id = regLive, in.ID
				a.token = tokens(a)
			}
		case regRefused:
			if present {
				t.Errorf("instance %s at %s:%d: its registration was refused, yet it is registered", in.ID, a.service, a.port)
			}
			tt.refused += b2i(!a.check)
			a.state = regGone // checked once; from now on it must stay absent
		case regLive:
			switch {
			case !present:
				t.Errorf("instance %s at %s:%d: registration acknowledged (acked %v), but it is gone", a.id, a.service, a.port, a.acked)
			case in.ID != a.id:
				t.Errorf("instance at %s:%d: registered as %s, listed as %s", a.service, a.port, a.id, in.ID)
			}
		case deregUnknown:
			tt.unknownDeregs++
			a.state = regLive
			if !present {
				tt.unknownDeregsHappened++
				a.state = regGone
			} else if in.ID != a.id {
				t.Errorf("instance at %s:%d: registered as %s, listed as %s", a.service, a.port, a.id, in.ID)
			}
		case regGone:
			if present {
				t.Errorf("instance %s at %s:%d is registered, but its deregistration was acknowledged (%v) or it was absent after an earlier restart",
					in.ID, a.service, a.port, a.deregAck)
			}
		}
	}
	for where, in := range listed {
		if attempts[where] == nil {
			t.Errorf("instance %s at %s:%d was never registered by the test", in.ID, in.Service, in.Port)
		}
	}

	// Keys: every attempt against what is listed; then use them.
	known := map[string]bool{}
	// use: keys that must register; revoked: keys revoked since the last
	// check, which must be refused; again: keys refused at an earlier
	// check, of which a sample is tried again.
	var use, revoked, again []*keyAttempt
	for _, c := range clients {
		known[c.key.desc] = true
		k, ok := keysListed[c.key.desc]
		tt.keyChecks++
		if !ok || k.ID != c.key.id {
			t.Errorf("setup key %s (%s) is missing: listed %+v", c.key.id, c.key.desc, k)
		}
		use = append(use, c.key)
		for _, ka := range c.keys {
			known[ka.desc] = true
			k, present := keysListed[ka.desc]
			tt.keyChecks++
			switch ka.state {
			case keyUnknown:
				tt.unknownKeys++
				ka.state = keyGone
				if present {
					tt.unknownKeysHappened++
					ka.state, ka.id = keyLive, k.ID // its secret is lost with the answer
				}
			case keyRefused:
				if present {
					t.Errorf("key %s (%s): its creation was refused, yet it is listed", k.ID, ka.desc)
				}
				tt.refused++
				ka.state = keyGone
			case keyLive:
				switch {
				case !present:
					t.Errorf("key %s (%s): creation acknowledged (acked %v), but it is gone", ka.id, ka.desc, ka.acked)
				case k.ID != ka.id:
					t.Errorf("key %s: created as %s, listed as %s", ka.desc, ka.id, k.ID)
				case ka.secret != "":
					use = append(use, ka)
				}
			case revokeUnknown:
				tt.unknownRevokes++
				ka.state = keyLive
				if !present {
					tt.unknownRevokesHappened++
					ka.state = keyGone
				} else if ka.secret != "" {
					use = append(use, ka)
				}
			case keyGone:
				if present {
					t.Errorf("key %s (%s) is listed, but its revocation was acknowledged (%v) or it was absent after an earlier restart", k.ID, ka.desc, ka.revokeAck)
				}
			}
			if ka.state == keyGone && ka.revokeAck && ka.secret != "" {
				if ka.refusedOK {
					again = append(again, ka)
				} else {
					revoked = append(revoked, ka)
				}
			}
		}
	}
	for desc, k := range keysListed {
		if !known[desc] {
			t.Errorf("key %s (%q) was never created by the test", k.ID, desc)
		}
	}

	// Every live key registers; every revoked one is refused.
	type job struct {
		k   *keyAttempt
		use bool
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, in := range kc.insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				var err error
				if j.use {
					err = kc.use(admin, anon, in, j.k)
				} else {
					err = kc.refused(anon, in, j.k)
				}
				if err != nil {
					mu.Lock()
					t.Errorf("key %s (%s, use %v): %v", j.k.id, j.k.desc, j.use, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, k := range use {
		jobs <- job{k, true}
	}
	for i := range min(len(again), crashRecheckRevoked) {
		j := i + rand.IntN(len(again)-i)
		again[i], again[j] = again[j], again[i]
		revoked = append(revoked, again[i])
	}
	for _, k := range revoked {
		jobs <- job{k, false}
	}
	close(jobs)
	wg.Wait()
	for _, k := range revoked {
		k.refusedOK = true
	}
	tt.useChecks += len(use)
	tt.revokedChecks += len(revoked)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
