// Package console is muster's web console, served by the server itself at
// /ui/ on the API's address: the fleet as a person looks at it, each
// instance's freshness (heartbeat age, quality) among the rest, kept live
// by the catalog's changes, and the admin's actions on it.
//
// The pages are HTML rendered here from embedded templates (assets/),
// with one small script and one style sheet of the package's own, served
// from /ui/static/: nothing is fetched from elsewhere, and the
// Content-Security-Policy allows scripts from the console alone, none
// inline. Reads follow the registry's rules: anonymous while the server
// allows anonymous reads, else a signed-in token's scope. Writes (drain,
// deregister) need a session of an operator or admin, a CSRF token and
// the console's own origin (session.go).
//
// It owns no catalog state: its sessions are in memory, per server, and
// end with it. Every page is a read of the registry, every action one of
// the registry's workflows, with the session's token as the credential.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/registry"
)

// Prefix is the path the console is served under.
const Prefix = "/ui/"

//go:embed assets
var assets embed.FS

// csp is every page's Content-Security-Policy: the console's own script
// and style sheet, no inline script or style, no frames, forms posted
// only to the console.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Deps are the console's dependencies.
type Deps struct {
	Registry *registry.Registry
	Logger   *slog.Logger
	// Closing ends when the server begins to close: live pages' streams
	// end then.
	Closing context.Context
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Console serves the pages.
type Console struct {
	reg      *registry.Registry
	log      *slog.Logger
	closing  context.Context
	now      func() time.Time
	sessions *sessions
	pages    map[string]*template.Template
	static   http.Handler
	mux      *http.ServeMux
}

// New returns the console over d.Registry.
func New(d Deps) *Console {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Closing == nil {
		d.Closing = context.Background()
	}
	c := &Console{reg: d.Registry, log: d.Logger, closing: d.Closing, now: d.Now, sessions: newSessions(d.Now),
		pages: parsePages(), mux: http.NewServeMux()}
	static, _ := fs.Sub(assets, "assets/static")
	c.static = http.StripPrefix(Prefix+"static/", http.FileServer(http.FS(static)))
	for pattern, h := range map[string]func(http.ResponseWriter, *http.Request, *viewer) error{
		"GET /ui/{$}":                      c.servicesPage,
		"GET /ui/services/{name}":          c.servicePage,
		"GET /ui/instances/{id}":           c.instancePage,
		"GET /ui/instances/{id}/{action}":  c.confirmPage,
		"POST /ui/instances/{id}/{action}": c.act,
		"GET /ui/signin":                   c.signinPage,
		"POST /ui/signin":                  c.signin,
		"POST /ui/signout":                 c.signout,
		"GET /ui/live":                     c.live,
		"GET /ui/tokens":                   c.tokensPage,
		"POST /ui/tokens":                  c.createToken,
		"GET /ui/tokens/{id}/revoke":       c.confirmRevoke,
		"POST /ui/tokens/{id}/revoke":      c.revokeToken,
		"GET /ui/cluster":                  c.clusterPage,
		"GET /ui/audit":                    c.auditPage,
	} {
		c.mux.HandleFunc(pattern, c.handle(h))
	}
	c.mux.HandleFunc("GET /ui/static/", c.serveStatic)
	c.mux.HandleFunc("/ui/", c.handle(func(w http.ResponseWriter, r *http.Request, v *viewer) error {
		return pageError(http.StatusNotFound, "There is no page at %s.", r.URL.Path)
	}))
	return c
}

// Routes are the console's routes, for the API's router
// (httpapi.Deps.Mount).
func (c *Console) Routes() []httpapi.Route {
	redirect := func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	}
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/ui", Handler: redirect},
		{Method: http.MethodGet, Pattern: Prefix, Handler: c.ServeHTTP},
		{Method: http.MethodPost, Pattern: Prefix, Handler: c.ServeHTTP},
	}
}

// ServeHTTP serves every console route.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	c.mux.ServeHTTP(w, r)
}

func (c *Console) serveStatic(w http.ResponseWriter, r *http.Request) {
	if name := strings.TrimPrefix(r.URL.Path, Prefix+"static/"); !fs.ValidPath(name) || !utf8.ValidString(name) {
		http.NotFound(w, r) // a name no file has, never the file server's 500
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	c.static.ServeHTTP(w, r)
}

// viewer is who is looking: anonymous, or a session's token.
type viewer struct {
	sessionID string
	sess      *session // nil: anonymous
	caller    registry.Caller
	scope     registry.ReadScope
	// csrf is the token the page's forms carry: the session's, or the
	// pre-session cookie's.
	csrf string
}

// CSRF is the token the page's forms carry.
func (v *viewer) CSRF() string { return v.csrf }

// Role is the viewer's role, "" for anonymous.
func (v *viewer) Role() string { return string(v.caller.Role()) }

// CanAct reports whether the viewer is an operator or an admin, who may
// drain and deregister some instances and read the audit trail.
func (v *viewer) CanAct() bool {
	role := v.caller.Role()
	return v.sess != nil && (role == catalog.RoleAdmin || role == catalog.RoleOperator)
}

// CanActOn reports whether the viewer may drain and deregister the
// instances of service (the registry decides again when it does).
func (v *viewer) CanActOn(service string) bool { return v.sess != nil && v.caller.CanOperate(service) }

// handle resolves the viewer, checks a POST's origin and CSRF token, runs
// h, and renders its error as a page.
func (c *Console) handle(h func(http.ResponseWriter, *http.Request, *viewer) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := c.viewer(w, r)
		if err == nil && r.Method == http.MethodPost {
			err = c.checkPost(r, v)
		}
		if err == nil {
			err = h(w, r, v)
		}
		if err != nil {
			c.renderError(w, r, v, err)
		}
	}
}

// errSignIn sends the browser to the sign-in page.
var errSignIn = errors.New("console: sign in")

// viewer resolves who is looking. A session whose token no longer
// authenticates (revoked, expired) ends here. Without a session, reads
// need the server to allow anonymous reads, else the sign-in page.
func (c *Console) viewer(w http.ResponseWriter, r *http.Request) (*viewer, error) {
	v := &viewer{}
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if s := c.sessions.get(ck.Value); s != nil {
			caller, err := c.reg.Authenticate(s.token)
			if err != nil {
				c.sessions.end(ck.Value)
				http.SetCookie(w, cookie(r, sessionCookie, "", -time.Second))
				if errors.Is(err, registry.ErrUnavailable) {
					return v, err
				}
				return v, errSignIn
			}
			v.sessionID, v.sess, v.caller, v.csrf = ck.Value, s, caller, s.csrf
		}
	}
	if v.sess == nil {
		v.csrf = c.preSession(w, r)
	}
	if r.URL.Path == Prefix+"signin" && v.sess == nil {
		// Signing in reads nothing: no read is asked for (nor refused,
		// and recorded so, with private reads).
		return v, nil
	}
	token := ""
	if v.sess != nil {
		token = v.sess.token
	}
	scope, err := c.reg.Reader(r.Context(), token)
	switch {
	case err == nil:
		v.scope = scope
	case v.sess == nil:
		return v, errSignIn
	default:
		return v, err
	}
	return v, nil
}

// preSession returns the pre-session CSRF token, setting its cookie when
// the browser has none.
func (c *Console) preSession(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) >= 32 {
		return ck.Value
	}
	t := randomToken()
	http.SetCookie(w, cookie(r, csrfCookie, t, sessionMax))
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: t})
	return t
}

// errForbiddenPost refuses a state-changing request that did not come
// from the console's own page.
var errForbiddenPost = &statusError{status: http.StatusForbidden,
	msg: "This request did not come from a console page (its origin or its CSRF token is wrong). Reload the page and try again."}

// checkPost refuses a POST from another origin, or without the CSRF
// token of the viewer's session (or, before sign-in, of its pre-session
// cookie).
func (c *Console) checkPost(r *http.Request, v *viewer) error {
	if !sameOrigin(r) {
		return errForbiddenPost
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		return pageError(http.StatusBadRequest, "The form could not be read.")
	}
	if !tokenEqual(r.PostForm.Get("csrf"), v.csrf) {
		return errForbiddenPost
	}
	return nil
}

// statusError is an error shown as a page with its status.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

func pageError(status int, format string, args ...any) error {
	return &statusError{status: status, msg: fmt.Sprintf(format, args...)}
}

// renderError shows err as a page: the sign-in page for errSignIn, the
// registry's refusals in words, the rest as a 500 whose detail is logged.
func (c *Console) renderError(w http.ResponseWriter, r *http.Request, v *viewer, err error) {
	if errors.Is(err, errSignIn) {
		http.Redirect(w, r, Prefix+"signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	var status int
	var msg string
	var se *statusError
	if errors.As(err, &se) {
		status, msg = se.status, se.msg
	} else if ae := httpapi.APIError(err); ae.Status != http.StatusInternalServerError {
		// The registry's refusals, in the words the API gives them.
		status, msg = ae.Status, ae.Message
	} else {
		status, msg = http.StatusInternalServerError, "Something went wrong on the server; its log says what."
		c.log.Error("console: page failed", "path", r.URL.Path, "err", err)
	}
	c.render(w, r, status, "error", v, map[string]any{"Title": http.StatusText(status), "Status": status, "Message": msg})
}

// render renders page with data in the layout, or only its main part for
// the live refresh (X-Muster-Fragment), with status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v *viewer, data map[string]any) {
	t := c.pages[page]
	if data == nil {
		data = map[string]any{}
	}
	data["Viewer"] = v
	data["Prefix"] = Prefix
	data["Path"] = r.URL.Path
	if v != nil && v.sess != nil && r.Header.Get("X-Muster-Fragment") == "" && r.Method == http.MethodGet {
		flash, shown := c.sessions.takeFlash(v.sess)
		data["Flash"] = flash
		if shown != nil {
			data["Created"] = *shown
		}
	}
	var buf bytes.Buffer
	name := "layout"
	if r.Header.Get("X-Muster-Fragment") == "main" {
		name = "main"
	}
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		c.log.Error("console: template failed", "page", page, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// parsePages parses each page's template with the layout.
func parsePages() map[string]*template.Template {
	pages := map[string]*template.Template{}
	names, err := fs.Glob(assets, "assets/pages/*.html")
	if err != nil || len(names) == 0 {
		panic("console: no page templates embedded")
	}
	for _, n := range names {
		page := strings.TrimSuffix(n[len("assets/pages/"):], ".html")
		pages[page] = template.Must(template.New(page).Funcs(funcs).ParseFS(assets, "assets/layout.html", n))
	}
	return pages
}
