package console_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// browser is an HTTP client with a cookie jar, as a browser is, that
// does not follow redirects (the tests look at them).
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, h *testserver.Harness) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: h.Srv.URL(), c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// get fetches path and returns the status, the body and the response.
func (b *browser) get(path string, header ...string) (int, string, *http.Response) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return b.do(req)
}

// post submits a form to path, from the console's own origin unless
// origin says otherwise.
func (b *browser) post(path string, form url.Values, origin string) (int, string, *http.Response) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin == "" {
		origin = b.base
	}
	req.Header.Set("Origin", origin)
	return b.do(req)
}

func (b *browser) do(req *http.Request) (int, string, *http.Response) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token the page at path carries in its forms.
func (b *browser) csrf(path string) string {
	b.t.Helper()
	_, body, _ := b.get(path)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s:\n%s", path, body)
	}
	return m[1]
}

// signIn signs in with token and returns the session's CSRF token.
func (b *browser) signIn(token string) string {
	b.t.Helper()
	code, body, resp := b.post("/ui/signin", url.Values{"csrf": {b.csrf("/ui/signin")}, "token": {token}, "next": {"/ui/"}}, "")
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		b.t.Fatalf("sign-in: %d %s", code, body)
	}
	return b.csrf("/ui/")
}

// register registers an instance of service that answers the callback
// and returns its ID and session token.
func register(t *testing.T, h *testserver.Harness, service string) (string, string) {
	t.Helper()
	key := h.Key(t, service)
	in := testutil.NewInstance(t, key.Secret, verify.Proof)
	reg, err := h.Anon.Register(context.Background(), service, key.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "1h",
		Tags: []string{"v1"}, Meta: map[string]string{"team": "core"}})
	if err != nil {
		t.Fatal(err)
	}
	return reg.ID, in.TokenOf(reg.ID)
}

// TestConsole_AnonymousReadsOnly: with anonymous reads, the pages show
// the fleet to anyone, with the headers every page carries (a CSP
// without inline script, no framing, no sniffing) and no inline script;
// a drain without a session is refused and changes nothing.
func TestConsole_AnonymousReadsOnly(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	id, _ := register(t, h, "web")
	b := newBrowser(t, h)
	for _, path := range []string{"/ui/", "/ui/services/web", "/ui/instances/" + id} {
		code, body, resp := b.get(path)
		if code != 200 || !strings.Contains(body, id[:8]) && path != "/ui/" || !strings.Contains(body, "web") {
			t.Errorf("GET %s: %d\n%s", path, code, body)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || resp.Header.Get("X-Frame-Options") != "DENY" ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: headers %v", path, resp.Header)
		}
		if regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]`).MatchString(body) || strings.Contains(body, " onclick=") || strings.Contains(body, " style=") {
			t.Errorf("GET %s: inline script or style in the page", path)
		}
		if strings.Contains(body, "Deregister…") {
			t.Errorf("GET %s: actions shown to an anonymous reader", path)
		}
	}
	code, _, _ := b.get("/ui/instances/" + id + "/drain")
	if code != http.StatusForbidden {
		t.Errorf("the drain confirmation for an anonymous reader: %d", code)
	}
	code, _, _ = b.post("/ui/instances/"+id+"/drain", url.Values{"csrf": {b.csrf("/ui/signin")}}, "")
	if code != http.StatusForbidden {
		t.Errorf("an anonymous drain: %d", code)
	}
	if in, err := h.Anon.Instance(context.Background(), id); err != nil || in.Status != api.StatusPassing {
		t.Errorf("after the refused drain: %+v, %v", in, err)
	}
	if code, body, _ := b.get("/ui/", "X-Muster-Fragment", "main"); code != 200 || strings.Contains(body, "<html") || !strings.Contains(body, "web") {
		t.Errorf("the main fragment: %d %.200s", code, body)
	}
	if code, _, _ := b.get("/ui/nothing/here"); code != 404 {
		t.Errorf("an unknown page: %d", code)
	}
}

// TestConsole_SignInAndCSRF: a token entered once becomes a session
// cookie (HttpOnly, SameSite=Strict; the token itself never reaches the
// browser); every POST needs the CSRF token of its session and the
// console's origin; an operator drains and deregisters after a
// confirmation; a read token may not; an enrolment key does not sign
// in; sign-out ends the session.
func TestConsole_SignInAndCSRF(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	id, _ := register(t, h, "web")
	id2, _ := register(t, h, "web")
	admin := h.AdminToken(t)

	b := newBrowser(t, h)
	// Sign-in needs the pre-session CSRF token, and the console's origin.
	if code, _, _ := b.post("/ui/signin", url.Values{"token": {admin}}, ""); code != http.StatusForbidden {
		t.Errorf("sign-in without a CSRF token: %d", code)
	}
	if code, _, _ := b.post("/ui/signin", url.Values{"csrf": {b.csrf("/ui/signin")}, "token": {admin}}, "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("sign-in from another origin: %d", code)
	}
	for _, c := range []struct{ token, says string }{
		{"mt_nonsense", "not one this registry knows"}, {h.Key(t, "web").Secret, "enrolment key"}, {"", "Enter a token"},
	} {
		code, body, _ := b.post("/ui/signin", url.Values{"csrf": {b.csrf("/ui/signin")}, "token": {c.token}}, "")
		if code != http.StatusUnauthorized || !strings.Contains(body, c.says) {
			t.Errorf("sign-in with %q: %d, want 401 saying %q", c.token, code, c.says)
		}
	}

	csrf := b.signIn(admin)
	var session *http.Cookie
	base, _ := url.Parse(b.base + "/ui/")
	for _, ck := range b.c.Jar.Cookies(base) {
		if ck.Name == "muster_session" {
			session = ck
		}
		if strings.Contains(ck.Value, admin) {
			t.Errorf("a cookie holds the token: %s", ck.Name)
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	_, body, _ := b.get("/ui/")
	if !strings.Contains(body, "signed in: admin") {
		t.Errorf("the page does not say who is signed in:\n%s", body)
	}
	// The raw Set-Cookie of a fresh sign-in says HttpOnly and SameSite.
	b2 := newBrowser(t, h)
	_, _, resp := b2.post("/ui/signin", url.Values{"csrf": {b2.csrf("/ui/signin")}, "token": {admin}}, "")
	if sc := strings.Join(resp.Header.Values("Set-Cookie"), "\n"); !strings.Contains(sc, "muster_session=") || !strings.Contains(sc, "HttpOnly") ||
		!strings.Contains(sc, "SameSite=Strict") {
		t.Errorf("Set-Cookie: %s", sc)
	}

	// An action needs its session's CSRF token and the console's origin.
	if code, _, _ := b.get("/ui/instances/" + id + "/drain"); code != 200 {
		t.Errorf("the drain confirmation for the admin: %d", code)
	}
	for _, c := range []struct {
		form   url.Values
		origin string
	}{
		{url.Values{}, ""}, {url.Values{"csrf": {"wrong"}}, ""}, {url.Values{"csrf": {b2.csrf("/ui/")}}, ""}, {url.Values{"csrf": {csrf}}, "http://evil.example"},
	} {
		if code, _, _ := b.post("/ui/instances/"+id+"/drain", c.form, c.origin); code != http.StatusForbidden {
			t.Errorf("a drain with %v from %q: %d, want 403", c.form, c.origin, code)
		}
	}
	if in, _ := h.Anon.Instance(context.Background(), id); in.Status != api.StatusPassing {
		t.Fatalf("a refused drain drained: %+v", in)
	}
	code, _, resp := b.post("/ui/instances/"+id+"/drain", url.Values{"csrf": {csrf}}, "")
	if code != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/services/web") {
		t.Fatalf("the drain: %d %v", code, resp.Header)
	}
	if in, _ := h.Anon.Instance(context.Background(), id); in.Status != api.StatusDraining {
		t.Errorf("after the drain: %+v", in)
	}
	if code, _, _ := b.post("/ui/instances/"+id2+"/deregister", url.Values{"csrf": {csrf}}, ""); code != http.StatusSeeOther {
		t.Errorf("the deregistration: %d", code)
	}
	if _, err := h.Anon.Instance(context.Background(), id2); err == nil {
		t.Error("the deregistered instance is still there")
	}

	// A read token signs in, and may not act.
	rd, err := h.Admin.CreateToken(context.Background(), api.CreateTokenRequest{Role: "read", Services: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	r := newBrowser(t, h)
	rcsrf := r.signIn(rd.Secret)
	if code, _, _ := r.get("/ui/instances/" + id + "/deregister"); code != http.StatusForbidden {
		t.Errorf("the deregister confirmation for a read token: %d", code)
	}
	if code, _, _ := r.post("/ui/instances/"+id+"/deregister", url.Values{"csrf": {rcsrf}}, ""); code != http.StatusForbidden {
		t.Errorf("a deregistration with a read token: %d", code)
	}
	if _, err := h.Anon.Instance(context.Background(), id); err != nil {
		t.Errorf("the read token deregistered it: %v", err)
	}
	// Revoking the token ends its session at once.
	if err := h.Admin.RevokeToken(context.Background(), rd.ID); err != nil {
		t.Fatal(err)
	}
	if _, body, _ := r.get("/ui/"); strings.Contains(body, "signed in") {
		t.Error("a revoked token's session goes on")
	}

	// Sign-out needs the CSRF token too, and ends the session.
	if code, _, _ := b.post("/ui/signout", url.Values{}, ""); code != http.StatusForbidden {
		t.Errorf("sign-out without a CSRF token: %d", code)
	}
	if code, _, _ := b.post("/ui/signout", url.Values{"csrf": {csrf}}, ""); code != http.StatusSeeOther {
		t.Errorf("sign-out: %d", code)
	}
	if _, body, _ := b.get("/ui/"); strings.Contains(body, "signed in") {
		t.Error("still signed in after sign-out")
	}
	// The old session cookie, replayed, is no session.
	b3 := newBrowser(t, h)
	b3.c.Jar.SetCookies(base, []*http.Cookie{{Name: "muster_session", Value: session.Value, Path: "/ui/"}})
	if _, body, _ := b3.get("/ui/"); strings.Contains(body, "signed in") {
		t.Error("a signed-out session's cookie still signs in")
	}
}

// TestConsole_PrivateReads: with --anonymous-reads=false a page without
// a session sends the browser to sign in (and back where it was going,
// but never to another site); a read token scoped to web sees web, and
// neither lists nor opens db.
func TestConsole_PrivateReads(t *testing.T) {
	h := testserver.NewHarness(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	register(t, h, "web")
	dbID, _ := register(t, h, "db")
	b := newBrowser(t, h)
	code, _, resp := b.get("/ui/services/web")
	if code != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/signin?next=") {
		t.Fatalf("an anonymous page: %d %v", code, resp.Header.Get("Location"))
	}
	rd, err := h.Admin.CreateToken(context.Background(), api.CreateTokenRequest{Role: "read", Services: []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	code, _, resp = b.post("/ui/signin", url.Values{"csrf": {b.csrf("/ui/signin")}, "token": {rd.Secret}, "next": {"//evil.example/x"}}, "")
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("sign-in with next=//evil.example: %d, to %q", code, resp.Header.Get("Location"))
	}
	_, body, _ := b.get("/ui/")
	if !strings.Contains(body, "/ui/services/web") || strings.Contains(body, "/ui/services/db") {
		t.Errorf("the list for a token of web:\n%s", body)
	}
	for _, path := range []string{"/ui/services/db", "/ui/instances/" + dbID} {
		if code, _, _ := b.get(path); code < 400 {
			t.Errorf("GET %s with a token of web: %d", path, code)
		}
	}
}

// TestConsole_LiveStream: /ui/live sends a change event naming a
// service when it changes, within the viewer's scope.
func TestConsole_LiveStream(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	register(t, h, "web")
	req, _ := http.NewRequest(http.MethodGet, h.Srv.URL()+"/ui/live?service=web", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /ui/live: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(100 * time.Millisecond)
	register(t, h, "other") // not this stream's
	register(t, h, "web")
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the stream ended")
			}
			if strings.HasPrefix(l, "data: ") {
				if l != "data: web" {
					t.Fatalf("a change of another service: %q", l)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("no change event within 10 s")
		}
	}
}

// TestConsole_TokensClusterAudit: an admin creates a token on the
// tokens page and sees its secret that once (the list never shows it
// again), and revokes it; the cluster page shows this server; the audit
// page lists what was done; a read token sees neither tokens nor audit.
func TestConsole_TokensClusterAudit(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	register(t, h, "web")
	b := newBrowser(t, h)
	csrf := b.signIn(h.AdminToken(t))
	code, _, resp := b.post("/ui/tokens", url.Values{"csrf": {csrf}, "role": {"read"}, "services": {"web, db"}, "description": {"on-call"}, "ttl": {"24h"}}, "")
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/tokens" {
		t.Fatalf("creating a token: %d %v", code, resp.Header)
	}
	// The page it leads to shows the secret, once: a reload creates
	// nothing and shows it no more.
	_, body, _ := b.get("/ui/tokens")
	m := regexp.MustCompile(`id="secret" type="text" readonly value="(mt_[^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the page after the creation shows no secret:\n%s", body)
	}
	secret := m[1]
	if _, err := h.Admin.Lookup(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	_, list, _ := b.get("/ui/tokens")
	if strings.Contains(list, secret) || !strings.Contains(list, "on-call") || strings.Count(list, "on-call") != 1 {
		t.Errorf("the tokens page shows the secret again, or not the token once")
	}
	tid := regexp.MustCompile(`data-token="(tok_[0-9a-f]+)"`).FindStringSubmatch(list)
	if tid == nil {
		t.Fatalf("no token row:\n%s", list)
	}
	if code, body, _ := b.post("/ui/tokens", url.Values{"csrf": {csrf}, "role": {"operator"}, "services": {"Bad Name"}, "description": {"kept"}}, ""); code != http.StatusBadRequest ||
		!strings.Contains(body, "services") || !strings.Contains(body, `value="kept"`) || !strings.Contains(body, `<option value="operator" selected>`) {
		t.Errorf("a bad pattern: %d, or the form's values lost", code)
	}

	// The token works, then is revoked from the page.
	r := newBrowser(t, h)
	r.signIn(secret)
	for _, path := range []string{"/ui/tokens", "/ui/audit"} {
		if code, _, _ := r.get(path); code != http.StatusForbidden {
			t.Errorf("GET %s with a read token: %d", path, code)
		}
	}
	if code, body, _ := b.get("/ui/tokens/" + tid[1] + "/revoke"); code != 200 || !strings.Contains(body, "cannot be undone") {
		t.Errorf("the revocation's confirmation: %d", code)
	}
	if code, _, _ := b.post("/ui/tokens/"+tid[1]+"/revoke", url.Values{"csrf": {csrf}}, ""); code != http.StatusSeeOther {
		t.Errorf("revoking: %d", code)
	}
	if _, body, _ := b.get("/ui/tokens"); !strings.Contains(body, "Revoked "+tid[1]) {
		t.Errorf("no word of the revocation on the page after it")
	}
	if _, body, _ := r.get("/ui/"); strings.Contains(body, "signed in") {
		t.Error("the revoked token's session goes on")
	}

	if code, body, _ := b.get("/ui/cluster"); code != 200 || !strings.Contains(body, "Applied index") {
		t.Errorf("the cluster page: %d", code)
	}
	code, body, _ = b.get("/ui/audit?action=key_create")
	if code != 200 || !strings.Contains(body, `data-action="key_create"`) || strings.Contains(body, `data-action="register"`) {
		t.Errorf("the audit page filtered by key_create: %d\n%s", code, body)
	}
	if code, _, resp := newBrowser(t, h).get("/ui/audit"); code != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/signin") {
		t.Errorf("the audit page anonymously: %d", code)
	}
	if code, _, _ := b.get("/ui/audit?action=nonsense"); code != http.StatusBadRequest {
		t.Errorf("an unknown action: %d", code)
	}
}

// TestConsole_SaysWhatIsWrong: a service with no passing instance is
// marked so on the services page and comes first among problems; a
// filter counts only the instances that match; a service never seen is a
// 404; an operator is offered no action on a service outside its scope;
// an action's outcome is said on the page after it.
func TestConsole_SaysWhatIsWrong(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	register(t, h, "api")
	key := h.Key(t, "db")
	in := testutil.NewInstance(t, key.Secret, verify.Proof)
	dbReg, err := h.Anon.Register(context.Background(), "db", key.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "1h", Tags: []string{"v9"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Anon.Drain(context.Background(), dbReg.ID, in.TokenOf(dbReg.ID)); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, h)
	_, body, _ := b.get("/ui/?sort=problems")
	if !regexp.MustCompile(`(?s)data-service="db" data-down="true".*data-service="api"`).MatchString(body) || !strings.Contains(body, "no passing instance") {
		t.Errorf("the services page, problems first, does not put db, with no passing instance, first and say so:\n%s", body)
	}
	if _, body, _ := b.get("/ui/?tag=v9"); !strings.Contains(body, "1 service, 1 instance") || strings.Contains(body, `data-service="api"`) {
		t.Errorf("filtered by tag v9:\n%s", body)
	}
	if code, _, _ := b.get("/ui/services/never-here"); code != http.StatusNotFound {
		t.Errorf("a service never seen: %d", code)
	}

	op, err := h.Admin.CreateToken(context.Background(), api.CreateTokenRequest{Role: "operator", Services: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	o := newBrowser(t, h)
	csrf := o.signIn(op.Secret)
	apiID := regexp.MustCompile(`data-instance="([0-9a-f]+)"`).FindStringSubmatch(func() string { _, b, _ := o.get("/ui/services/api"); return b }())
	if apiID == nil {
		t.Fatal("no instance of api")
	}
	if _, body, _ := o.get("/ui/instances/" + apiID[1]); strings.Contains(body, "Deregister…") {
		t.Error("an operator of db is offered actions on api")
	}
	if code, _, _ := o.get("/ui/instances/" + apiID[1] + "/deregister"); code != http.StatusForbidden {
		t.Errorf("an operator of db confirming a deregistration of api: %d", code)
	}
	if _, body, _ := o.get("/ui/instances/" + dbReg.ID); strings.Contains(body, "Drain…") || !strings.Contains(body, "Deregister…") {
		t.Error("a draining instance of db: Drain offered again, or Deregister not offered")
	}
	if code, _, _ := o.post("/ui/instances/"+dbReg.ID+"/deregister", url.Values{"csrf": {csrf}}, ""); code != http.StatusSeeOther {
		t.Fatalf("deregistering: %d", code)
	}
	if _, body, _ := o.get("/ui/services/db"); !strings.Contains(body, "Deregistered "+dbReg.ID) {
		t.Error("the page after the deregistration does not say so")
	}
	if _, body, _ := o.get("/ui/services/db"); strings.Contains(body, "Deregistered "+dbReg.ID) {
		t.Error("the outcome is said again on the next page")
	}
}
