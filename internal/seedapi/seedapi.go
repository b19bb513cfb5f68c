package seedapi

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/registry"
)

// API serves the tutorial protocol over a registry.
type API struct {
	reg     *registry.Registry
	log     *slog.Logger
	maxBody int64
	// rotate holds, per service, the counter that rotates lookups.
	rotate sync.Map // service → *atomic.Uint64
}

// New returns the tutorial protocol's front end over reg; bodies over
// maxBody bytes are refused.
func New(reg *registry.Registry, log *slog.Logger, maxBody int64) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &API{reg: reg, log: log, maxBody: maxBody}
}

type route struct {
	method, pattern string
	handler         func(a *API, w http.ResponseWriter, r *http.Request) error
}

// table lists the protocol's routes, paths exactly as the tutorial wrote
// them.
var table = []route{
	{"POST", "/api/v1/register/{$}", (*API).register},
	{"GET", "/api/v1/register/{$}", (*API).lookup},
	{"POST", "/api/v1/ping/{$}", (*API).ping},
}

// Routes returns the routes to mount beside /v1.
func (a *API) Routes() []httpapi.Route {
	out := make([]httpapi.Route, 0, len(table))
	for _, rt := range table {
		h := rt.handler
		out = append(out, httpapi.Route{Method: rt.method, Pattern: rt.pattern, Handler: func(w http.ResponseWriter, r *http.Request) {
			if err := h(a, w, r); err != nil {
				a.writeError(w, err)
			}
		}})
	}
	return out
}

// Routes returns "METHOD pattern" for every route, for tests and docs.
func Routes() []string {
	var out []string
	for _, rt := range table {
		out = append(out, rt.method+" "+strings.TrimSuffix(rt.pattern, "{$}"))
	}
	return out
}

// writeError answers a refusal: always 400, as the tutorial's clients
// expect, with muster's JSON error body; a 5xx is written as /v1 writes it.
func (a *API) writeError(w http.ResponseWriter, err error) {
	if httpapi.APIError(err).Status >= 500 {
		httpapi.WriteError(w, a.log, err)
		return
	}
	httpapi.WriteErrorAs(w, err, http.StatusBadRequest)
}

// form parses a form body (size-capped) and returns the named fields, or a
// 400 naming the first missing one.
func (a *API) form(w http.ResponseWriter, r *http.Request, names ...string) ([]string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, a.maxBody)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, httpapi.Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "", "body larger than %d bytes", a.maxBody)
		}
		return nil, httpapi.Errorf(http.StatusBadRequest, api.CodeInvalidArgument, "", "malformed form body")
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = r.PostForm.Get(n)
		if out[i] == "" {
			return nil, httpapi.BadField(n, "form field %q is required", n)
		}
	}
	return out, nil
}

// parseAddr checks the url and port form fields: url is scheme and host
// only, as the tutorial sends it ("http://localhost").
func parseAddr(rawURL, rawPort string) (registry.SeedAddr, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Port() != "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return registry.SeedAddr{}, httpapi.BadField("url", "url must be a scheme and host such as http://localhost")
	}
	port, err := strconv.Atoi(rawPort)
	if err != nil || port < 1 || port > 65535 {
		return registry.SeedAddr{}, httpapi.BadField("port", "port must be a number between 1 and 65535")
	}
	host, ok := registry.CanonicalHost(u.Hostname())
	if !ok {
		return registry.SeedAddr{}, httpapi.BadField("url", "url host must be an IP address or a DNS host name")
	}
	return registry.SeedAddr{Scheme: u.Scheme, Host: host, Port: port}, nil
}

// seedURL returns the tutorial's url form of an address: scheme://host.
func seedURL(scheme, host string) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host
}

// joinsV1 is the refusal for a service that has /v1 instances.
func joinsV1(name string) error {
	return httpapi.Errorf(http.StatusForbidden, api.CodeForbidden, "name", "%q is registered through the /v1 API; the tutorial protocol may not join it", name)
}

// register handles POST /api/v1/register/ (name, url, port). As the
// tutorial's registry did, it answers 200 once the request is admitted,
// before the service is verified: the registry then POSTs the challenge
// phrase and a fresh secret to {url}:{port}/api/v1/verify/ in the
// background and registers the service only if it answers with the
// response phrase and the same secret (registry.RegisterSeed). The 200
// means "accepted for verification"; the tutorial's services answer the
// callback only once this request has returned.
//
// Every refusal is an audit record: those of the registry's workflows
// by the registry, this handler's own (not ready, a form that does not
// parse, a bad url or port) here.
func (a *API) register(w http.ResponseWriter, r *http.Request) error {
	refuse := func(name string, err error) error {
		a.reg.Refuse(r.Context(), audit.Record{Action: audit.ActionRegister, Service: name, Key: catalog.SeedKeyID}, err)
		return err
	}
	if err := a.reg.Ready(); err != nil {
		return refuse("", err)
	}
	f, err := a.form(w, r, "name", "url", "port")
	if err != nil {
		return refuse("", err)
	}
	name := f[0]
	adm, err := a.reg.AdmitSeed(r.RemoteAddr, name)
	var fe *registry.FieldError
	switch {
	case errors.As(err, &fe):
		return httpapi.BadField("name", "%s", fe.Message) // the service name is this protocol's "name"
	case errors.Is(err, registry.ErrSeedScope):
		return httpapi.Errorf(http.StatusForbidden, api.CodeForbidden, "name", "the tutorial protocol may not register %q here (see --seed-services)", name)
	case errors.Is(err, catalog.ErrProtocolMix):
		return joinsV1(name)
	case err != nil:
		return err
	}
	addr, err := parseAddr(f[1], f[2])
	if err != nil {
		return refuse(name, err)
	}
	v, err := a.reg.RegisterSeed(r.Context(), adm, addr)
	switch {
	case errors.Is(err, registry.ErrSeedPending):
		return httpapi.Errorf(http.StatusBadRequest, api.CodeBusy, "", "%s", strings.TrimPrefix(err.Error(), "registry: "))
	case errors.Is(err, registry.ErrBusy):
		// The callback slots open to the tutorial protocol, or to this
		// caller, are held by verifications still pending.
		return httpapi.Errorf(http.StatusBadRequest, api.CodeBusy, "", "too many registrations awaiting verification; retry once they are answered")
	case errors.Is(err, registry.ErrClosed):
		return httpapi.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "the registry is stopping; retry")
	case err != nil:
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
		"name": name, "url": seedURL(addr.Scheme, addr.Host), "port": addr.Port, "id": v.ID, "status": "verifying"}})
	return nil
}

// lookup handles GET /api/v1/register/?service_name=X: one passing
// instance of X as {"data": {"name", "url", "port"}}, rotating among them;
// 400 when there is none.
func (a *API) lookup(w http.ResponseWriter, r *http.Request) error {
	name := r.URL.Query().Get("service_name")
	// With --anonymous-reads=false the tutorial's lookups need a token
	// too, which its clients never send: they are refused like any.
	scope, err := a.reg.Reader(r.Context(), httpapi.Bearer(r))
	if err != nil {
		return err
	}
	rd, err := a.reg.Service(name)
	if err != nil {
		return err
	}
	if err := a.reg.CheckRead(r.Context(), scope, name); err != nil {
		return err
	}
	if name == "" {
		return httpapi.BadField("service_name", "service_name is required")
	}
	var passing []*catalog.Instance
	rd.Each(registry.Filter{Status: catalog.StatusPassing}, func(_ int, e registry.Entry) bool {
		passing = append(passing, e.Instance)
		return true
	})
	if len(passing) == 0 {
		return httpapi.Errorf(http.StatusNotFound, api.CodeNotFound, "service_name", "no fresh instance of %q", name)
	}
	v, _ := a.rotate.LoadOrStore(name, new(atomic.Uint64))
	inst := passing[int((v.(*atomic.Uint64).Add(1)-1)%uint64(len(passing)))]
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"name": name, "url": seedURL(inst.Scheme, inst.Address), "port": inst.Port}})
	return nil
}

// ping handles POST /api/v1/ping/ (name, url, port, secret): a heartbeat
// of the instance registered at that url and port, authenticated by the
// session secret from its verification.
func (a *API) ping(w http.ResponseWriter, r *http.Request) error {
	if err := a.reg.Ready(); err != nil {
		return err
	}
	f, err := a.form(w, r, "name", "url", "port", "secret")
	if err != nil {
		return err
	}
	addr, err := parseAddr(f[1], f[2])
	if err != nil {
		return err
	}
	status, err := a.reg.SeedPing(r.Context(), f[0], addr, f[3])
	if errors.Is(err, registry.ErrInstanceNotFound) {
		return httpapi.Errorf(http.StatusBadRequest, api.CodeNotFound, "", "no registered instance matches this name, url, port and secret")
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"status": status}})
	return nil
}
