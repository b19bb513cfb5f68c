package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
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
	credNone      = "none"         // no Authorization header
	credGarbage   = "garbage"      // a bearer token that is nothing
	credMetrics   = "metrics"      // the metrics token
	credOther     = "other"        // the session token of another instance
	credSession   = "session"      // the session token of the instance the path names
	credKey       = "key"          // an enrolment key whose scope holds the service
	credKeyOut    = "key-out"      // an enrolment key whose scope does not
	credRead      = "read"         // a read token whose scope holds the service
	credReadOut   = "read-out"     // a read token whose scope does not
	credOper      = "operator"     // an operator token whose scope holds the service
	credOperOut   = "operator-out" // an operator token whose scope does not
	credAdminRole = "admin-role"   // a token of the admin role
	credAdmin     = "admin"        // the admin token
)

var credentials = []string{credNone, credGarbage, credMetrics, credOther, credSession, credKey, credKeyOut,
	credRead, credReadOut, credOper, credOperOut, credAdminRole, credAdmin}

// An expected outcome: whether the request got past authorisation, or
// which refusal it got (401 without a credential, or an expired one; 403
// with one that is not enough, or that the registry does not know, but
// for a registration, where an unknown enrolment key is 401).
const (
	pass = "pass" // any answer but 401 and 403
	r401 = "401"
	r403 = "403"
)

// authzTable is the authorisation table of every route of the API: for
// each, what each credential gets, with reads open to anyone (the
// default) or, with private set, needing a token (--anonymous-reads=
// false). It is the threat model's "who may do what" (docs/security.md),
// route by route; TestAuthz_EveryRouteEveryCredential holds the server to
// it, and fails when a route is added without a row.
func authzTable(private bool) map[string]map[string]string {
	read := allPass() // a credential a read does not need is ignored, whatever it is
	list := allPass()
	if private {
		// Any token the registry knows may read what its services cover,
		// whatever its role; a list shows only those (and so passes).
		list = with(allOf(r403), credNone, r401, credKey, pass, credKeyOut, pass, credRead, pass, credReadOut, pass,
			credOper, pass, credOperOut, pass, credAdminRole, pass, credAdmin, pass)
		read = with(list, credKeyOut, r403, credReadOut, r403, credOperOut, r403)
	}
	admins := with(allOf(r403), credNone, r401, credAdminRole, pass, credAdmin, pass)
	operators := with(admins, credOper, pass, credOperOut, pass) // the route; each instance is then checked
	owner := with(allOf(r403), credNone, r401, credSession, pass)
	return map[string]map[string]string{
		"GET /livez":  allPass(),
		"GET /readyz": allPass(),
		// With a metrics token set (as here), it or an admin credential;
		// without one, loopback callers only (TestMetrics_stranger).
		"GET /metrics": with(admins, credMetrics, pass),

		"POST /v1/keys":                   admins,
		"GET /v1/keys":                    admins,
		"DELETE /v1/keys/{id}":            admins,
		"POST /v1/tokens":                 admins,
		"GET /v1/tokens":                  admins,
		"DELETE /v1/tokens/{id}":          admins,
		"GET /v1/snapshot":                admins,
		"PUT /v1/snapshot":                admins,
		"DELETE /v1/cluster/members/{id}": admins,
		// An operator reads the records of its services.
		"GET /v1/audit": operators,

		// Registration takes an enrolment key whose scope holds the
		// service: an unknown one is 401, a token of another role 403.
		// The admin token is no enrolment key.
		"POST /v1/services/{service}/instances": with(allOf(r401), credKey, pass, credKeyOut, r403, credRead, r403,
			credReadOut, r403, credOper, r403, credOperOut, r403, credAdminRole, r403),
		"GET /v1/services":           list,
		"GET /v1/services/{service}": read,
		"GET /v1/watch":              read,
		// An instance reads itself with its session token, always.
		"GET /v1/instances/{id}":  with(read, credSession, pass),
		"GET /v1/cluster/members": list,
		// Open even with private reads: a joining server asks it first.
		"GET /v1/cluster/self": allPass(),

		// A heartbeat is the instance's own; what an operator may do to
		// any instance of its services takes its session token, an
		// operator token whose scope holds the service, or an admin
		// credential.
		"PUT /v1/instances/{id}/heartbeat": owner,
		"POST /v1/heartbeats":              owner,
		"PUT /v1/instances/{id}/drain":     with(owner, credOper, pass, credAdminRole, pass, credAdmin, pass),
		"DELETE /v1/instances/{id}":        with(owner, credOper, pass, credAdminRole, pass, credAdmin, pass),
		"POST /v1/instances/{id}/evict":    with(admins, credOper, pass),
		// A certificate is the instance's own: its session token only (no
		// other credential proves an instance's key). The CA bundle is
		// public, even with private reads: it is what peers trust.
		"POST /v1/instances/{id}/certificate": owner,
		"GET /v1/ca":                          allPass(),
		"POST /v1/ca/rotate":                  admins,
	}
}

func allPass() map[string]string { return allOf(pass) }

// allOf is a row where every credential gets outcome.
func allOf(outcome string) map[string]string {
	m := map[string]string{}
	for _, c := range credentials {
		m[c] = outcome
	}
	return m
}

// with is a copy of row with the given credential, outcome pairs set.
func with(row map[string]string, pairs ...string) map[string]string {
	m := maps.Clone(row)
	for i := 0; i < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return m
}

// TestAuthz_EveryRouteEveryCredential calls every route of the API with
// every kind of credential, with reads anonymous and private, and checks
// what authzTable says: a route that lets a credential through that it
// should not, or refuses one it should take, or a route without a row,
// fails. Each call is made on a fresh instance and key where it would
// change them.
func TestAuthz_EveryRouteEveryCredential(t *testing.T) {
	for _, private := range []bool{false, true} {
		t.Run(map[bool]string{false: "anonymous reads", true: "private reads"}[private], func(t *testing.T) {
			testAuthz(t, private)
		})
	}
}

func testAuthz(t *testing.T, private bool) {
	const metricsToken = "metrics-token-0123456789"
	h := start(t, func(c *server.Config) {
		c.MetricsToken = metricsToken
		c.Registry.PrivateReads = private
		c.Registry.MaxInstancesPerAddress = 10000 // every call has instances of its own, all on 127.0.0.1
		c.Registry.RegisterBurst = 10000
	})
	ctx := context.Background()
	admin := h.AdminToken(t)
	authz := authzTable(private)
	secrets := map[string]string{credNone: "", credGarbage: "nope-not-a-token", credMetrics: metricsToken, credAdmin: admin,
		credKeyOut: h.Key(t, "other-*").Secret,
		credRead:   h.Token(t, "read", "web").Secret, credReadOut: h.Token(t, "read", "other-*").Secret,
		credOper: h.Token(t, "operator", "web").Secret, credOperOut: h.Token(t, "operator", "other-*").Secret,
		credAdminRole: h.Token(t, "admin").Secret}

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
			bearer := secrets[cred]
			switch cred {
			case credOther:
				bearer = f.otherTk
			case credSession:
				bearer = f.token
			case credKey:
				bearer = f.key.Secret
			}
			path := strings.NewReplacer("{service}", "web", "{id}", f.id).Replace(pattern)
			var body []byte
			switch route {
			case "DELETE /v1/keys/{id}":
				path = "/v1/keys/" + f.key.ID
			case "DELETE /v1/tokens/{id}":
				path = "/v1/tokens/" + h.Token(t, "read", "web").ID
			case "DELETE /v1/cluster/members/{id}":
				path = "/v1/cluster/members/no-such-node"
			case "POST /v1/keys":
				body = []byte(`{"services":["web"]}`)
			case "POST /v1/tokens":
				body = []byte(`{"role":"read","services":["web"]}`)
			case "PUT /v1/snapshot":
				body = []byte(`not a snapshot`) // admin passes, then is refused 400: the catalog stays
			case "POST /v1/services/{service}/instances":
				secret := f.key.Secret
				if cred == credKeyOut {
					secret = secrets[credKeyOut]
				}
				inst := testutil.NewInstance(t, secret, verify.Proof)
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
			got = append(got, fmt.Sprintf("%-40s %-12s %s", route, cred, outcome))
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
