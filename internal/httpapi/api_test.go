package httpapi_test

// Tests of the /v1 HTTP surface (status codes, error bodies, headers,
// encodings) against a real registry on 127.0.0.1.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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

type harness = testserver.Harness

func start(tb testing.TB, mutate func(*server.Config)) *harness {
	tb.Helper()
	return testserver.NewHarness(tb, mutate)
}

var regBody = testserver.RegBody

func TestAPI_RegisterRefusals(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Verify.Timeout = 300 * time.Millisecond })
	ctx := context.Background()
	k := h.Key(t, "fetch_*", "dice_scraper")
	revoked := h.Key(t, "fetch_url")
	if err := h.Admin.RevokeKey(ctx, revoked.ID); err != nil {
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

	// The key holds an instance at 127.0.0.1, so failed callbacks there
	// get their precise reason (TestAPI_CallbackReasonsOpaque covers a
	// key that does not).
	anchor := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := h.Anon.Register(ctx, "fetch_anchor", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: anchor.Port()}); err != nil {
		t.Fatal(err)
	}

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
			status, eb, raw := postPatient(t, h, tc.service, tc.secret, tc.body)
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
			if n := len(h.Srv.Catalog().Instances()); n != 1 {
				t.Fatalf("%d instances stored after a refused registration, want the anchor alone", n)
			}
		})
	}
	if n := redirected.Load(); n != 0 {
		t.Fatalf("the registry followed a redirect: target got %d requests", n)
	}
}

func TestAPI_Keys(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	if _, err := h.Anon.CreateKey(ctx, []string{"x"}, ""); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("create key without token: %v", err)
	}
	other, _ := client.New(client.Config{Addr: h.Srv.URL(), Token: "not-admin"})
	if _, err := other.CreateKey(ctx, []string{"x"}, ""); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("create key with wrong token: %v", err)
	}
	if _, err := other.Keys(ctx); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("list keys with wrong token: %v", err)
	}
	for _, bad := range [][]string{nil, {""}, {"UPPER"}, {"a b"}, {strings.Repeat("a", 64)}} {
		if _, err := h.Admin.CreateKey(ctx, bad, ""); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("create key %q: %v, want invalid", bad, err)
		}
	}
	k := h.Key(t, "fetch_*", "dice_scraper")
	if !strings.HasPrefix(k.Secret, "mk_") || k.ID == "" {
		t.Fatalf("key = %+v", k)
	}
	keys, err := h.Admin.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != k.ID || keys[0].Secret != "" {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	if err := h.Admin.RevokeKey(ctx, "key_nope"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if err := h.Admin.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if keys, _ := h.Admin.Keys(ctx); len(keys) != 0 {
		t.Fatalf("keys after revoke = %+v", keys)
	}
	fi, err := os.Stat(filepath.Join(h.Dir, "admin-token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

func TestAPI_ErrorsAreJSON(t *testing.T) {
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
		{"GET", "/v1/services/x?status=passing&status=any", 400, api.CodeInvalidArgument},
		{"GET", "/v1/services/x?index=1&index=2", 400, api.CodeInvalidArgument},
		{"GET", "/v1/services?stale&stale", 400, api.CodeInvalidArgument},
		{"GET", "/v1/instances/nope?consistent&consistent", 400, api.CodeInvalidArgument},
		{"GET", "/v1/keys?x=1", 400, api.CodeInvalidArgument},
		{"GET", "/v1/cluster/members?x=1&x=2", 400, api.CodeInvalidArgument},
		{"GET", "/v1/cluster/self?verbose", 400, api.CodeInvalidArgument},
		{"PUT", "/v1/instances/nope/heartbeat?ttl=5s", 400, api.CodeInvalidArgument},
		{"GET", "/v1/snapshot?x=1", 400, api.CodeInvalidArgument},
		{"GET", "/v1/instances/nope", 404, api.CodeNotFound},
		{"PUT", "/v1/instances/nope/heartbeat", 404, api.CodeNotFound},
		{"DELETE", "/v1/instances/nope", 404, api.CodeNotFound},
		{"DELETE", "/v1/keys/nope", 401, api.CodeUnauthorized},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, h.Srv.URL()+tc.path, nil)
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

func TestAPI_Health(t *testing.T) {
	h := start(t, nil)
	for _, p := range []string{"/livez", "/readyz"} {
		resp, err := http.Get(h.Srv.URL() + p)
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

// TestServer_LookupEncoding: the lookup's hand-assembled JSON says exactly
// what the generic encoder says for the same instance, even for tags and
// meta that need escaping.
func TestAPI_LookupEncoding(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: inst.Port(), TTL: "1h",
		Tags: []string{`q"uote`, `back\slash`, "<html>&", "ünï"},
		Meta: map[string]string{"a.b": `va"l\ue`, "z": "</script>", "emoji": "☃"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(h.Srv.URL() + "/v1/services/svc")
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
	one, err := h.Anon.Instance(ctx, reg.ID)
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

// TestAPI_NonCanonicalPaths: a path with an empty, . or .. segment (an
// empty $ID in a script) answers the JSON 404 of an unknown endpoint,
// never a bare redirect.
func TestAPI_NonCanonicalPaths(t *testing.T) {
	h := start(t, nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct{ method, path string }{
		{"PUT", "/v1/instances//heartbeat"},
		{"GET", "//v1/services"},
		{"GET", "/v1/./services"},
		{"GET", "/v1/services/../keys"},
		{"DELETE", "/v1/instances/"},
		{"GET", "/v1//services/x"},
	} {
		req, _ := http.NewRequest(tc.method, h.Srv.URL()+tc.path, nil)
		req.URL.Opaque = tc.path // sent as written, not cleaned by the client
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb api.ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != 404 || eb.Error.Code != api.CodeNotFound || resp.Header.Get("Location") != "" {
			t.Errorf("%s %s: %d %+v Location %q, want the JSON 404", tc.method, tc.path, resp.StatusCode, eb, resp.Header.Get("Location"))
		}
	}
	// CONNECT (as to a proxy) gets a JSON answer too.
	conn, err := net.Dial("tcp", h.Srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
	resp0, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	var eb api.ErrorBody
	json.NewDecoder(resp0.Body).Decode(&eb)
	resp0.Body.Close()
	if resp0.StatusCode != 405 || eb.Error.Code != api.CodeMethodNotAllowed {
		t.Errorf("CONNECT: %d %+v", resp0.StatusCode, eb)
	}
	// Canonical paths still route, with or without a trailing slash where
	// the route has one.
	resp, err := http.Get(h.Srv.URL() + "/v1/services")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/services: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestLookup_RepeatedFilters: tag and meta take lists (an instance must
// match every one), while a parameter that takes one value is refused
// when given twice (see TestAPI_Errors), rather than read as one of them.
func TestLookup_RepeatedFilters(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "web")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(),
		Tags: []string{"v1", "blue"}, Meta: map[string]string{"zone": "a", "rack": "7"}}); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]int{
		"tag=v1&tag=blue":             1,
		"tag=v1&tag=green":            0,
		"meta=zone:a&meta=rack:7":     1,
		"meta=zone:a&meta=rack:8":     0,
		"tag=blue&meta=zone:a&tag=v1": 1,
		"tag=blue&meta=zone:b&tag=v1": 0,
	} {
		code, lr, _, _ := getLookup(t, h.Srv.URL()+"/v1/services/web?"+q)
		if code != 200 || len(lr.Instances) != want {
			t.Errorf("?%s: %d with %d instances, want 200 with %d", q, code, len(lr.Instances), want)
		}
	}
}
