package httpapi_test

// Tests of tokens with roles: their lifecycle through /v1/tokens, their
// expiry by the registry's clock, and what a token of limited scope
// reads when reads need one (--anonymous-reads=false). Who may call
// which route is TestAuthz_EveryRouteEveryCredential's.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// register registers one instance of service with the key's secret and
// returns its ID.
func register(t *testing.T, h *harness, service, secret string) string {
	t.Helper()
	inst := testutil.NewInstance(t, secret, verify.Proof)
	reg, err := h.Anon.Register(context.Background(), service, secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	return reg.ID
}

func reader(t *testing.T, h *harness, secret string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Addr: h.Srv.URL(), Token: secret})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTokens_Lifecycle(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	ctx := context.Background()
	key := h.Key(t, "web")
	register(t, h, "web", key.Secret)

	rt, err := h.Admin.CreateToken(ctx, api.CreateTokenRequest{Role: "read", Services: []string{"web"}, TTL: "24h", Description: "dashboards"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rt.ID, "tok_") || !strings.HasPrefix(rt.Secret, "mt_") || rt.Role != "read" || rt.ExpiresAt == "" || rt.Expired {
		t.Fatalf("created %+v", rt)
	}
	exp, err := time.Parse(time.RFC3339, rt.ExpiresAt)
	if err != nil || exp.Sub(time.Now()) < 23*time.Hour || exp.Sub(time.Now()) > 25*time.Hour {
		t.Errorf("expires_at %q, want about a day from now", rt.ExpiresAt)
	}
	at, err := h.Admin.CreateToken(ctx, api.CreateTokenRequest{Role: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(at.Services, []string{"*"}) || at.ExpiresAt != "" {
		t.Errorf("admin token %+v: want services [*] and no expiry", at)
	}

	// The read token reads; an admin-role token manages tokens.
	if _, err := reader(t, h, rt.Secret).Lookup(ctx, "web"); err != nil {
		t.Fatalf("lookup with the read token: %v", err)
	}
	boss := reader(t, h, at.Secret)
	toks, err := boss.Tokens(ctx)
	if err != nil {
		t.Fatalf("tokens listed by an admin-role token: %v", err)
	}
	byID := map[string]api.Token{}
	for _, tk := range toks {
		if tk.Secret != "" {
			t.Errorf("listing shows %s's secret", tk.ID)
		}
		byID[tk.ID] = tk
	}
	if byID[rt.ID].Role != "read" || byID[key.ID].Role != "register" || byID[at.ID].Role != "admin" || len(byID) != 3 {
		t.Errorf("tokens listed: %+v", toks)
	}
	// /v1/keys lists enrolment keys only, and revokes nothing else.
	keys, err := h.Admin.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != key.ID {
		t.Errorf("keys listed: %+v, %v; want only %s", keys, err, key.ID)
	}
	if err := h.Admin.RevokeKey(ctx, rt.ID); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("DELETE /v1/keys/%s: %v, want not found", rt.ID, err)
	}

	// Revoked, it authorises nothing.
	if err := boss.RevokeToken(ctx, rt.ID); err != nil {
		t.Fatal(err)
	}
	_, err = reader(t, h, rt.Secret).Lookup(ctx, "web")
	if !errors.Is(err, client.ErrForbidden) {
		t.Errorf("lookup with a revoked token: %v, want forbidden", err)
	}
	if err := boss.RevokeToken(ctx, rt.ID); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("revoked twice: %v, want not found", err)
	}
}

func TestTokens_CreateRefusals(t *testing.T) {
	h := start(t, nil)
	admin := h.AdminToken(t)
	cases := []struct {
		body, field string
	}{
		{`{"role":"root","services":["web"]}`, "role"},
		{`{"services":["web"]}`, "role"},
		{`{"role":"read"}`, "services"},
		{`{"role":"admin","services":["web"]}`, "services"},
		{`{"role":"read","services":["web"],"max_instances":5}`, "max_instances"},
		{`{"role":"operator","services":["web"],"callback_tls":"any"}`, "callback_tls"},
		{`{"role":"read","services":["web"],"ttl":"5s"}`, "ttl"},
		{`{"role":"read","services":["web"],"ttl":"87601h"}`, "ttl"},
		{`{"role":"read","services":["web"],"ttl":"tomorrow"}`, "ttl"},
		{`{"role":"read","services":["web"],"ttl":"-1h"}`, "ttl"},
		{`{"role":"read","services":["Web!"]}`, "services"},
		{`{"role":"read","services":["web"],"expires_at":"2030-01-01T00:00:00Z"}`, "expires_at"},
	}
	for _, c := range cases {
		resp, data := h.Call(t, http.MethodPost, "/v1/tokens", admin, []byte(c.body), "Content-Type", "application/json")
		var eb api.ErrorBody
		if err := json.Unmarshal(data, &eb); err != nil || resp.StatusCode != 400 || eb.Error.Field != c.field || eb.Error.Message == "" {
			t.Errorf("%s: %d %s, want 400 naming field %q", c.body, resp.StatusCode, data, c.field)
		}
	}
	toks, err := h.Admin.Tokens(context.Background())
	if err != nil || len(toks) != 0 {
		t.Errorf("after refusals, tokens: %+v, %v", toks, err)
	}
}

// TestTokens_Expire: an expired token authorises nothing, as a read, an
// admin's or an operator's operation, or a registration, with a 401 that
// says it expired; it stays listed, marked expired.
func TestTokens_Expire(t *testing.T) {
	var ahead atomic.Int64 // how far the registry's clock runs ahead
	h := start(t, func(c *server.Config) {
		c.Registry.PrivateReads = true
		c.Registry.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	})
	ctx := context.Background()
	key := h.Key(t, "web")
	id := register(t, h, "web", key.Secret)
	tokens := map[string]api.Token{}
	for _, role := range []string{"read", "operator", "admin", "register"} {
		services := []string{"web"}
		if role == "admin" {
			services = nil
		}
		tk, err := h.Admin.CreateToken(ctx, api.CreateTokenRequest{Role: role, Services: services, TTL: "1m"})
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tk
	}
	calls := []struct {
		role, method, path string
		body               string
	}{
		{"read", "GET", "/v1/services/web", ""},
		{"read", "GET", "/v1/services", ""},
		{"operator", "PUT", "/v1/instances/" + id + "/drain", ""},
		{"operator", "GET", "/v1/audit", ""},
		{"admin", "GET", "/v1/tokens", ""},
		{"admin", "GET", "/v1/snapshot", ""},
		{"register", "POST", "/v1/services/web/instances", `{"address":"127.0.0.1","port":1}`},
	}
	for _, c := range calls {
		resp, data := h.Call(t, c.method, c.path, tokens[c.role].Secret, []byte(c.body), "Content-Type", "application/json")
		if resp.StatusCode == 401 || resp.StatusCode == 403 {
			t.Fatalf("before expiry, %s %s with the %s token: %d %s", c.method, c.path, c.role, resp.StatusCode, data)
		}
	}

	ahead.Store(int64(61 * time.Second))
	for _, c := range calls {
		resp, data := h.Call(t, c.method, c.path, tokens[c.role].Secret, []byte(c.body), "Content-Type", "application/json")
		var eb api.ErrorBody
		json.Unmarshal(data, &eb)
		if resp.StatusCode != 401 || eb.Error.Code != api.CodeUnauthorized || !strings.Contains(eb.Error.Message, "expired at") ||
			!strings.Contains(eb.Error.Message, tokens[c.role].ID) {
			t.Errorf("after expiry, %s %s with the %s token: %d %s; want 401 saying it expired", c.method, c.path, c.role, resp.StatusCode, data)
		}
	}
	toks, err := h.Admin.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Listing judges expiry by the wall clock, which has not moved: none
	// is marked yet. (The registry's clock decides what a token may do.)
	for _, tk := range toks {
		if tk.Expired {
			t.Errorf("%s marked expired by the wall clock after a minute's wait it never had", tk.ID)
		}
	}
}

// TestTokens_PrivateReadsScope: with reads private, a token reads only
// the services its patterns cover: a list shows those, a lookup or
// instance read of another is 403, a stream of everything carries only
// theirs, and an operator reads only their audit records.
func TestTokens_PrivateReadsScope(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	ctx := context.Background()
	key := h.Key(t, "*")
	register(t, h, "web", key.Secret)
	register(t, h, "webapp", key.Secret)
	dbID := register(t, h, "db", key.Secret)
	rd := reader(t, h, h.Token(t, "read", "web*").Secret)

	list, err := rd.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.Services {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"web", "webapp"}) {
		t.Errorf("services listed with a web* token: %v, want [web webapp]", names)
	}
	if _, err := rd.Lookup(ctx, "db"); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("lookup of db: %v, want forbidden", err)
	}
	if _, err := rd.Instance(ctx, dbID); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("instance of db: %v, want forbidden", err)
	}
	if _, err := h.Anon.Services(ctx); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("services listed without a token: %v, want unauthorized", err)
	}

	// A stream of every service: the snapshot and the events hold only
	// web*.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	seen := make(chan string, 64)
	go rd.Watch(wctx, client.WatchRequest{}, func(ev client.WatchEvent) error {
		switch {
		case ev.Snapshot != nil:
			for _, in := range ev.Snapshot.Instances {
				seen <- "snapshot " + in.Service
			}
			seen <- "snapshot end"
		case ev.Event != nil:
			seen <- "event " + ev.Event.Service
		}
		return nil
	})
	var got []string
	for s := <-seen; s != "snapshot end"; s = <-seen {
		got = append(got, s)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"snapshot web", "snapshot webapp"}) {
		t.Errorf("stream's snapshot: %v, want web and webapp only", got)
	}
	register(t, h, "db", key.Secret)
	register(t, h, "web", key.Secret)
	if ev := <-seen; ev != "event web" {
		t.Errorf("first event after registering db, then web: %q, want the web one", ev)
	}
	// A stream that names a service out of scope is refused.
	err = rd.Watch(wctx, client.WatchRequest{Services: []string{"db"}}, func(client.WatchEvent) error { return nil })
	if !errors.Is(err, client.ErrForbidden) {
		t.Errorf("stream of db: %v, want forbidden", err)
	}

	// An operator of web reads web's audit records and no others.
	op := reader(t, h, h.Token(t, "operator", "web").Secret)
	page, err := op.Audit(ctx, client.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) == 0 {
		t.Error("an operator of web read no audit records")
	}
	for _, r := range page.Records {
		if r.Service != "web" {
			t.Errorf("an operator of web read a record of %q: %+v", r.Service, r)
		}
	}
	// The refused reads are records themselves (the admin reads them).
	all, err := h.Admin.Audit(ctx, client.AuditQuery{Action: "read", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Records) < 3 {
		t.Errorf("refused reads recorded: %d, want at least 3: %+v", len(all.Records), all.Records)
	}
}

// TestTokens_OnlyEnrolmentKeysRegister: a token of another role, even an
// admin's, is refused a registration with a message that says why.
func TestTokens_OnlyEnrolmentKeysRegister(t *testing.T) {
	h := start(t, nil)
	for _, role := range []string{"read", "operator", "admin"} {
		var services []string
		if role != "admin" {
			services = []string{"web"}
		}
		tk := h.Token(t, role, services...)
		inst := testutil.NewInstance(t, tk.Secret, verify.Proof)
		status, eb, data := h.Post(t, "web", tk.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}))
		if status != 403 || !strings.Contains(eb.Error.Message, "role is "+role) {
			t.Errorf("registration with a %s token: %d %s, want 403 naming its role", role, status, data)
		}
	}
	// A register token (an enrolment key made through /v1/tokens) does.
	tk := h.Token(t, "register", "web")
	if !strings.HasPrefix(tk.ID, "key_") || !strings.HasPrefix(tk.Secret, "mk_") {
		t.Errorf("register token %s: want an enrolment key's ID and secret", tk.ID)
	}
	register(t, h, "web", tk.Secret)
}

// TestTokens_CreateBounds: an empty ttl is refused, not taken for "never
// expires"; a description must be printable; the registry holds at most
// registry.MaxTokens tokens.
func TestTokens_CreateBounds(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.MaxTokens = 3 })
	admin := h.AdminToken(t)
	for _, body := range []string{
		`{"role":"read","services":["web"],"ttl":""}`,
		`{"role":"read","services":["web"],"description":"line\nbreak"}`,
		`{"role":"read","services":["web"],"description":"nul\u0000"}`,
	} {
		resp, data := h.Call(t, http.MethodPost, "/v1/tokens", admin, []byte(body), "Content-Type", "application/json")
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d %s, want 400", body, resp.StatusCode, data)
		}
	}
}

func TestTokens_AtMostMaxTokens(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.MaxTokens = 3 })
	ctx := context.Background()
	h.Key(t, "web")
	h.Token(t, "read", "web")
	last := h.Token(t, "operator", "web")
	_, err := h.Admin.CreateToken(ctx, api.CreateTokenRequest{Role: "read", Services: []string{"web"}})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != api.CodeQuotaExceeded || !strings.Contains(ce.Message, "revoke some") {
		t.Fatalf("a fourth token of three at most: %v", err)
	}
	if err := h.Admin.RevokeToken(ctx, last.ID); err != nil {
		t.Fatal(err)
	}
	h.Token(t, "read", "web") // room again
}

// TestTokens_RefusalNamesTheToken: a drain refused to a token names that
// token in its audit record, not the instance's enrolment key, whose
// holder did nothing.
func TestTokens_RefusalNamesTheToken(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	key := h.Key(t, "web")
	id := register(t, h, "web", key.Secret)
	rd := h.Token(t, "read", "web")
	if resp, _ := h.Call(t, http.MethodPut, "/v1/instances/"+id+"/drain", rd.Secret, nil); resp.StatusCode != 403 {
		t.Fatalf("drain with a read token: %d", resp.StatusCode)
	}
	page, err := h.Admin.Audit(ctx, client.AuditQuery{Action: "drain", Limit: 10})
	if err != nil || len(page.Records) != 1 {
		t.Fatalf("drain records: %+v, %v", page.Records, err)
	}
	if r := page.Records[0]; r.KeyID != rd.ID || r.Outcome == "ok" {
		t.Errorf("the refused drain's record: %+v, want it to name %s", r, rd.ID)
	}
}
