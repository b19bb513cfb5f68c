package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// harness is a running server with an admin client.
type harness struct {
	srv   *server.Server
	dir   string
	admin *client.Client
	anon  *client.Client
	logs  *testutil.Buffer
}

// start runs a server on 127.0.0.1:0 with a temp data dir and fast timers.
func start(tb testing.TB, mutate func(*server.Config)) *harness {
	tb.Helper()
	h := &harness{logs: &testutil.Buffer{}}
	srv := testserver.Start(tb, func(c *server.Config) {
		c.Logger = slog.New(teeHandler{slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}), c.Logger.Handler()})
		if mutate != nil {
			mutate(c)
		}
		h.dir = c.DataDir
	})
	h.srv = srv
	tok, err := os.ReadFile(filepath.Join(h.dir, "admin-token"))
	if err != nil {
		tb.Fatal(err)
	}
	h.admin, _ = client.New(client.Config{Addr: srv.URL(), Token: strings.TrimSpace(string(tok))})
	h.anon, _ = client.New(client.Config{Addr: srv.URL()})
	return h
}

type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	t.a.Handle(ctx, r.Clone())
	return t.b.Handle(ctx, r)
}
func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}
func (t teeHandler) WithGroup(n string) slog.Handler {
	return teeHandler{t.a.WithGroup(n), t.b.WithGroup(n)}
}

// adminToken returns the admin token the server wrote.
func (h *harness) adminToken(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, "admin-token"))
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (h *harness) key(tb testing.TB, patterns ...string) api.Key {
	tb.Helper()
	k, err := h.admin.CreateKey(context.Background(), patterns, "test")
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// post sends a raw registration and returns status and decoded error.
func (h *harness) post(tb testing.TB, service, secret string, body []byte) (int, api.ErrorBody, []byte) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL()+"/v1/services/"+service+"/instances", bytes.NewReader(body))
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var eb api.ErrorBody
	json.Unmarshal(data, &eb)
	return resp.StatusCode, eb, data
}

func regBody(tb testing.TB, req api.RegisterRequest) []byte {
	tb.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServer_RegisterHeartbeatExpireLookup(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.key(t, "fetch_*")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)

	reg, err := h.anon.Register(ctx, "fetch_url", k.Secret, api.RegisterRequest{
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

	res, err := h.anon.Lookup(ctx, "fetch_url")
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
			r, err := h.anon.Lookup(ctx, "fetch_url", tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Instances) != tc.want {
				t.Fatalf("got %d instances, want %d", len(r.Instances), tc.want)
			}
		})
	}

	hb, err := h.anon.Heartbeat(ctx, reg.ID, token)
	if err != nil || hb.Status != api.StatusPassing || hb.TTL != "1s" {
		t.Fatalf("heartbeat = %+v, %v", hb, err)
	}
	lastBeat := time.Now()
	if _, err := h.anon.Heartbeat(ctx, reg.ID, "wrong"); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("heartbeat with wrong token: %v, want forbidden", err)
	}
	if _, err := h.anon.Heartbeat(ctx, "nosuchid", token); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("heartbeat of unknown id: %v, want not found", err)
	}

	// Stop heartbeating: the instance must leave default lookups once its
	// TTL has run out, and not before.
	eventually(t, 5*time.Second, "instance to expire", func() bool {
		r, err := h.anon.Lookup(ctx, "fetch_url")
		return err == nil && len(r.Instances) == 0
	})
	if since := time.Since(lastBeat); since < time.Second {
		t.Fatalf("instance left lookups %s after its last heartbeat, before its 1s TTL", since)
	}
	eventually(t, 2*time.Second, "critical status committed", func() bool {
		i, ok := h.srv.Catalog().Instance(reg.ID)
		return ok && i.Status == api.StatusCritical
	})
	anyRes, err := h.anon.Lookup(ctx, "fetch_url", client.WithStatus("any"))
	if err != nil || len(anyRes.Instances) != 1 || anyRes.Instances[0].Status != api.StatusCritical {
		t.Fatalf("status=any lookup = %+v, %v", anyRes, err)
	}
	if anyRes.Index <= reg.Index {
		t.Fatalf("index did not move on expiry: %d <= %d", anyRes.Index, reg.Index)
	}

	// A heartbeat brings it back.
	hb, err = h.anon.Heartbeat(ctx, reg.ID, token)
	if err != nil || hb.Status != api.StatusPassing {
		t.Fatalf("heartbeat after expiry = %+v, %v", hb, err)
	}
	res, err = h.anon.Lookup(ctx, "fetch_url")
	if err != nil || len(res.Instances) != 1 {
		t.Fatalf("lookup after recovery = %+v, %v", res, err)
	}

	// Deregister with the session token.
	if err := h.anon.Deregister(ctx, reg.ID, "wrong"); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("deregister with wrong token: %v", err)
	}
	if err := h.anon.Deregister(ctx, reg.ID, token); err != nil {
		t.Fatal(err)
	}
	res, err = h.anon.Lookup(ctx, "fetch_url", client.WithStatus("any"))
	if err != nil || len(res.Instances) != 0 {
		t.Fatalf("lookup after deregister = %+v, %v", res, err)
	}
	if _, err := h.anon.Instance(ctx, reg.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get deregistered instance: %v", err)
	}
	if _, err := h.anon.Heartbeat(ctx, reg.ID, token); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("heartbeat deregistered instance: %v", err)
	}
	if err := h.anon.Deregister(ctx, reg.ID, token); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("deregister twice: %v", err)
	}

	// Secrets never reach the log.
	logs := h.logs.String()
	for name, secret := range map[string]string{"key secret": k.Secret, "session token": token} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
	adminTok, _ := os.ReadFile(filepath.Join(h.dir, "admin-token"))
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
	k := h.key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1s", DeregisterAfter: "2s"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 6*time.Second, "removal after deregister_after", func() bool {
		_, ok := h.srv.Catalog().Instance(reg.ID)
		return !ok
	})
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("removed after %s, before deregister_after of 2s", d)
	}
	if _, err := h.anon.Heartbeat(ctx, reg.ID, inst.Calls[0].Token); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("heartbeat after removal: %v, want not found so the SDK registers again", err)
	}
}

func TestServer_ReRegisterReplaces(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	req := api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}
	first, err := h.anon.Register(ctx, "svc", k.Secret, req)
	if err != nil {
		t.Fatal(err)
	}
	// The same endpoint spelt another way is the same endpoint.
	req.Address = "::ffff:127.0.0.1"
	second, err := h.anon.Register(ctx, "svc", k.Secret, req)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.anon.Lookup(ctx, "svc", client.WithStatus("any"))
	if err != nil || len(res.Instances) != 1 || res.Instances[0].ID != second.ID {
		t.Fatalf("lookup = %+v, %v; want only %s", res, err, second.ID)
	}
	if _, err := h.anon.Heartbeat(ctx, first.ID, inst.Calls[0].Token); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("heartbeat of replaced instance: %v", err)
	}
}

func TestServer_RegisterRefusals(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Verify.Timeout = 300 * time.Millisecond })
	ctx := context.Background()
	k := h.key(t, "fetch_*", "dice_scraper")
	revoked := h.key(t, "fetch_url")
	if err := h.admin.RevokeKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	good := api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), Nonce: "abc"}

	// A port with nothing listening.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	var redirected atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { redirected.Add(1) }))
	defer target.Close()

	withPort := func(p int) api.RegisterRequest { r := good; r.Port = p; return r }

	cases := []struct {
		name     string
		service  string
		secret   string
		body     []byte
		handler  http.HandlerFunc
		echo     string
		status   int
		code     string
		field    string
		reason   string
		callback bool // whether the instance is called back
	}{
		{name: "no key", service: "fetch_url", body: regBody(t, good), status: 401, code: api.CodeUnauthorized},
		{name: "unknown key", service: "fetch_url", secret: "mk_nope", body: regBody(t, good), status: 401, code: api.CodeUnauthorized},
		{name: "revoked key", service: "fetch_url", secret: revoked.Secret, body: regBody(t, good), status: 401, code: api.CodeUnauthorized},
		{name: "name outside scope", service: "wordcloud", secret: k.Secret, body: regBody(t, good), status: 403, code: api.CodeForbidden, field: "service"},
		{name: "invalid name", service: "Fetch.URL", secret: k.Secret, body: regBody(t, good), status: 400, code: api.CodeInvalidArgument, field: "service"},
		{name: "malformed json", service: "fetch_url", secret: k.Secret, body: []byte(`{"address": "127.0.0.1",`), status: 400, code: api.CodeInvalidJSON},
		{name: "not an object", service: "fetch_url", secret: k.Secret, body: []byte(`[1,2]`), status: 400, code: api.CodeInvalidJSON},
		{name: "trailing data", service: "fetch_url", secret: k.Secret, body: append(regBody(t, good), []byte(`{}`)...), status: 400, code: api.CodeInvalidJSON},
		{name: "empty body", service: "fetch_url", secret: k.Secret, body: nil, status: 400, code: api.CodeInvalidJSON},
		{name: "unknown field", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"bogus":1}`), status: 400, code: api.CodeUnknownField, field: "bogus"},
		{name: "wrong type", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":"80"}`), status: 400, code: api.CodeInvalidArgument, field: "port"},
		{name: "oversized body", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"` + strings.Repeat("a", 70<<10) + `"}`), status: 413, code: api.CodeBodyTooLarge},
		{name: "port out of range", service: "fetch_url", secret: k.Secret, body: regBody(t, withPort(70000)), status: 400, code: api.CodeInvalidArgument, field: "port"},
		{name: "port zero", service: "fetch_url", secret: k.Secret, body: regBody(t, withPort(0)), status: 400, code: api.CodeInvalidArgument, field: "port"},
		{name: "missing address", service: "fetch_url", secret: k.Secret, body: []byte(`{"port":80}`), status: 400, code: api.CodeInvalidArgument, field: "address"},
		{name: "bad scheme", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"scheme":"ftp"}`), status: 400, code: api.CodeInvalidArgument, field: "scheme"},
		{name: "ttl too short", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"ttl":"500ms"}`), status: 400, code: api.CodeInvalidArgument, field: "ttl"},
		{name: "ttl too long", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"ttl":"2h"}`), status: 400, code: api.CodeInvalidArgument, field: "ttl"},
		{name: "ttl garbage", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"ttl":"soon"}`), status: 400, code: api.CodeInvalidArgument, field: "ttl"},
		{name: "bad verify path", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"verify_path":"x?y"}`), status: 400, code: api.CodeInvalidArgument, field: "verify_path"},
		{name: "verify path escaping with dot segments", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"verify_path":"/.well-known/muster/../../admin/reset"}`), status: 400, code: api.CodeInvalidArgument, field: "verify_path"},
		{name: "verify path escaping with percent-encoding", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"verify_path":"/.well-known/muster/%2e%2e/admin"}`), status: 400, code: api.CodeInvalidArgument, field: "verify_path"},
		{name: "numeric host name", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.1","port":80}`), status: 400, code: api.CodeInvalidArgument, field: "address"},
		{name: "verify path outside /.well-known/muster/", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"verify_path":"/admin/reset"}`), status: 400, code: api.CodeInvalidArgument, field: "verify_path"},
		{name: "bad verify scheme", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"verify_scheme":"gopher"}`), status: 400, code: api.CodeInvalidArgument, field: "verify_scheme"},
		{name: "bad meta key", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"127.0.0.1","port":80,"meta":{"a b":"c"}}`), status: 400, code: api.CodeInvalidArgument, field: "meta"},
		{name: "bad address", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"http://x/","port":80}`), status: 400, code: api.CodeInvalidArgument, field: "address"},
		{name: "address outside allowlist", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"8.8.8.8","port":80}`), status: 422, code: api.CodeAddressNotAllowed, field: "address"},
		{name: "metadata address refused", service: "fetch_url", secret: k.Secret, body: []byte(`{"address":"169.254.169.254","port":80}`), status: 422, code: api.CodeAddressNotAllowed, field: "address"},
		{name: "unreachable", service: "fetch_url", secret: k.Secret, body: regBody(t, withPort(closedPort)), status: 422, code: api.CodeVerificationFailed, reason: api.ReasonUnreachable},
		{name: "bad proof", service: "fetch_url", secret: k.Secret, body: regBody(t, good), status: 422, code: api.CodeVerificationFailed, reason: api.ReasonBadProof, callback: true,
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"proof":"AAAA"}`)) }},
		{name: "proof with another key", service: "fetch_url", secret: k.Secret, body: regBody(t, good), status: 422, code: api.CodeVerificationFailed, reason: api.ReasonBadProof, callback: true,
			handler: func(w http.ResponseWriter, r *http.Request) {
				var vr api.VerifyRequest
				json.NewDecoder(r.Body).Decode(&vr)
				json.NewEncoder(w).Encode(api.VerifyResponse{Proof: verify.Proof(revoked.Secret, vr.Challenge)})
			}},
		{name: "nonce mismatch", service: "fetch_url", secret: k.Secret, body: regBody(t, good), echo: "other", status: 422, code: api.CodeVerificationFailed, reason: api.ReasonNonceMismatch, callback: true},
		{name: "non-200", service: "fetch_url", secret: k.Secret, body: regBody(t, good), status: 422, code: api.CodeVerificationFailed, reason: api.ReasonBadStatus, callback: true,
			handler: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) }},
		{name: "not json answer", service: "fetch_url", secret: k.Secret, body: regBody(t, good), status: 422, code: api.CodeVerificationFailed, reason: api.ReasonBadResponse, callback: true,
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }},
		{name: "oversized answer", service: "fetch_url", secret: k.Secret, body: regBody(t, good), status: 422, code: api.CodeVerificationFailed, reason: api.ReasonBadResponse, callback: true,
			handler: func(w http.ResponseWriter, r *http.Request) { w.Write(bytes.Repeat([]byte(" "), 1<<20)) }},
		{name: "timeout", service: "fetch_url", secret: k.Secret, body: regBody(t, good), status: 422, code: api.CodeVerificationFailed, reason: api.ReasonTimeout, callback: true,
			handler: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(2 * time.Second):
				}
			}},
		{name: "redirect from the callback", service: "fetch_url", secret: k.Secret, body: regBody(t, good), status: 422, code: api.CodeVerificationFailed, reason: api.ReasonRedirect, callback: true,
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+"/steal", http.StatusTemporaryRedirect)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst.Mu.Lock()
			inst.Handler, inst.EchoNonce, inst.Calls = tc.handler, tc.echo, nil
			inst.Mu.Unlock()
			status, eb, raw := h.post(t, tc.service, tc.secret, tc.body)
			if status != tc.status || eb.Error.Code != tc.code {
				t.Fatalf("got %d %s, want %d %s; body %s", status, eb.Error.Code, tc.status, tc.code, raw)
			}
			if eb.Error.Message == "" {
				t.Errorf("error has no message: %s", raw)
			}
			if tc.field != "" && eb.Error.Field != tc.field {
				t.Errorf("field = %q, want %q", eb.Error.Field, tc.field)
			}
			if tc.reason != "" && eb.Error.Reason != tc.reason {
				t.Errorf("reason = %q, want %q (%s)", eb.Error.Reason, tc.reason, eb.Error.Message)
			}
			if got := inst.CallCount() > 0; got != tc.callback {
				t.Errorf("instance called back = %v, want %v", got, tc.callback)
			}
			if n := len(h.srv.Catalog().Instances()); n != 0 {
				t.Fatalf("%d instances stored after a refused registration", n)
			}
		})
	}
	if n := redirected.Load(); n != 0 {
		t.Fatalf("the registry followed a redirect: target got %d requests", n)
	}
}

// TestServer_ReplayedProof: a proof captured from one registration does not
// verify another, because every challenge is fresh.
func TestServer_ReplayedProof(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := h.anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}); err != nil {
		t.Fatal(err)
	}
	first, _ := inst.LastCall()
	captured := verify.Proof(k.Secret, first.Challenge)
	inst.Mu.Lock()
	inst.Handler = func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.VerifyResponse{Proof: captured})
	}
	inst.Mu.Unlock()
	_, err := h.anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Reason != api.ReasonBadProof {
		t.Fatalf("replayed proof: %v, want verification_failed/bad_proof", err)
	}
	second, _ := inst.LastCall()
	if second.Challenge == first.Challenge {
		t.Fatal("the registry reused a challenge")
	}
	if n := len(h.srv.Catalog().Instances()); n != 1 {
		t.Fatalf("%d instances, want only the first", n)
	}
}

// TestServer_TokenOnlyToAddress: the registration answer never carries the
// session token; only the callback to the advertised address does.
func TestServer_TokenOnlyToAddress(t *testing.T) {
	h := start(t, nil)
	k := h.key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	status, _, raw := h.post(t, "svc", k.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}))
	if status != http.StatusCreated {
		t.Fatalf("status %d: %s", status, raw)
	}
	call, _ := inst.LastCall()
	if len(call.Token) < 32 || bytes.Contains(raw, []byte(call.Token)) {
		t.Fatalf("token %q leaked in the answer %s", call.Token, raw)
	}
	want := sha256.Sum256([]byte(call.Token))
	insts := h.srv.Catalog().Instances()
	if len(insts) != 1 || !bytes.Equal(insts[0].TokenHash, want[:]) {
		t.Fatal("the catalog does not hold the token's SHA-256")
	}
	// Neither the session token nor the key secret is anywhere on disk:
	// not in the Raft log, not in a snapshot.
	if err := h.srv.Node().Snapshot(); err != nil {
		t.Fatal(err)
	}
	walked := 0
	err := filepath.WalkDir(h.dir, func(path string, d os.DirEntry, err error) error {
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

func TestServer_Keys(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	if _, err := h.anon.CreateKey(ctx, []string{"x"}, ""); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("create key without token: %v", err)
	}
	other, _ := client.New(client.Config{Addr: h.srv.URL(), Token: "not-admin"})
	if _, err := other.CreateKey(ctx, []string{"x"}, ""); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("create key with wrong token: %v", err)
	}
	if _, err := other.Keys(ctx); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("list keys with wrong token: %v", err)
	}
	for _, bad := range [][]string{nil, {""}, {"UPPER"}, {"a b"}, {strings.Repeat("a", 64)}} {
		if _, err := h.admin.CreateKey(ctx, bad, ""); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("create key %q: %v, want invalid", bad, err)
		}
	}
	k := h.key(t, "fetch_*", "dice_scraper")
	if !strings.HasPrefix(k.Secret, "mk_") || k.ID == "" {
		t.Fatalf("key = %+v", k)
	}
	keys, err := h.admin.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != k.ID || keys[0].Secret != "" {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	if err := h.admin.RevokeKey(ctx, "key_nope"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if err := h.admin.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if keys, _ := h.admin.Keys(ctx); len(keys) != 0 {
		t.Fatalf("keys after revoke = %+v", keys)
	}
	fi, err := os.Stat(filepath.Join(h.dir, "admin-token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

func TestServer_ErrorsAreJSON(t *testing.T) {
	h := start(t, nil)
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/nope", 404, api.CodeNotFound},
		{"PATCH", "/v1/keys", 405, api.CodeMethodNotAllowed},
		{"POST", "/v1/services/x", 405, api.CodeMethodNotAllowed},
		{"GET", "/v1/services/UPPER", 400, api.CodeInvalidArgument},
		{"GET", "/v1/services/x?status=stale", 400, api.CodeInvalidArgument},
		{"GET", "/v1/services/x?meta=novalue", 400, api.CodeInvalidArgument},
		{"GET", "/v1/services/x?bogus=1", 400, api.CodeInvalidArgument},
		{"GET", "/v1/instances/nope", 404, api.CodeNotFound},
		{"PUT", "/v1/instances/nope/heartbeat", 404, api.CodeNotFound},
		{"DELETE", "/v1/instances/nope", 404, api.CodeNotFound},
		{"DELETE", "/v1/keys/nope", 401, api.CodeUnauthorized},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, h.srv.URL()+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var eb api.ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.status || eb.Error.Code != tc.code || eb.Error.Message == "" {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, eb.Error, tc.status, tc.code)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestServer_Health(t *testing.T) {
	h := start(t, nil)
	for _, p := range []string{"/livez", "/readyz"} {
		resp, err := http.Get(h.srv.URL() + p)
		if err != nil {
			t.Fatal(err)
		}
		var hb api.Health
		json.NewDecoder(resp.Body).Decode(&hb)
		resp.Body.Close()
		if resp.StatusCode != 200 || (hb.Status != "ok" && hb.Status != "ready") {
			t.Fatalf("%s = %d %+v", p, resp.StatusCode, hb)
		}
	}
}

func TestServer_Drain(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	tok := inst.Calls[0].Token
	if _, err := h.anon.Drain(ctx, reg.ID, ""); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("drain without token: %v", err)
	}
	if _, err := h.anon.Drain(ctx, reg.ID, "wrong"); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("drain with wrong token: %v", err)
	}
	if _, err := h.anon.Drain(ctx, "nope", tok); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("drain unknown: %v", err)
	}
	res, err := h.anon.Drain(ctx, reg.ID, tok)
	if err != nil || res.Status != api.StatusDraining {
		t.Fatalf("drain = %+v, %v", res, err)
	}
	if l, _ := h.anon.Lookup(ctx, "svc"); len(l.Instances) != 0 {
		t.Fatalf("draining instance in default lookup: %+v", l)
	}
	if l, _ := h.anon.Lookup(ctx, "svc", client.WithStatus("draining")); len(l.Instances) != 1 {
		t.Fatalf("status=draining lookup: %+v", l)
	}
	if hb, err := h.anon.Heartbeat(ctx, reg.ID, tok); err != nil || hb.Status != api.StatusDraining {
		t.Fatalf("heartbeat while draining = %+v, %v", hb, err)
	}
	svcs, err := h.anon.Services(ctx)
	if err != nil || len(svcs.Services) != 1 || svcs.Services[0].Draining != 1 || svcs.Services[0].Passing != 0 {
		t.Fatalf("services = %+v, %v", svcs, err)
	}
	// The admin token may drain too.
	if _, err := h.admin.Drain(ctx, reg.ID, ""); err != nil {
		t.Fatal(err)
	}

	// A drained instance that misses its TTL and then heartbeats again is
	// still draining: it does not come back into default lookups.
	short := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg2, err := h.anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: short.Port(), TTL: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	tok2 := short.Calls[0].Token
	if _, err := h.anon.Drain(ctx, reg2.ID, tok2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the drained instance to expire", func() bool {
		in, ok := h.srv.Catalog().Instance(reg2.ID)
		return ok && in.Status == api.StatusCritical
	})
	if hb, err := h.anon.Heartbeat(ctx, reg2.ID, tok2); err != nil || hb.Status != api.StatusDraining {
		t.Fatalf("heartbeat of a drained, expired instance = %+v, %v; want draining", hb, err)
	}
	if l, _ := h.anon.Lookup(ctx, "svc"); len(l.Instances) != 0 {
		t.Fatalf("a drained instance is back in default lookups: %+v", l.Instances)
	}
}

// TestServer_VerifyPort: a sidecar answers the callback on another port;
// the instance is listed at its own port with the weaker "address" proof.
func TestServer_VerifyPort(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.key(t, "svc")
	sidecar := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: 8080, VerifyPort: sidecar.Port()})
	if err != nil {
		t.Fatal(err)
	}
	if sidecar.CallCount() != 1 {
		t.Fatalf("sidecar got %d callbacks", sidecar.CallCount())
	}
	got, err := h.anon.Instance(ctx, reg.ID)
	if err != nil || got.Port != 8080 || got.Proof != api.ProofAddress {
		t.Fatalf("instance = %+v, %v", got, err)
	}
	same := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg2, err := h.anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: same.Port(), VerifyPort: same.Port()})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := h.anon.Instance(ctx, reg2.ID); got.Proof != api.ProofAddressPort {
		t.Fatalf("verify_port equal to port: proof %q", got.Proof)
	}
	status, eb, _ := h.post(t, "svc", k.Secret, []byte(`{"address":"127.0.0.1","port":80,"verify_port":70000}`))
	if status != 400 || eb.Error.Field != "verify_port" {
		t.Fatalf("bad verify_port: %d %+v", status, eb)
	}
}

// TestServer_LookupEncoding: the lookup's hand-assembled JSON says exactly
// what the generic encoder says for the same instance, even for tags and
// meta that need escaping.
func TestServer_LookupEncoding(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: inst.Port(), TTL: "1h",
		Tags: []string{`q"uote`, `back\slash`, "<html>&", "ünï"},
		Meta: map[string]string{"a.b": `va"l\ue`, "z": "</script>", "emoji": "☃"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(h.srv.URL() + "/v1/services/svc")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var lr api.LookupResponse
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lr); err != nil {
		t.Fatalf("lookup answer %s: %v", raw, err)
	}
	if len(lr.Instances) != 1 || lr.Service != "svc" || lr.Index != reg.Index || resp.Header.Get(api.HeaderIndex) != fmt.Sprint(reg.Index) {
		t.Fatalf("lookup = %s", raw)
	}
	one, err := h.anon.Instance(ctx, reg.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := lr.Instances[0]
	if d := got.LastSeenMS - one.LastSeenMS; d < -1000 || d > 1000 {
		t.Errorf("last_seen_ms %d vs %d", got.LastSeenMS, one.LastSeenMS)
	}
	got.LastSeenMS, got.Quality = one.LastSeenMS, one.Quality
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(one)
	if !bytes.Equal(a, b) {
		t.Fatalf("lookup instance\n %s\nGET instance\n %s", a, b)
	}
}

// TestServer_CloseDoesNotWaitForSilentConnections: a connection that never
// sends a request (a client's spare dial) does not hold up shutdown for
// net/http's five seconds.
func TestServer_CloseDoesNotWaitForSilentConnections(t *testing.T) {
	h := start(t, nil)
	conn, err := net.Dial("tcp", h.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(50 * time.Millisecond) // accepted by the server
	began := time.Now()
	if err := h.srv.Close(); err != nil {
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
	prober := h.key(t, "svc")
	honest := h.key(t, "svc")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	body := regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: closed})
	for i := 0; i < 3; i++ {
		if status, eb, _ := h.post(t, "svc", prober.Secret, body); status != 422 {
			t.Fatalf("attempt %d: %d %+v", i, status, eb)
		}
	}
	status, eb, _ := h.post(t, "svc", prober.Secret, body)
	if status != http.StatusTooManyRequests || eb.Error.Code != api.CodeRateLimited {
		t.Fatalf("fourth failing attempt: %d %+v, want 429 rate_limited", status, eb)
	}
	inst := testutil.NewInstance(t, honest.Secret, verify.Proof)
	if status, eb, _ := h.post(t, "svc", honest.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()})); status != 201 {
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
			if status, eb, _ := h.post(t, "svc", honest.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: replica.Port()})); status != 201 {
				t.Errorf("replica: %d %+v", status, eb)
			}
		}()
	}
	wg.Wait()
}
