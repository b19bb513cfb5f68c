package console

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// The pages of an admin (tokens) and of an operator or admin (audit),
// and the cluster's page, which any reader sees.

// tokenRow is a token as the tokens page lists it.
type tokenRow struct {
	*catalog.Key
	Limit, Held int
	Expired     bool
}

// needSession refuses a page to a viewer without a session of one of
// roles.
func needSession(v *viewer, what string, roles ...catalog.Role) error {
	if v.sess == nil {
		return errSignIn
	}
	for _, r := range roles {
		if v.caller.Role() == r {
			return nil
		}
	}
	return pageError(http.StatusForbidden, "Only %s may see %s: sign in with such a token.", roleNames(roles), what)
}

func roleNames(roles []catalog.Role) string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = "an " + string(r)
	}
	return strings.Join(names, " or ")
}

// tokensPage lists every token for an admin, with a form to create one.
// The secret of a token just created is shown once, on the page that
// answers the creation, never again.
func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	return c.renderTokens(w, r, v, http.StatusOK, nil)
}

// created is a token just created: the one time its secret is shown.
type created struct {
	ID, Role, Secret string
}

// tokenForm is the creation form's values, kept when it is refused.
type tokenForm struct {
	Role, Services, Description, TTL string
	ConsulNone                       bool
}

func (c *Console) renderTokens(w http.ResponseWriter, r *http.Request, v *viewer, status int, data map[string]any) error {
	if err := needSession(v, "the tokens", catalog.RoleAdmin); err != nil {
		return err
	}
	keys, err := c.reg.Tokens(r.Context(), v.sess.token)
	if err != nil {
		return err
	}
	now := c.now()
	rows := make([]tokenRow, 0, len(keys))
	for _, k := range keys {
		limit, held := c.reg.KeyUsage(k)
		rows = append(rows, tokenRow{Key: k, Limit: limit, Held: held, Expired: k.Expired(now)})
	}
	if data == nil {
		data = map[string]any{}
	}
	data["Title"] = "Tokens"
	data["Rows"] = rows
	data["Roles"] = catalog.Roles()
	if _, ok := data["Form"]; !ok {
		data["Form"] = tokenForm{Role: string(catalog.RoleRead)}
	}
	c.render(w, r, status, "tokens", v, data)
	return nil
}

// createToken creates a token from the form, and shows its secret once.
func (c *Console) createToken(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := needSession(v, "the tokens", catalog.RoleAdmin); err != nil {
		return err
	}
	f := r.PostForm
	form := tokenForm{Role: f.Get("role"), Services: f.Get("services"), Description: f.Get("description"), TTL: f.Get("ttl"),
		ConsulNone: f.Get("consul_verify") == "none"}
	spec := registry.TokenSpec{Role: f.Get("role"), KeySpec: registry.KeySpec{Description: strings.TrimSpace(f.Get("description"))}}
	for _, p := range strings.FieldsFunc(f.Get("services"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		spec.Services = append(spec.Services, p)
	}
	if s := strings.TrimSpace(f.Get("ttl")); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return c.renderTokens(w, r, v, http.StatusBadRequest, map[string]any{"Failed": "The lifetime must be a duration such as 24h, or empty.", "Form": form})
		}
		spec.TTL = d
	}
	if f.Get("consul_verify") == "none" {
		spec.ConsulVerify = string(catalog.ConsulVerifyNone)
	}
	k, secret, err := c.reg.CreateToken(r.Context(), v.sess.token, spec)
	var fe *registry.FieldError
	if errors.As(err, &fe) {
		return c.renderTokens(w, r, v, http.StatusBadRequest, map[string]any{"Failed": fe.Field + ": " + fe.Message, "Form": form})
	}
	if err != nil {
		return err
	}
	// The secret is shown by the page this redirects to, once: a reload
	// of that page creates nothing, and shows it no more.
	c.sessions.setFlash(v.sess, "", &created{ID: k.ID, Role: string(k.RoleOrDefault()), Secret: secret})
	http.Redirect(w, r, Prefix+"tokens", http.StatusSeeOther)
	return nil
}

// confirmRevoke asks before a revocation: what the token is, and what
// revoking it does.
func (c *Console) confirmRevoke(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := needSession(v, "the tokens", catalog.RoleAdmin); err != nil {
		return err
	}
	keys, err := c.reg.Tokens(r.Context(), v.sess.token)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.ID == r.PathValue("id") {
			_, held := c.reg.KeyUsage(k)
			c.render(w, r, http.StatusOK, "revoke", v, map[string]any{"Title": "Revoke " + k.ID, "T": k, "Held": held})
			return nil
		}
	}
	return pageError(http.StatusNotFound, "No token %s (it may have been revoked).", r.PathValue("id"))
}

// revokeToken revokes the token the path names.
func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := needSession(v, "the tokens", catalog.RoleAdmin); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := c.reg.RevokeToken(r.Context(), v.sess.token, id); err != nil {
		return err
	}
	c.sessions.setFlash(v.sess, "Revoked "+id+".", nil)
	http.Redirect(w, r, Prefix+"tokens", http.StatusSeeOther)
	return nil
}

// clusterPage shows the servers: each one's state, term, indexes and
// last contact, as this server sees them.
func (c *Console) clusterPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	self := c.reg.Self()
	members, err := c.reg.Members(r.Context())
	if errors.Is(err, registry.ErrNotClustered) {
		err = nil
	}
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "cluster", v, map[string]any{"Title": "Cluster", "Self": self, "Members": members,
		"Health": c.reg.Health()})
	return nil
}

// auditPage lists the audit trail's newest records, filtered by
// service, action and outcome, for an operator (within its services) or
// an admin. It follows new records live.
func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := needSession(v, "the audit trail", catalog.RoleOperator, catalog.RoleAdmin); err != nil {
		return err
	}
	q := r.URL.Query()
	aq := audit.Query{Service: strings.TrimSpace(q.Get("service")), Action: audit.Action(q.Get("action")),
		Outcome: audit.Outcome(q.Get("outcome")), Limit: 200}
	if err := aq.Validate(); err != nil {
		return pageError(http.StatusBadRequest, "%s", strings.TrimPrefix(err.Error(), "audit: "))
	}
	page, err := c.reg.Audit(r.Context(), v.sess.token, aq)
	if err != nil {
		return err
	}
	recs := page.Records
	for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 { // newest first
		recs[i], recs[j] = recs[j], recs[i]
	}
	c.render(w, r, http.StatusOK, "audit", v, map[string]any{"Title": "Audit", "Records": recs, "More": page.More,
		"Service": aq.Service, "Action": string(aq.Action), "Outcome": string(aq.Outcome),
		"Actions": audit.Actions(), "Outcomes": []string{"ok", "refused", "failed"}})
	return nil
}
