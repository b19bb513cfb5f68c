package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/testserver"
)

// refusals counts the audit trail's refused records.
func refusals(t *testing.T, h *testserver.Harness) int {
	t.Helper()
	page, err := h.Srv.Registry().Audit(context.Background(), h.AdminToken(t),
		audit.Query{Outcome: audit.OutcomeRefused, Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Records)
}

// TestConsole_RefusedSignInsAreRecorded: a sign-in refused for its
// token (unknown, revoked, expired, an enrolment key) is a record of the
// audit trail, as /v1 records a refused credential.
func TestConsole_RefusedSignInsAreRecorded(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	key := h.Key(t, "web")
	revoked := h.Token(t, "read", "web")
	if err := h.Admin.RevokeToken(context.Background(), revoked.ID); err != nil {
		t.Fatal(err)
	}

	// /v1 records such a refusal.
	before := refusals(t, h)
	if resp, _ := h.Call(t, http.MethodGet, "/v1/tokens", key.Secret, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET /v1/tokens with an enrolment key: %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(3 * time.Second); refusals(t, h) == before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("/v1 did not record the refusal either: the test's premise is wrong")
		}
	}

	b := newBrowser(t, h)
	for _, c := range []struct{ what, secret, says string }{
		{"an unknown secret", "mt_Zq3xV9kLp2Rt7Wm4Yn8Bc6Df1Gh5Jk0Qs", "not one this registry knows"},
		{"a revoked token", revoked.Secret, "not one this registry knows"},
		{"an enrolment key", key.Secret, "enrolment key"},
	} {
		before := refusals(t, h)
		code, body, _ := b.post("/ui/signin", url.Values{"csrf": {b.csrf("/ui/signin")}, "token": {c.secret}}, "")
		if code != http.StatusUnauthorized || !strings.Contains(body, c.says) {
			t.Fatalf("sign-in with %s: %d", c.what, code)
		}
		// The journal is written behind the request: give it a moment.
		recorded := false
		for deadline := time.Now().Add(3 * time.Second); !recorded && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			recorded = refusals(t, h) > before
		}
		if !recorded {
			t.Errorf("a sign-in refused with %s left no audit record", c.what)
		}
	}
}
