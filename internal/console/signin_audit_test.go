package console_test

import (
	"context"
	"net/url"
	"testing"
	"time"

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

// TestConsole_SignInPageIsNotARefusedRead: with --anonymous-reads=false
// opening the sign-in page and posting its form read nothing, so the
// audit trail records no refused read for them.
func TestConsole_SignInPageIsNotARefusedRead(t *testing.T) {
	h := testserver.NewHarness(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	rd := h.Token(t, "read", "web")
	b := newBrowser(t, h)

	before := refusedReads(t, h)
	b.get("/ui/signin")
	time.Sleep(200 * time.Millisecond) // the journal is written behind the request
	if n := refusedReads(t, h) - before; n != 0 {
		t.Errorf("opening the sign-in page wrote %d refused reads to the audit trail", n)
	}

	before = refusedReads(t, h)
	code, _, _ := b.post("/ui/signin", url.Values{"csrf": {b.csrf("/ui/signin")}, "token": {rd.Secret}, "next": {"/ui/"}}, "")
	if code != 303 {
		t.Fatalf("sign-in: %d", code)
	}
	time.Sleep(200 * time.Millisecond)
	if n := refusedReads(t, h) - before; n != 0 {
		t.Errorf("a successful sign-in (its page and its form) wrote %d refused reads to the audit trail", n)
	}
}
