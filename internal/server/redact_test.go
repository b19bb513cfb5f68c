package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/random"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestAudit_SecretsInCallerFieldsWithheld: a careless caller puts
// secrets wherever the registry writes its text down (an instance ID,
// a service name, a JSON field's name, an eviction's reason, a
// request ID). None of them reaches the audit trail (read through the
// API and from the journals' files), the log, the Raft log, or the
// answers of later requests; where a field held one, the record says
// "(withheld)". The metrics token, which an operator chooses and may
// be lowercase hex (an ID's form), is withheld because the node knows it.
func TestAudit_SecretsInCallerFieldsWithheld(t *testing.T) {
	// Tokens an operator chose in forms no shape rule can tell from
	// words or IDs: only the node's knowing them withholds them.
	metricsToken := strings.Repeat("0123456789abcdef", 2)
	adminFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(adminFile, []byte("ops.admin.token.2024-x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := testserver.NewHarness(t, func(c *server.Config) {
		c.MetricsToken = metricsToken
		c.AdminTokenFile = adminFile
	})
	ctx := context.Background()
	admin := h.AdminToken(t)
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	token := inst.TokenOf(reg.ID)
	if token == "" {
		t.Fatal("the instance was given no session token")
	}
	secrets := map[string]string{"session token": token, "key secret": k.Secret, "admin token": admin,
		"metrics token": metricsToken, "foreign secret": random.Secret()}

	do := func(method, path, token string, body []byte, header ...string) *http.Response {
		t.Helper()
		resp, _ := h.Call(t, method, path, token, body, header...)
		return resp
	}
	// A session token, the admin token and the metrics token for an
	// instance's ID: a deregistration, a drain, an eviction, a heartbeat.
	for _, id := range []string{token, admin, metricsToken} {
		if err := h.Anon.Deregister(ctx, id, token); err == nil {
			t.Fatal("deregistration by a token for an ID was accepted")
		}
		if _, err := h.Anon.Drain(ctx, id, token); err == nil {
			t.Fatal("drain by a token for an ID was accepted")
		}
		if _, err := h.Admin.Evict(ctx, id, time.Minute, "test"); err == nil {
			t.Fatal("eviction by a token for an ID was accepted")
		}
	}
	// A key's secret for a service's name, and for a JSON field's name.
	if code, _, _ := h.Post(t, k.Secret, k.Secret, testserver.RegBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()})); code != http.StatusBadRequest {
		t.Fatalf("a secret for a service name: %d, want 400", code)
	}
	foreign := secrets["foreign secret"]
	if code, _, _ := h.Post(t, "svc", k.Secret, []byte(`{"address":"127.0.0.1","port":1,"`+foreign+`":1}`)); code != http.StatusBadRequest {
		t.Fatalf("a secret for a field name: %d, want 400", code)
	}
	// A secret in a value the registry's message quotes cut to 32 bytes
	// (too short for any rule to see a secret in): the quoted text is not
	// recorded.
	hexSecret := random.ID(24)
	secrets["a quoted secret's first 24 characters"] = hexSecret[:24]
	if code, _, _ := h.Post(t, "svc", k.Secret, []byte(`{"address":"127.0.0.1","port":1,"checks":[{"type":"http","interval":"`+hexSecret+`"}]}`)); code != http.StatusBadRequest {
		t.Fatalf("a check with a bad interval: %d, want 400", code)
	}
	// A capability path for verify_path, at an address where nothing
	// answers: the refusal's message and the log's warning withhold it.
	gone := testutil.NewInstance(t, k.Secret, verify.Proof)
	gone.Server.Close()
	capPath := random.Secret()
	secrets["capability path"] = capPath
	_, err = h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: gone.Port(), VerifyPath: api.VerifyPathPrefix + capPath})
	if err == nil || strings.Contains(err.Error(), capPath) {
		t.Fatalf("registration at a dead address: %v", err)
	}
	// The admin token in a verify path, and a session token for a
	// request's method.
	if _, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: gone.Port(),
		VerifyPath: api.VerifyPathPrefix + admin}); err == nil {
		t.Fatal("registration at a dead address")
	}
	do(token, "/v1/services", "", nil)
	// A secret in a request ID is not echoed (nor logged: see below).
	resp := do("GET", "/v1/services/svc", "", nil, "X-Request-Id", foreign)
	// The node's own instead: random for the server, then a count, so
	// that servers' logs gathered in one place do not share IDs.
	if got := resp.Header.Get("X-Request-Id"); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9]+$`).MatchString(got) {
		t.Fatalf("X-Request-Id answered %q, want the node's own", got)
	}
	if got := do("GET", "/v1/services/svc", "", nil, "X-Request-Id", "req-42").Header.Get("X-Request-Id"); got != "req-42" {
		t.Fatalf("an ordinary request ID is not echoed: %q", got)
	}
	do("GET", "/v1/services", "", nil, "X-Request-Id", admin)
	// An eviction, carried out, whose reason holds the admin token: the
	// reason is kept (the Raft log, backups, the bar that lookups show
	// anyone) without it.
	if _, err := h.Admin.Evict(ctx, reg.ID, time.Minute, "leaked "+admin+" while testing"); err != nil {
		t.Fatal(err)
	}
	lookup, err := http.Get(h.Srv.URL() + "/v1/services/svc")
	if err != nil {
		t.Fatal(err)
	}
	public, _ := io.ReadAll(lookup.Body)
	lookup.Body.Close()
	if !strings.Contains(string(public), "leaked (withheld) while testing") {
		t.Errorf("the bar lookups show does not give the reason with the token withheld: %s", public)
	}

	// The trail, through the API: everything recorded, nothing secret.
	var records []api.AuditRecord
	testserver.Eventually(t, 10*time.Second, "the records of every refusal and of the eviction", func() bool {
		res, err := h.Admin.Audit(ctx, client.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		records = res.Records
		n := 0
		for _, r := range records {
			if r.Outcome == "refused" && r.InstanceID == "(withheld)" {
				n++
			}
		}
		// deregister, drain and evict for each of three tokens; the
		// heartbeat of a refused deregistration is not one.
		return n >= 9 && hasRecord(records, "evict", "ok")
	})
	b, _ := json.Marshal(records)
	trail := string(b)
	if !strings.Contains(trail, `"service":"(withheld)"`) {
		t.Errorf("no record withholds the service name: %s", trail)
	}
	if !strings.Contains(trail, "leaked (withheld) while testing") {
		t.Errorf("the eviction's reason is not recorded with the token withheld: %s", trail)
	}
	if !strings.Contains(trail, `"instance_id":"`+reg.ID+`"`) {
		t.Errorf("the real instance's ID is withheld too: %s", trail)
	}
	// Everything written down: the journals' files, the Raft log and
	// snapshots, the log lines, and the instance's bar as lookups show it.
	var files strings.Builder
	filepath.WalkDir(h.Dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Base(path) != "admin-token" {
			b, _ := os.ReadFile(path)
			files.Write(b)
		}
		return nil
	})
	for what, sec := range secrets {
		for where, text := range map[string]string{"the trail": trail, "the data dir": files.String(), "the log": h.Logs.String(), "a lookup": string(public)} {
			if strings.Contains(text, sec) {
				t.Errorf("the %s is in %s", what, where)
			}
		}
	}
}

func hasRecord(rs []api.AuditRecord, action, outcome string) bool {
	for _, r := range rs {
		if r.Action == action && r.Outcome == outcome {
			return true
		}
	}
	return false
}
