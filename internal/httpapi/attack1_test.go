package httpapi_test

// Failing tests from an outside review (attack1) of tokens with roles and
// private reads (--anonymous-reads=false). Each names what it shows.

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestAttack1_RevokedTokenStreamStops: a stream opened with a read token
// goes on carrying events after the token is revoked (or expires): the
// token is checked only when the stream opens. Revocation "authorises
// nothing from then on", so the stream should end (or carry nothing
// more).
func TestAttack1_RevokedTokenStreamStops(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	ctx := context.Background()
	key := h.Key(t, "*")
	register(t, h, "web", key.Secret)
	tok := h.Token(t, "read", "web")
	rd := reader(t, h, tok.Secret)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	seen := make(chan string, 64)
	go func() {
		rd.Watch(wctx, client.WatchRequest{}, func(ev client.WatchEvent) error {
			switch {
			case ev.Snapshot != nil:
				seen <- "snapshot"
			case ev.Event != nil:
				seen <- "event " + ev.Event.Service
			}
			return nil
		})
		close(seen)
	}()
	if s := <-seen; s != "snapshot" {
		t.Fatalf("first thing on the stream: %q, want the snapshot", s)
	}
	if err := h.Admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Services(ctx); err == nil {
		t.Fatal("the revoked token still lists services")
	}
	register(t, h, "web", key.Secret)
	select {
	case s, ok := <-seen:
		if ok {
			t.Errorf("after its token was revoked, the stream carried %q", s)
		}
	case <-time.After(2 * time.Second):
	}
}

// TestAttack1_EvictedInstanceHiddenFromOutsiders: with private reads, the
// bar of an evicted instance (its service, address, port and the
// operator's reason) is told to anyone who names the instance's ID: a
// caller with no token at all (DELETE, PUT drain, PUT heartbeat), and a
// token whose scope does not cover the service (GET /v1/instances/{id},
// an operator's evict).
func TestAttack1_EvictedInstanceHiddenFromOutsiders(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	ctx := context.Background()
	key := h.Key(t, "*")
	id := register(t, h, "billing", key.Secret)
	if _, err := h.Admin.Evict(ctx, id, 10*time.Minute, "fraud investigation 4411"); err != nil {
		t.Fatal(err)
	}
	rd := h.Token(t, "read", "web").Secret
	op := h.Token(t, "operator", "web").Secret
	for _, c := range []struct {
		method, path, token, who string
	}{
		{http.MethodDelete, "/v1/instances/" + id, "", "no token"},
		{http.MethodPut, "/v1/instances/" + id + "/drain", "", "no token"},
		{http.MethodPut, "/v1/instances/" + id + "/heartbeat", "", "no token"},
		{http.MethodGet, "/v1/instances/" + id, rd, "a read token of web"},
		{http.MethodPost, "/v1/instances/" + id + "/evict", op, "an operator of web"},
	} {
		var body []byte
		if c.method == http.MethodPost {
			body = []byte(`{"for":"1m"}`)
		}
		resp, data := h.Call(t, c.method, c.path, c.token, body, "Content-Type", "application/json")
		if s := string(data); strings.Contains(s, "billing") || strings.Contains(s, "fraud") || strings.Contains(s, "127.0.0.1") {
			t.Errorf("%s %s with %s: %d %s: tells the evicted instance's service, endpoint or reason", c.method, c.path, c.who, resp.StatusCode, strings.TrimSpace(s))
		}
	}
}

// TestAttack1_BlockingListIgnoresOtherServices: a blocking list of
// services with a token scoped to web returns as soon as any other
// service changes (with a new index and nothing new in it), so the
// holder learns when out-of-scope services change.
func TestAttack1_BlockingListIgnoresOtherServices(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	key := h.Key(t, "*")
	register(t, h, "web", key.Secret)
	rd := h.Token(t, "read", "web").Secret
	resp, _ := h.Call(t, http.MethodGet, "/v1/services", rd, nil)
	idx := resp.Header.Get("X-Muster-Index")
	if _, err := strconv.ParseUint(idx, 10, 64); err != nil {
		t.Fatalf("index %q", idx)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		register(t, h, "billing", key.Secret)
	}()
	start := time.Now()
	resp, data := h.Call(t, http.MethodGet, "/v1/services?index="+idx+"&wait=3s", rd, nil)
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("a blocking list scoped to web returned after %v, when billing changed: %d %s (index %s -> %s)",
			took.Round(time.Millisecond), resp.StatusCode, strings.TrimSpace(string(data)), idx, resp.Header.Get("X-Muster-Index"))
	}
}

// TestAttack1_RevokedAnyKeyVouchesForNothing: security.md says "a key
// since revoked vouches for nothing": once a callback_tls any key is
// revoked, its https instances' certificates are to be verified. The
// running checks keep accepting the self-signed certificate until
// something else about the service changes (a stable service: for ever).
func TestAttack1_RevokedAnyKeyVouchesForNothing(t *testing.T) {
	ca := testutil.NewTestCA(t, "instances-ca")
	h := start(t, func(c *server.Config) { c.VerifyCAFile = ca.File })
	ctx := context.Background()
	anyKey, err := h.Admin.NewKey(ctx, api.CreateKeyRequest{Services: []string{"web"}, CallbackTLS: "any"})
	if err != nil {
		t.Fatal(err)
	}
	self := newHealthServerTLS(t, true, nil) // httptest's self-signed certificate
	in := testutil.NewTLSInstance(t, anyKey.Secret, verify.Proof, ca)
	res, err := h.Anon.Register(ctx, "web", anyKey.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), Scheme: "https", TTL: "0s",
		Checks: []api.CheckDecl{{Type: "http", Path: "/healthz", Port: self.port(), Interval: "1s", Timeout: "500ms",
			FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 5*time.Second, "the first probe", func() bool {
		got := lookupAny(t, h, "web", res.ID)
		return len(got.Checks) == 1 && got.Checks[0].Output == "HTTP 200 OK"
	})
	if err := h.Admin.RevokeKey(ctx, anyKey.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if got := lookupAny(t, h, "web", res.ID); len(got.Checks) == 1 && got.Checks[0].Output == "tls: certificate signed by unknown authority" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	got := lookupAny(t, h, "web", res.ID)
	t.Errorf("6s after its any key was revoked, the instance's self-signed certificate is still accepted: %s %+v", got.Status, got.Checks)
}
