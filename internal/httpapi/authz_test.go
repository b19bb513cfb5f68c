package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// The credentials a request may carry, strongest last.
const (
	credNone    = "none"    // no Authorization header
	credGarbage = "garbage" // a bearer token that is nothing
	credMetrics = "metrics" // the metrics token
	credOther   = "other"   // the session token of another instance
	credSession = "session" // the session token of the instance the path names
	credKey     = "key"     // an enrolment key whose scope holds the service
	credKeyOut  = "key-out" // an enrolment key whose scope does not
	credAdmin   = "admin"   // the admin token
)

var credentials = []string{credNone, credGarbage, credMetrics, credOther, credSession, credKey, credKeyOut, credAdmin}

// An expected outcome: whether the request got past authorisation, or
// which refusal it got (401 without a credential it knows, 403 with one
// that is not enough).
const (
	pass = "pass" // any answer but 401 and 403
	r401 = "401"
	r403 = "403"
)

// authz is the authorisation table of every route of the API: for each,
// what each credential gets. It is the threat model's "who may write"
// column (docs/security.md), route by route; TestAuthz_EveryRouteEveryCredential
// holds the server to it, and fails when a route is added without a row.
// Reads are open to anyone (--anonymous-reads is the default); a
// credential a read does not need is ignored, whatever it is.
var authz = map[string]map[string]string{
	"GET /livez":  allPass(),
	"GET /readyz": allPass(),
	// With a metrics token set (as here), it or the admin token; without
	// one, loopback callers only (TestMetrics_stranger).
	"GET /metrics": {credNone: r401, credGarbage: r403, credMetrics: pass, credOther: r403, credSession: r403,
		credKey: r403, credKeyOut: r403, credAdmin: pass},

	"POST /v1/keys":                   adminOnly(),
	"GET /v1/keys":                    adminOnly(),
	"DELETE /v1/keys/{id}":            adminOnly(),
	"GET /v1/snapshot":                adminOnly(),
	"PUT /v1/snapshot":                adminOnly(),
	"GET /v1/audit":                   adminOnly(),
	"DELETE /v1/cluster/members/{id}": adminOnly(),

	// Registration takes an enrolment key whose scope holds the service;
	// the admin token is no enrolment key.
	"POST /v1/services/{service}/instances": {credNone: r401, credGarbage: r401, credMetrics: r401, credOther: r401,
		credSession: r401, credKey: pass, credKeyOut: r403, credAdmin: r401},
	"GET /v1/services":           allPass(),
	"GET /v1/services/{service}": allPass(),
	"GET /v1/watch":              allPass(),
	"GET /v1/instances/{id}":     allPass(),
	"GET /v1/cluster/members":    allPass(),
	"GET /v1/cluster/self":       allPass(),

	// An instance's own session token, or the admin token for what an
	// operator may do to any instance; a heartbeat is the instance's own.
	"PUT /v1/instances/{id}/heartbeat": ownerOnly(r403),
	"POST /v1/heartbeats":              ownerOnly(r403),
	"PUT /v1/instances/{id}/drain":     ownerOrAdmin(),
	"DELETE /v1/instances/{id}":        ownerOrAdmin(),
	"POST /v1/instances/{id}/evict":    adminOnly(),
	// A certificate is the instance's own: its session token only (the
	// admin token is refused too: it proves no instance's key).
	"POST /v1/instances/{id}/certificate": ownerOnly(r403),
	"GET /v1/ca":                          allPass(),
	"POST /v1/ca/rotate":                  adminOnly(),
}

func allPass() map[string]string {
	m := map[string]string{}
	for _, c := range credentials {
		m[c] = pass
	}
	return m
}

func adminOnly() map[string]string {
	m := map[string]string{}
	for _, c := range credentials {
		m[c] = r403
	}
	m[credNone], m[credAdmin] = r401, pass
	return m
}

func ownerOrAdmin() map[string]string {
	m := ownerOnly(r403)
	m[credAdmin] = pass
	return m
}

// ownerOnly: the instance's session token passes, no credential is 401,
// and any other is admin's answer.
func ownerOnly(admin string) map[string]string {
	m := map[string]string{}
	for _, c := range credentials {
		m[c] = r403
	}
	m[credNone], m[credSession], m[credAdmin] = r401, pass, admin
	return m
}

// TestAuthz_EveryRouteEveryCredential calls every route of the API with
// every kind of credential and checks what authz says: a route that
// lets a credential through that it should not, or refuses one it
// should take, or a route without a row, fails. Each call is made on a
// fresh instance and key where it would change them.
func TestAuthz_EveryRouteEveryCredential(t *testing.T) {
	const metricsToken = "metrics-token-0123456789"
	h := start(t, func(c *server.Config) {
		c.MetricsToken = metricsToken
		c.Registry.MaxInstancesPerAddress = 10000 // every call has instances of its own, all on 127.0.0.1
		c.Registry.RegisterBurst = 10000
	})
	ctx := context.Background()
	admin := h.AdminToken(t)
	keyOut := h.Key(t, "other-*")

	var routes []string
	routes = append(routes, httpapi.Routes()...)
	routes = append(routes, "GET /metrics")
	for _, r := range routes {
		if _, ok := authz[r]; !ok {
			t.Errorf("route %s has no row in the authorisation table (authz)", r)
		}
	}
	for r := range authz {
		if !slices.Contains(routes, r) {
			t.Errorf("authz has a row for %s, which is not a route", r)
		}
	}

	type fixture struct {
		key     api.Key
		id      string
		token   string
		otherTk string
	}
	// fresh registers two instances of "web" with a fresh key, for a call
	// that may change them.
	fresh := func() fixture {
		k := h.Key(t, "web")
		var f fixture
		f.key = k
		for i := range 2 {
			inst := testutil.NewInstance(t, k.Secret, verify.Proof)
			reg, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				f.id, f.token = reg.ID, inst.TokenOf(reg.ID)
			} else {
				f.otherTk = inst.TokenOf(reg.ID)
			}
		}
		return f
	}

	var got []string
	sort.Strings(routes)
	for _, route := range routes {
		method, pattern, _ := strings.Cut(route, " ")
		for _, cred := range credentials {
			want := authz[route][cred]
			f := fresh()
			bearer := map[string]string{credNone: "", credGarbage: "nope-not-a-token", credMetrics: metricsToken,
				credOther: f.otherTk, credSession: f.token, credKey: f.key.Secret, credKeyOut: keyOut.Secret, credAdmin: admin}[cred]
			path := strings.NewReplacer("{service}", "web", "{id}", f.id).Replace(pattern)
			var body []byte
			switch route {
			case "DELETE /v1/keys/{id}":
				path = "/v1/keys/" + f.key.ID
			case "DELETE /v1/cluster/members/{id}":
				path = "/v1/cluster/members/no-such-node"
			case "POST /v1/keys":
				body = []byte(`{"services":["web"]}`)
			case "PUT /v1/snapshot":
				body = []byte(`not a snapshot`) // admin passes, then is refused 400: the catalog stays
			case "POST /v1/services/{service}/instances":
				inst := testutil.NewInstance(t, f.key.Secret, verify.Proof)
				if cred == credKeyOut {
					inst = testutil.NewInstance(t, keyOut.Secret, verify.Proof)
				}
				body = regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()})
			case "POST /v1/heartbeats":
				body, _ = json.Marshal(api.HeartbeatsRequest{Beats: []api.Beat{{ID: f.id, Token: bearer}}})
				bearer = ""
			case "POST /v1/instances/{id}/evict":
				body = []byte(`{"for":"1m","reason":"authz test"}`)
			case "GET /v1/watch":
				path += "?service=web"
			}
			status := call(t, method, h.Srv.URL()+path, bearer, body, route == "POST /v1/heartbeats")
			outcome := pass
			if status == 401 || status == 403 {
				outcome = fmt.Sprint(status)
			}
			got = append(got, fmt.Sprintf("%-40s %-8s %s", route, cred, outcome))
			if outcome != want {
				t.Errorf("%s with %s: %d (%s), want %s", route, cred, status, outcome, want)
			}
		}
	}
	if t.Failed() {
		t.Logf("what each route answered:\n%s", strings.Join(got, "\n"))
	}
}

// call makes one request and returns its status; for a batch of
// heartbeats, the status its one beat would have had.
func call(t *testing.T, method, url, bearer string, body []byte, batch bool) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // ends a stream
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if batch && resp.StatusCode == 200 {
		var out api.HeartbeatsResponse
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Results) != 1 {
			t.Fatalf("batch answer: %v", err)
		}
		if r := out.Results[0]; r.Error != nil {
			return r.HTTPStatus
		}
	}
	return resp.StatusCode
}
