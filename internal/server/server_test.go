package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
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

// harness is a running server with an admin client (see testserver).
type harness = testserver.Harness

// start runs a server on 127.0.0.1:0 with a temp data dir and fast timers.
func start(tb testing.TB, mutate func(*server.Config)) *harness {
	tb.Helper()
	return testserver.NewHarness(tb, mutate)
}

var (
	regBody    = testserver.RegBody
	eventually = testserver.Eventually
)

func TestServer_RegisterHeartbeatExpireLookup(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "fetch_*")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)

	reg, err := h.Anon.Register(ctx, "fetch_url", k.Secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: inst.Port(), Tags: []string{"v2", "eu"}, Meta: map[string]string{"site": "dice.com"},
		TTL: "1s", Nonce: "n-123",
	})
	if err != nil {
		t.Fatal(err)
	}
	if reg.ID == "" || reg.Service != "fetch_url" || reg.TTL != "1s" || reg.Index == 0 {
		t.Fatalf("register answer = %+v", reg)
	}
	call, ok := inst.LastCall()
	if !ok {
		t.Fatal("instance got no callback")
	}
	if call.Service != "fetch_url" || call.InstanceID != reg.ID || call.Nonce != "n-123" || call.Challenge == "" || call.Token == "" {
		t.Fatalf("callback = %+v", call)
	}
	token := call.Token

	res, err := h.Anon.Lookup(ctx, "fetch_url")
	if err != nil {
		t.Fatal(err)
	}
	if res.Index != reg.Index || len(res.Instances) != 1 {
		t.Fatalf("lookup = %+v, want one instance at index %d", res, reg.Index)
	}
	got := res.Instances[0]
	wantURL := "http://127.0.0.1:" + itoa(inst.Port())
	if got.ID != reg.ID || got.URL != wantURL || got.Status != api.StatusPassing || got.TTLMS != 1000 ||
		got.LastSeenMS < 0 || got.LastSeenMS > 1000 || got.Quality <= 0 || got.Quality > 1 || got.Proof != api.ProofAddressPort {
		t.Fatalf("instance = %+v", got)
	}

	for _, tc := range []struct {
		name string
		opts []client.LookupOption
		want int
	}{
		{"tag match", []client.LookupOption{client.WithTag("v2")}, 1},
		{"all tags match", []client.LookupOption{client.WithTag("v2"), client.WithTag("eu")}, 1},
		{"tag mismatch", []client.LookupOption{client.WithTag("v2"), client.WithTag("us")}, 0},
		{"meta match", []client.LookupOption{client.WithMeta("site", "dice.com")}, 1},
		{"meta mismatch", []client.LookupOption{client.WithMeta("site", "example.org")}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := h.Anon.Lookup(ctx, "fetch_url", tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Instances) != tc.want {
				t.Fatalf("got %d instances, want %d", len(r.Instances), tc.want)
			}
		})
	}

	hb, err := h.Anon.Heartbeat(ctx, reg.ID, token)
	if err != nil || hb.Status != api.StatusPassing || hb.TTL != "1s" {
		t.Fatalf("heartbeat = %+v, %v", hb, err)
	}
	lastBeat := time.Now()
	if _, err := h.Anon.Heartbeat(ctx, reg.ID, "wrong"); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("heartbeat with wrong token: %v, want forbidden", err)
	}
	if _, err := h.Anon.Heartbeat(ctx, "nosuchid", token); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("heartbeat of unknown id: %v, want not found", err)
	}

	// Stop heartbeating: the instance must leave default lookups once its
	// TTL has run out, and not before.
	eventually(t, 5*time.Second, "instance to expire", func() bool {
		r, err := h.Anon.Lookup(ctx, "fetch_url")
		return err == nil && len(r.Instances) == 0
	})
	if since := time.Since(lastBeat); since < time.Second {
		t.Fatalf("instance left lookups %s after its last heartbeat, before its 1s TTL", since)
	}
	eventually(t, 2*time.Second, "critical status committed", func() bool {
		i, ok := h.Srv.Catalog().Instance(reg.ID)
		return ok && i.Status == api.StatusCritical
	})
	anyRes, err := h.Anon.Lookup(ctx, "fetch_url", client.WithStatus("any"))
	if err != nil || len(anyRes.Instances) != 1 || anyRes.Instances[0].Status != api.StatusCritical {
		t.Fatalf("status=any lookup = %+v, %v", anyRes, err)
	}
	if anyRes.Index <= reg.Index {
		t.Fatalf("index did not move on expiry: %d <= %d", anyRes.Index, reg.Index)
	}

	// A heartbeat brings it back.
	hb, err = h.Anon.Heartbeat(ctx, reg.ID, token)
	if err != nil || hb.Status != api.StatusPassing {
		t.Fatalf("heartbeat after expiry = %+v, %v", hb, err)
	}
	res, err = h.Anon.Lookup(ctx, "fetch_url")
	if err != nil || len(res.Instances) != 1 {
		t.Fatalf("lookup after recovery = %+v, %v", res, err)
	}

	// Deregister with the session token.
	if err := h.Anon.Deregister(ctx, reg.ID, "wrong"); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("deregister with wrong token: %v", err)
	}
	if err := h.Anon.Deregister(ctx, reg.ID, token); err != nil {
		t.Fatal(err)
	}
	res, err = h.Anon.Lookup(ctx, "fetch_url", client.WithStatus("any"))
	if err != nil || len(res.Instances) != 0 {
		t.Fatalf("lookup after deregister = %+v, %v", res, err)
	}
	if _, err := h.Anon.Instance(ctx, reg.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get deregistered instance: %v", err)
	}
	if _, err := h.Anon.Heartbeat(ctx, reg.ID, token); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("heartbeat deregistered instance: %v", err)
	}
	if err := h.Anon.Deregister(ctx, reg.ID, token); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("deregister twice: %v", err)
	}

	// Secrets never reach the log.
	logs := h.Logs.String()
	for name, secret := range map[string]string{"key secret": k.Secret, "session token": token} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
	adminTok, _ := os.ReadFile(filepath.Join(h.Dir, "admin-token"))
	if strings.Contains(logs, strings.TrimSpace(string(adminTok))) {
		t.Error("the log contains the admin token")
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestServer_DeregisterAfter(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1s", DeregisterAfter: "2s"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 6*time.Second, "removal after deregister_after", func() bool {
		_, ok := h.Srv.Catalog().Instance(reg.ID)
		return !ok
	})
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("removed after %s, before deregister_after of 2s", d)
	}
	if _, err := h.Anon.Heartbeat(ctx, reg.ID, inst.Calls[0].Token); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("heartbeat after removal: %v, want not found so the SDK registers again", err)
	}
}

func TestServer_ReRegisterReplaces(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	req := api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}
	first, err := h.Anon.Register(ctx, "svc", k.Secret, req)
	if err != nil {
		t.Fatal(err)
	}
	// The same endpoint spelt another way is the same endpoint.
	req.Address = "::ffff:127.0.0.1"
	second, err := h.Anon.Register(ctx, "svc", k.Secret, req)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.Anon.Lookup(ctx, "svc", client.WithStatus("any"))
	if err != nil || len(res.Instances) != 1 || res.Instances[0].ID != second.ID {
		t.Fatalf("lookup = %+v, %v; want only %s", res, err, second.ID)
	}
	if _, err := h.Anon.Heartbeat(ctx, first.ID, inst.Calls[0].Token); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("heartbeat of replaced instance: %v", err)
	}
}

// TestServer_ReplayedProof: a proof captured from one registration does not
// verify another, because every challenge is fresh.
func TestServer_ReplayedProof(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}); err != nil {
		t.Fatal(err)
	}
	first, _ := inst.LastCall()
	captured := verify.Proof(k.Secret, first.Challenge)
	inst.Mu.Lock()
	inst.Handler = func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.VerifyResponse{Proof: captured})
	}
	inst.Mu.Unlock()
	_, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Reason != api.ReasonBadProof {
		t.Fatalf("replayed proof: %v, want verification_failed/bad_proof", err)
	}
	second, _ := inst.LastCall()
	if second.Challenge == first.Challenge {
		t.Fatal("the registry reused a challenge")
	}
	if n := len(h.Srv.Catalog().Instances()); n != 1 {
		t.Fatalf("%d instances, want only the first", n)
	}
}

// TestServer_TokenOnlyToAddress: the registration answer never carries the
// session token; only the callback to the advertised address does.
func TestServer_TokenOnlyToAddress(t *testing.T) {
	h := start(t, nil)
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	status, _, raw := h.Post(t, "svc", k.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}))
	if status != http.StatusCreated {
		t.Fatalf("status %d: %s", status, raw)
	}
	call, _ := inst.LastCall()
	if len(call.Token) < 32 || bytes.Contains(raw, []byte(call.Token)) {
		t.Fatalf("token %q leaked in the answer %s", call.Token, raw)
	}
	want := sha256.Sum256([]byte(call.Token))
	insts := h.Srv.Catalog().Instances()
	if len(insts) != 1 || !bytes.Equal(insts[0].TokenHash, want[:]) {
		t.Fatal("the catalog does not hold the token's SHA-256")
	}
	// Neither the session token nor the key secret is anywhere on disk:
	// not in the Raft log, not in a snapshot.
	if err := h.Srv.Node().Snapshot(); err != nil {
		t.Fatal(err)
	}
	walked := 0
	err := filepath.WalkDir(h.Dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		walked++
		for name, secret := range map[string]string{"session token": call.Token, "key secret": k.Secret} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s found in %s", name, path)
			}
		}
		return nil
	})
	if err != nil || walked < 3 { // raft.db, a snapshot's state and meta, node-id, admin-token
		t.Fatalf("walked %d files of the data dir: %v", walked, err)
	}
}

func TestServer_Drain(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	tok := inst.Calls[0].Token
	if _, err := h.Anon.Drain(ctx, reg.ID, ""); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("drain without token: %v", err)
	}
	if _, err := h.Anon.Drain(ctx, reg.ID, "wrong"); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("drain with wrong token: %v", err)
	}
	if _, err := h.Anon.Drain(ctx, "nope", tok); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("drain unknown: %v", err)
	}
	res, err := h.Anon.Drain(ctx, reg.ID, tok)
	if err != nil || res.Status != api.StatusDraining {
		t.Fatalf("drain = %+v, %v", res, err)
	}
	if l, _ := h.Anon.Lookup(ctx, "svc"); len(l.Instances) != 0 {
		t.Fatalf("draining instance in default lookup: %+v", l)
	}
	if l, _ := h.Anon.Lookup(ctx, "svc", client.WithStatus("draining")); len(l.Instances) != 1 {
		t.Fatalf("status=draining lookup: %+v", l)
	}
	if hb, err := h.Anon.Heartbeat(ctx, reg.ID, tok); err != nil || hb.Status != api.StatusDraining {
		t.Fatalf("heartbeat while draining = %+v, %v", hb, err)
	}
	svcs, err := h.Anon.Services(ctx)
	if err != nil || len(svcs.Services) != 1 || svcs.Services[0].Draining != 1 || svcs.Services[0].Passing != 0 {
		t.Fatalf("services = %+v, %v", svcs, err)
	}
	// The admin token may drain too.
	if _, err := h.Admin.Drain(ctx, reg.ID, ""); err != nil {
		t.Fatal(err)
	}

	// A drained instance that misses its TTL and then heartbeats again is
	// still draining: it does not come back into default lookups.
	short := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg2, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: short.Port(), TTL: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	tok2 := short.Calls[0].Token
	if _, err := h.Anon.Drain(ctx, reg2.ID, tok2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the drained instance to expire", func() bool {
		in, ok := h.Srv.Catalog().Instance(reg2.ID)
		return ok && in.Status == api.StatusCritical
	})
	if hb, err := h.Anon.Heartbeat(ctx, reg2.ID, tok2); err != nil || hb.Status != api.StatusDraining {
		t.Fatalf("heartbeat of a drained, expired instance = %+v, %v; want draining", hb, err)
	}
	if l, _ := h.Anon.Lookup(ctx, "svc"); len(l.Instances) != 0 {
		t.Fatalf("a drained instance is back in default lookups: %+v", l.Instances)
	}
}

// TestServer_VerifyPort: a sidecar answers the callback on another port;
// the instance is listed at its own port with the weaker "address" proof.
func TestServer_VerifyPort(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "svc")
	sidecar := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: 8080, VerifyPort: sidecar.Port()})
	if err != nil {
		t.Fatal(err)
	}
	if sidecar.CallCount() != 1 {
		t.Fatalf("sidecar got %d callbacks", sidecar.CallCount())
	}
	got, err := h.Anon.Instance(ctx, reg.ID)
	if err != nil || got.Port != 8080 || got.Proof != api.ProofAddress {
		t.Fatalf("instance = %+v, %v", got, err)
	}
	same := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg2, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: same.Port(), VerifyPort: same.Port()})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := h.Anon.Instance(ctx, reg2.ID); got.Proof != api.ProofAddressPort {
		t.Fatalf("verify_port equal to port: proof %q", got.Proof)
	}
	status, eb, _ := h.Post(t, "svc", k.Secret, []byte(`{"address":"127.0.0.1","port":80,"verify_port":70000}`))
	if status != 400 || eb.Error.Field != "verify_port" {
		t.Fatalf("bad verify_port: %d %+v", status, eb)
	}
}

// TestServer_CloseDoesNotWaitForSilentConnections: a connection that never
// sends a request (a client's spare dial) does not hold up shutdown for
// net/http's five seconds.
func TestServer_CloseDoesNotWaitForSilentConnections(t *testing.T) {
	h := start(t, nil)
	conn, err := net.Dial("tcp", h.Srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(50 * time.Millisecond) // accepted by the server
	began := time.Now()
	if err := h.Srv.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 4*time.Second {
		t.Fatalf("Close took %s", d)
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the silent connection is still open after Close")
	}
}

// TestServer_FailedVerificationsAreRateLimited: an enrolment key that keeps
// failing verification (probing addresses, say) is slowed down; other keys
// are not.
func TestServer_FailedVerificationsAreRateLimited(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.FailureBurst, c.Registry.FailureEvery = 3, time.Hour })
	prober := h.Key(t, "svc")
	honest := h.Key(t, "svc")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	body := regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: closed})
	for i := 0; i < 3; i++ {
		if status, eb, _ := h.Post(t, "svc", prober.Secret, body); status != 422 {
			t.Fatalf("attempt %d: %d %+v", i, status, eb)
		}
	}
	status, eb, _ := h.Post(t, "svc", prober.Secret, body)
	if status != http.StatusTooManyRequests || eb.Error.Code != api.CodeRateLimited {
		t.Fatalf("fourth failing attempt: %d %+v, want 429 rate_limited", status, eb)
	}
	inst := testutil.NewInstance(t, honest.Secret, verify.Proof)
	if status, eb, _ := h.Post(t, "svc", honest.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()})); status != 201 {
		t.Fatalf("another key: %d %+v", status, eb)
	}
	// Many replicas of a fleet registering at once with one key on one
	// address spend nothing: only failures count.
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replica := testutil.NewInstance(t, honest.Secret, verify.Proof)
			if status, eb, _ := h.Post(t, "svc", honest.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: replica.Port()})); status != 201 {
				t.Errorf("replica: %d %+v", status, eb)
			}
		}()
	}
	wg.Wait()
}
