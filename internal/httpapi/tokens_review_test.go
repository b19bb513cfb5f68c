package httpapi_test

// Tests from an outside review of tokens with roles and
// private reads (--anonymous-reads=false), each failing before its fix.

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

// TestTokens_RevokedTokenEndsItsStream: a stream opened with a read token
// carries nothing once the token is revoked: revocation "authorises
// nothing from then on", for what was opened before it too.
func TestTokens_RevokedTokenEndsItsStream(t *testing.T) {
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

// TestTokens_EvictionHiddenFromOutsiders: with private reads, the bar
// of an evicted instance (its service, address, port and the operator's
// reason) is not told to a caller who may not read its service: one with
// no token (DELETE, PUT drain, PUT heartbeat), or a token whose scope
// does not cover the service (GET /v1/instances/{id}, an operator's
// evict).
func TestTokens_EvictionHiddenFromOutsiders(t *testing.T) {
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

// TestTokens_ScopedBlockingListIgnoresOthers: a blocking list of
// services with a token scoped to web does not return when another
// service changes, so its holder does not learn when services outside
// its scope change.
func TestTokens_ScopedBlockingListIgnoresOthers(t *testing.T) {
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

// TestChecks_RevokedAnyKeyVouchesForNothing: once a callback_tls any key
// is revoked, its https instances' certificates are verified from the
// next probe on, though nothing else about the service changes.
func TestChecks_RevokedAnyKeyVouchesForNothing(t *testing.T) {
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
