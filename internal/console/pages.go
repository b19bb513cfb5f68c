package console

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/registry"
)

// maxRows bounds the rows a page lists: the rest are counted, not shown,
// so that no page costs more than this however large the fleet.
const maxRows = 500

// serviceRow is one line of the services page.
type serviceRow struct {
	registry.Summary
	Problems int // critical and draining instances
}

// Down reports whether no instance of the service passes: the loudest
// thing the page can say of it.
func (s serviceRow) Down() bool { return s.Passing == 0 }

// servicesPage lists every service the viewer may read with its counts by
// status, filtered by name (q), tag and meta (key=value), sorted by name
// or with problems first.
func (c *Console) servicesPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	sums, _, err := c.reg.ServicesFor(v.scope)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	name, tag, meta, order := strings.TrimSpace(q.Get("q")), strings.TrimSpace(q.Get("tag")), strings.TrimSpace(q.Get("meta")), q.Get("sort")
	var filter registry.Filter
	if tag != "" {
		filter.Tags = []string{tag}
	}
	if meta != "" {
		k, val, ok := strings.Cut(meta, "=")
		if !ok || k == "" {
			return pageError(http.StatusBadRequest, "Filter meta as key=value, not %q.", meta)
		}
		filter.Meta = []string{k + ":" + val}
	}
	filter.Status = registry.StatusAny
	rows := make([]serviceRow, 0, len(sums))
	for _, s := range sums {
		if name != "" && !strings.Contains(s.Name, name) {
			continue
		}
		if tag != "" || meta != "" {
			// The counts are of the instances that match.
			sr, err := c.reg.Service(s.Name)
			if err != nil {
				return err
			}
			s = registry.Summary{Name: s.Name, Index: s.Index}
			sr.Each(filter, func(_ int, e registry.Entry) bool { s.Count(e.Status); return true })
			if s.Instances == 0 {
				continue
			}
		}
		rows = append(rows, serviceRow{Summary: s, Problems: s.Critical + s.Draining})
	}
	if order == "problems" {
		// A service with no passing instance first, then by how many of
		// its instances are critical or draining.
		sort.SliceStable(rows, func(i, j int) bool {
			if rows[i].Down() != rows[j].Down() {
				return rows[i].Down()
			}
			return rows[i].Problems > rows[j].Problems
		})
	}
	total, passing, critical, draining := 0, 0, 0, 0
	for _, s := range rows {
		total += s.Instances
		passing += s.Passing
		critical += s.Critical
		draining += s.Draining
	}
	hidden := 0
	if len(rows) > maxRows {
		hidden, rows = len(rows)-maxRows, rows[:maxRows]
	}
	c.render(w, r, http.StatusOK, "services", v, map[string]any{
		"Title": "Services", "Rows": rows, "Hidden": hidden, "Q": name, "Tag": tag, "Meta": meta, "Sort": order,
		"Total": total, "Passing": passing, "Critical": critical, "Draining": draining,
		"Protection": c.reg.Protection(),
	})
	return nil
}

// instanceRow is one instance as the pages show it.
type instanceRow struct {
	registry.Entry
	SeenMS int64 // when its last heartbeat was heard, Unix ms; 0: none
}

func (c *Console) rowOf(e registry.Entry) instanceRow {
	row := instanceRow{Entry: e}
	if e.Age >= 0 {
		row.SeenMS = c.now().Add(-e.Age).UnixMilli()
	}
	return row
}

// change is one line of a service's recent history.
type change struct {
	Index    uint64
	What     string
	Instance string
	Address  string
}

// servicePage shows one service's instances, its evicted endpoints and
// its recent changes.
func (c *Console) servicePage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	name := r.PathValue("name")
	if err := registry.CheckServiceName(name); err != nil {
		return pageError(http.StatusNotFound, "%q is not a service name.", name)
	}
	if err := c.reg.CheckRead(r.Context(), v.scope, name); err != nil {
		return err
	}
	sr, err := c.reg.Service(name)
	if err != nil {
		return err
	}
	if sr.View == nil {
		return pageError(http.StatusNotFound, "No service %s has ever registered here.", name)
	}
	var rows []instanceRow
	hidden := 0
	sr.Each(registry.Filter{Status: registry.StatusAny}, func(_ int, e registry.Entry) bool {
		if len(rows) == maxRows {
			hidden++
			return true
		}
		rows = append(rows, c.rowOf(e))
		return true
	})
	var history []change
	for _, e := range c.reg.Recent(name, 20) {
		history = append(history, changeOf(e))
	}
	c.render(w, r, http.StatusOK, "service", v, map[string]any{
		"Title": name, "Service": name, "Rows": rows, "Hidden": hidden, "Evicted": sr.Evicted, "History": history,
		"Index": sr.Index(),
	})
	return nil
}

func changeOf(e *catalog.Event) change {
	ch := change{Index: e.Index, Instance: e.Instance.ID, Address: e.Instance.Address + ":" + strconv.Itoa(e.Instance.Port)}
	switch e.Type {
	case catalog.EventRegistered:
		ch.What = "registered"
		if e.Replaced != nil {
			ch.What = "registered, replacing " + e.Replaced.ID
		}
	case catalog.EventDeregistered:
		ch.What = "left: " + e.Reason
	default:
		ch.What = "now " + string(health.Committed(e.Instance))
	}
	return ch
}

// instancePage shows every field of one instance, its heartbeat rhythm
// against its TTL, and the actions the viewer may take.
func (c *Console) instancePage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	e, err := c.readInstance(r, v)
	if err != nil {
		return err
	}
	intervals := c.reg.Intervals(e.Instance.ID)
	data := map[string]any{
		"Title": e.Instance.ID, "I": c.rowOf(e), "Intervals": intervals, "Spark": sparkline(intervals, e.Age, e.Instance.TTL),
	}
	if e.Status == catalog.StatusCritical && e.Instance.DeregisterAfter > 0 && e.Age >= 0 && e.Instance.TTL > 0 {
		// The sweep removes it DeregisterAfter after its last heartbeat.
		data["RemovedIn"] = max(0, e.Instance.DeregisterAfter-e.Age)
	}
	c.render(w, r, http.StatusOK, "instance", v, data)
	return nil
}

// readInstance reads the instance the path names, if the viewer may read
// its service; one it may not is as missing.
func (c *Console) readInstance(r *http.Request, v *viewer) (registry.Entry, error) {
	id := r.PathValue("id")
	if !catalog.ValidID(id) {
		return registry.Entry{}, pageError(http.StatusNotFound, "%q is not an instance ID.", id)
	}
	e, err := c.reg.Instance(id)
	if err == nil && !v.scope.Covers(e.Instance.Service) {
		err = registry.ErrInstanceNotFound
	}
	if errors.Is(err, registry.ErrInstanceNotFound) {
		return e, pageError(http.StatusNotFound, "No instance %s (it may have left).", id)
	}
	return e, err
}

// actions are what the instance page offers an operator or admin.
var actions = map[string]struct{ verb, explain string }{
	"drain":      {"Drain", "It stays registered and heartbeating, but leaves default lookups, so that clients stop sending it new work. It cannot be undone from here: the instance registers again to be listed."},
	"deregister": {"Deregister", "It is removed from the registry at once. A process still running there registers again on its next heartbeat."},
}

// confirmPage asks before an action: a form that POSTs it.
func (c *Console) confirmPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	a, ok := actions[r.PathValue("action")]
	if !ok {
		return pageError(http.StatusNotFound, "There is no page at %s.", r.URL.Path)
	}
	if !v.CanAct() {
		return pageError(http.StatusForbidden, "Only an operator or an admin may %s an instance: sign in with such a token.", strings.ToLower(a.verb))
	}
	e, err := c.readInstance(r, v)
	if err != nil {
		return err
	}
	if !v.CanActOn(e.Instance.Service) {
		return pageError(http.StatusForbidden, "Your token may not %s instances of %s: its services do not cover it.", strings.ToLower(a.verb), e.Instance.Service)
	}
	c.render(w, r, http.StatusOK, "confirm", v, map[string]any{
		"Title": a.verb + " " + e.Instance.ID, "I": c.rowOf(e), "Action": r.PathValue("action"), "Verb": a.verb, "Explain": a.explain,
	})
	return nil
}

// act runs a confirmed action with the session's token, and returns to
// the service.
func (c *Console) act(w http.ResponseWriter, r *http.Request, v *viewer) error {
	action := r.PathValue("action")
	if _, ok := actions[action]; !ok {
		return pageError(http.StatusNotFound, "There is no action %q.", action)
	}
	if v.sess == nil {
		return pageError(http.StatusForbidden, "Sign in as an operator or an admin to %s an instance.", action)
	}
	e, err := c.readInstance(r, v)
	if err != nil {
		return err
	}
	switch action {
	case "drain":
		_, _, err = c.reg.Drain(r.Context(), e.Instance.ID, v.sess.token)
	case "deregister":
		_, err = c.reg.Deregister(r.Context(), e.Instance.ID, v.sess.token)
	}
	if err != nil {
		return err
	}
	done := map[string]string{"drain": "Drained", "deregister": "Deregistered"}[action]
	c.sessions.setFlash(v.sess, done+" "+e.Instance.ID+".", nil)
	http.Redirect(w, r, Prefix+"services/"+e.Instance.Service, http.StatusSeeOther)
	return nil
}

// signinPage asks for a token.
func (c *Console) signinPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	next := safeNext(r.URL.Query().Get("next"))
	c.render(w, r, http.StatusOK, "signin", v, map[string]any{"Title": "Sign in", "Next": next,
		"Anonymous": c.reg.AnonymousReads(), "Asked": next != Prefix})
	return nil
}

// signin turns a read, operator or admin token into a session.
func (c *Console) signin(w http.ResponseWriter, r *http.Request, v *viewer) error {
	token := strings.TrimSpace(r.PostForm.Get("token"))
	fail := func(msg string) error {
		c.render(w, r, http.StatusUnauthorized, "signin", v, map[string]any{"Title": "Sign in", "Next": safeNext(r.PostForm.Get("next")),
			"Anonymous": c.reg.AnonymousReads(), "Failed": msg})
		return nil
	}
	if token == "" {
		return fail("Enter a token.")
	}
	caller, err := c.reg.Authenticate(token)
	if err != nil || caller.Anonymous() || caller.Role() == catalog.RoleRegister {
		// A refused sign-in is a refused credential, recorded as /v1
		// records one.
		why := err
		if why == nil {
			why = registry.ErrWrongToken
		}
		c.reg.Refuse(r.Context(), audit.Record{Action: audit.ActionRead, Key: caller.KeyID(), Reason: "console sign-in"}, why)
	}
	switch {
	case errors.Is(err, registry.ErrTokenExpired):
		return fail("That token has expired.")
	case errors.Is(err, registry.ErrUnavailable):
		return err
	case err != nil || caller.Anonymous():
		return fail("That token is not one this registry knows.")
	case caller.Role() == catalog.RoleRegister:
		return fail("That is an enrolment key, which registers instances. Sign in with a read, operator or admin token.")
	}
	if v.sessionID != "" {
		c.sessions.end(v.sessionID)
	}
	id, _ := c.sessions.create(token)
	http.SetCookie(w, cookie(r, sessionCookie, id, sessionMax))
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
	return nil
}

// signout ends the session.
func (c *Console) signout(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if v.sessionID != "" {
		c.sessions.end(v.sessionID)
	}
	http.SetCookie(w, cookie(r, sessionCookie, "", -time.Second))
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
	return nil
}

// safeNext is where to go after signing in: a console path, never
// another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, Prefix+"signin") {
		return Prefix
	}
	return next
}

// sparkline draws the heartbeat intervals (oldest first) as bars against
// the TTL, a dashed line, and the silence since the last heartbeat as a
// last, hollow bar: a bar above the line is a heartbeat later than the
// TTL allows, and a hollow one above it a silence that has run past it.
func sparkline(gaps []time.Duration, silence, ttl time.Duration) template.HTML {
	const w, h, bw, top0 = 260, 64, 22, 12
	if len(gaps) == 0 || ttl <= 0 {
		return ""
	}
	top := ttl + ttl/2
	for _, g := range gaps {
		top = max(top, g)
	}
	if silence > 0 {
		top = max(top, silence)
	}
	y := func(d time.Duration) float64 { return top0 + float64(h-top0)*(1-float64(min(d, top))/float64(top)) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="the last %d heartbeat intervals and the silence since, against the TTL of %s">`,
		w, h, w, h, len(gaps), ttl)
	x := 0
	for _, g := range gaps {
		cls := "ok"
		if g > ttl {
			cls = "late"
		}
		fmt.Fprintf(&b, `<rect class="%s" x="%d" y="%.1f" width="%d" height="%.1f"><title>%s</title></rect>`, cls, x, y(g), bw, h-y(g), g.Round(time.Millisecond))
		x += bw + 4
	}
	if silence >= 0 {
		cls := "now ok"
		if silence > ttl {
			cls = "now late"
		}
		fmt.Fprintf(&b, `<rect class="%s" x="%d.5" y="%.1f" width="%d" height="%.1f"><title>silent for %s</title></rect>`, cls, x, y(silence), bw-1, h-y(silence)-0.5,
			silence.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, `<line class="ttl" x1="0" x2="%d" y1="%.1f" y2="%.1f"></line><text class="ttl" x="%d" y="%.1f" text-anchor="end">TTL %s</text></svg>`,
		w, y(ttl), y(ttl), w, y(ttl)-3, ttl)
	return template.HTML(b.String())
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"age": func(d time.Duration) string {
		if d < 0 {
			return "never"
		}
		return humanDuration(d) + " ago"
	},
	"duration": humanDuration,
	"percent":  func(q float64) string { return strconv.Itoa(int(q*100+0.5)) + "%" },
	"statusOf": func(e registry.Entry) string { return string(e.Status) },
	"icon": func(status string) string {
		switch status {
		case api.StatusPassing:
			return "✓"
		case api.StatusCritical:
			return "✗"
		case api.StatusDraining:
			return "◐"
		}
		return "?"
	},
	"sortedMeta": func(m map[string]string) []string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := make([]string, len(keys))
		for i, k := range keys {
			out[i] = k + "=" + m[k]
		}
		return out
	},
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
}

// humanDuration is d in the largest unit that keeps it short.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.Itoa(int(d/time.Millisecond)) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m" + strconv.Itoa(int(d%time.Minute/time.Second)) + "s"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h" + strconv.Itoa(int(d%time.Hour/time.Minute)) + "m"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}
