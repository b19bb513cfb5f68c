package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/musterhq/muster/internal/testserver"
)

// TestConsole_OneTokenCannotEndOthersSessions: the session table is
// bounded, and one token holds at most a few of its sessions: the holder
// of a read token signing in again and again ends its own oldest
// sessions, never an admin's.
func TestConsole_OneTokenCannotEndOthersSessions(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	admin := newBrowser(t, h)
	admin.signIn(h.AdminToken(t))
	if _, body, _ := admin.get("/ui/"); !strings.Contains(body, "signed in: admin") {
		t.Fatal("the admin is not signed in")
	}

	rd := h.Token(t, "read", "web")
	attacker := newBrowser(t, h)
	pre := attacker.csrf("/ui/signin") // its pre-session CSRF token, reused for each sign-in
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i := 0; i < 1100; i++ {
		req, _ := http.NewRequest(http.MethodPost, attacker.base+"/ui/signin",
			strings.NewReader(url.Values{"csrf": {pre}, "token": {rd.Secret}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", attacker.base)
		req.AddCookie(&http.Cookie{Name: "muster_csrf", Value: pre})
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in %d: %d", i, resp.StatusCode)
		}
	}

	if _, body, _ := admin.get("/ui/"); !strings.Contains(body, "signed in: admin") {
		t.Error("a read token's holder signed the admin out: 1100 sign-ins with one read token evicted every other session")
	}
}
