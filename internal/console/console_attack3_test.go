package console_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
)

// refusedReads counts the audit trail's refused reads.
func refusedReads(t *testing.T, h *testserver.Harness) int {
	t.Helper()
	page, err := h.Srv.Registry().Audit(context.Background(), h.AdminToken(t),
		audit.Query{Action: audit.ActionRead, Outcome: audit.OutcomeRefused, Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Records)
}

// TestAttack3_SignInPageIsNotARefusedRead: with --anonymous-reads=false
// the console asks the registry for a read scope on every request, the
// sign-in page's and the sign-in form's included, and throws the
// refusal away there; but Reader has already written it to the audit
// trail as a refused read ("credential required"). Every person who
// opens the sign-in page and signs in correctly leaves two refused reads
// under their address, indistinguishable from a stranger probing the
// API, and an open tab whose session ended adds two more every 15
// seconds (its refresh, then the sign-in page it is sent to).
func TestAttack3_SignInPageIsNotARefusedRead(t *testing.T) {
	h := testserver.NewHarness(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	rd := h.Token(t, "read", "web")
	b := newBrowser(t, h)

	before := refusedReads(t, h)
	b.get("/ui/signin")
	if n := refusedReads(t, h) - before; n != 0 {
		t.Errorf("opening the sign-in page wrote %d refused reads to the audit trail", n)
	}

	before = refusedReads(t, h)
	code, _, _ := b.post("/ui/signin", url.Values{"csrf": {b.csrf("/ui/signin")}, "token": {rd.Secret}, "next": {"/ui/"}}, "")
	if code != 303 {
		t.Fatalf("sign-in: %d", code)
	}
	if n := refusedReads(t, h) - before; n != 0 {
		t.Errorf("a successful sign-in (its page and its form) wrote %d refused reads to the audit trail", n)
	}
}
