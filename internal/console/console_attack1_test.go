package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/musterhq/muster/internal/testserver"
)

// TestAttack1_ReadTokenSignInsEvictAdminSession: the session table holds
// at most 1024 sessions and, when full, drops the least recently used
// one, whoever holds it. So the holder of the weakest token that signs in
// (a read token scoped to one service) signs in 1100 times in a fraction
// of a second and every other session, an admin's among them, is gone:
// the admin is signed out, and stays so while the loop runs. Sessions of
// one token should not push out those of others (a bound per token, or
// the token's own oldest session evicted first).
func TestAttack1_ReadTokenSignInsEvictAdminSession(t *testing.T) {
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
