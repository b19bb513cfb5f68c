// Package consulapi serves a subset of Consul's HTTP API over muster's
// catalog, on a listener of its own (--consul-addr), so that tools that
// discover targets through Consul (Prometheus's consul_sd_configs,
// Traefik's Consul Catalog provider, programs written against
// github.com/hashicorp/consul/api) read muster unchanged.
//
// It owns no state: every answer is a read of the registry, with the
// registry's rules (the read modes, private reads, the bounds on
// blocking queries). This first part serves reads only; every other
// route, the writes among them, answers a JSON error that names what is
// not served (docs/consul-compat.md lists what is).
package consulapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/registry"
)

// DefaultDatacenter is the one datacenter muster answers as.
const DefaultDatacenter = "dc1"

// Config configures the Consul-compatible API.
type Config struct {
	// Addr is the listener's address; "" turns the API off.
	Addr string
	// Datacenter is the name every answer gives; default
	// DefaultDatacenter. A request naming another (?dc=) is a 400.
	Datacenter string
}

// Enabled reports whether the API is to be served.
func (c Config) Enabled() bool { return c.Addr != "" }

// Validate checks c.
func (c Config) Validate() error {
	if c.Datacenter != "" && !catalog.ValidServiceName(c.Datacenter) {
		return fmt.Errorf("consulapi: datacenter %.64q is not a name of a-z, 0-9 and -", c.Datacenter)
	}
	return nil
}

// API answers Consul's read routes from the registry.
type API struct {
	reg *registry.Registry
	log *slog.Logger
	dc  string
	mux *http.ServeMux
}

// New returns the API over reg.
func New(cfg Config, reg *registry.Registry, log *slog.Logger) *API {
	a := &API{reg: reg, log: log, dc: cfg.Datacenter, mux: http.NewServeMux()}
	if a.dc == "" {
		a.dc = DefaultDatacenter
	}
	for pattern, h := range map[string]func(http.ResponseWriter, *http.Request) error{
		"GET /v1/catalog/services":              a.catalogServices,
		"GET /v1/catalog/service/{name}":        a.catalogService,
		"GET /v1/health/service/{name}":         a.healthService,
		"GET /v1/catalog/datacenters":           a.datacenters,
		"GET /v1/catalog/nodes":                 a.catalogNodes,
		"GET /v1/status/leader":                 a.statusLeader,
		"GET /v1/status/peers":                  a.statusPeers,
		"GET /v1/agent/self":                    a.agentSelf,
		"PUT /v1/agent/service/register":        a.registerService,
		"PUT /v1/agent/service/deregister/{id}": a.deregisterService,
		"PUT /v1/agent/check/pass/{id}":         a.updateCheck("pass"),
		"PUT /v1/agent/check/warn/{id}":         a.updateCheck("warn"),
		"PUT /v1/agent/check/fail/{id}":         a.updateCheck("fail"),
		"PUT /v1/agent/check/update/{id}":       a.updateCheck("update"),
	} {
		a.mux.HandleFunc(pattern, httpapi.Adapt(a.log, h))
	}
	a.mux.HandleFunc("/", httpapi.Adapt(a.log, a.notServed))
	return a
}

// Handler is the API's http.Handler, guarded as /v1 is (httpapi.Guard):
// a panic is a 500 with a JSON body, and a CONNECT or a path that is not
// canonical a JSON error, never Go's plain text or a redirect.
func (a *API) Handler() http.Handler { return httpapi.Guard(a.log, a.mux) }

// notServed answers every route this API does not serve: a 405 for the
// methods of a route it serves, else a 404 that says so.
func (a *API) notServed(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPut} {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host}
		if _, pattern := a.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 && !slices.Contains(allow, r.Method) {
		if slices.Contains(allow, http.MethodGet) {
			allow = append(allow, http.MethodHead)
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return httpapi.Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "",
			"%s %s is not served: muster's Consul-compatible API answers %s here (see docs/consul-compat.md)", r.Method, cutPath(r.URL.Path), allow[0])
	}
	return httpapi.Errorf(http.StatusNotFound, api.CodeNotFound, "",
		"%s %s is not part of muster's Consul-compatible API (reads of the catalog, health, status and agent/self; registration, deregistration and TTL check updates of services; see docs/consul-compat.md)", r.Method, cutPath(r.URL.Path))
}

// cutPath is p bounded for an error message.
func cutPath(p string) string {
	if len(p) > 128 {
		return p[:128] + "..."
	}
	return p
}

// query is what every read takes.
type query struct {
	index uint64 // blocking: answer once past this index
	wait  time.Duration
	mode  registry.ReadMode
	tags  []string
	meta  map[string]string // from ?filter=ServiceMeta.k == "v", matched against the meta answers show
	// nodeMeta is ?node-meta=k:v: every synthetic node carries only
	// muster-synthetic=true, so anything else selects nothing.
	nodeMeta map[string]string
	pass     bool // ?passing
	scope    registry.ReadScope
}

// parse reads r's query: the datacenter, the blocking and read-mode
// parameters, tags and the filter; and checks the caller may read.
// Parameters Consul's clients send that have no meaning here (near,
// cached, ns, partition, ...) are ignored, as Consul ignores unknown ones.
func (a *API) parse(r *http.Request) (query, error) {
	var q query
	v := r.URL.Query()
	if dc := v.Get("dc"); dc != "" && dc != a.dc {
		return q, httpapi.BadField("dc", "no datacenter %.64q here: muster answers as %q", dc, a.dc)
	}
	if s := v.Get("index"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return q, httpapi.BadField("index", "index must be a number (an earlier answer's X-Consul-Index)")
		}
		q.index, q.wait = n, registry.DefaultWait
	}
	if s := v.Get("wait"); s != "" {
		d, err := parseWait(s)
		if err != nil {
			return q, httpapi.BadField("wait", "wait must be a duration such as 30s or 5m (longer waits are cut to %s)", registry.MaxWait)
		}
		if q.index > 0 {
			q.wait = d
		}
	}
	_, stale := v["stale"]
	_, consistent := v["consistent"]
	switch {
	case stale && consistent:
		return q, httpapi.BadField("stale", "stale and consistent together: ask for one")
	case stale:
		q.mode = registry.ReadStale
	case consistent:
		q.mode = registry.ReadConsistent
	}
	q.tags = v["tag"]
	for _, t := range q.tags {
		if t == "" {
			return q, httpapi.BadField("tag", "an empty tag")
		}
	}
	for _, nm := range v["node-meta"] {
		k, val, ok := strings.Cut(nm, ":")
		if !ok || k == "" {
			return q, httpapi.BadField("node-meta", "node-meta must be key:value")
		}
		if q.nodeMeta == nil {
			q.nodeMeta = map[string]string{}
		}
		q.nodeMeta[k] = val
	}
	if p, ok := v["passing"]; ok {
		q.pass = len(p) == 0 || (p[0] != "0" && !strings.EqualFold(p[0], "false"))
	}
	if f := v.Get("filter"); f != "" {
		// Consul's health answers name their fields Service.Meta and
		// Service.Tags; its catalog's, ServiceMeta and ServiceTags.
		kind, k, val, err := parseFilter(f, strings.HasPrefix(r.Pattern, "GET /v1/health/"))
		if err != nil {
			return q, httpapi.BadField("filter", "%s", err.Error())
		}
		if kind == "tag" {
			q.tags = append(q.tags, val)
		} else {
			q.meta = map[string]string{k: val}
		}
	}
	scope, err := a.reg.Reader(r.Context(), token(r))
	if err != nil {
		return q, err
	}
	q.scope = scope
	return q, nil
}

// matches reports whether an instance on node n whose answer shows meta
// (nil: a node alone) passes q's meta filter and node-meta.
func (q query) matches(n node, meta map[string]string) bool {
	for k, v := range q.nodeMeta {
		if n.Meta[k] != v {
			return false
		}
	}
	if meta == nil {
		return true
	}
	for k, v := range q.meta {
		if got, ok := meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// token is the caller's token: X-Consul-Token, else a bearer token, else
// ?token= (as Consul takes it).
func token(r *http.Request) string {
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if t := httpapi.Bearer(r); t != "" {
		return t
	}
	return r.URL.Query().Get("token")
}

// parseWait reads Consul's wait: a Go duration, or a number of seconds
// without a unit. As Consul does, a wait of 0 or less is the default
// wait, and one beyond the longest is the longest (registry.MaxWait).
func parseWait(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseUint(s, 10, 32)
		if nerr != nil {
			return 0, err
		}
		d = time.Duration(n) * time.Second
	}
	switch {
	case d <= 0:
		d = registry.DefaultWait
	case d > registry.MaxWait:
		d = registry.MaxWait
	}
	return d, nil
}

// parseFilter reads the two forms of Consul's filter expressions this
// API serves: ServiceMeta.k == "v" (or ServiceMeta["k"] == "v") and
// "t" in ServiceTags, or, for the health endpoint (health), Consul's
// names there: Service.Meta and Service.Tags. kind is "meta" or "tag".
func parseFilter(f string, health bool) (kind, key, val string, err error) {
	metaSel, tagsSel := "ServiceMeta", "ServiceTags"
	if health {
		metaSel, tagsSel = "Service.Meta", "Service.Tags"
	}
	f = strings.TrimSpace(f)
	unsupported := fmt.Errorf("filter %.100q is not served: only %s.k == \"v\" and \"t\" in %s are here", f, metaSel, tagsSel)
	if lhs, ok := strings.CutSuffix(f, " in "+tagsSel); ok && !strings.HasPrefix(f, metaSel) {
		t, terr := strconv.Unquote(strings.TrimSpace(lhs))
		if terr != nil || t == "" {
			return "", "", "", unsupported
		}
		return "tag", "", t, nil
	}
	lhs, rhs, ok := strings.Cut(f, "==")
	if !ok {
		return "", "", "", unsupported
	}
	lhs, rhs = strings.TrimSpace(lhs), strings.TrimSpace(rhs)
	val, verr := strconv.Unquote(rhs)
	if verr != nil {
		return "", "", "", unsupported
	}
	switch {
	case strings.HasPrefix(lhs, metaSel+"."):
		key = strings.TrimPrefix(lhs, metaSel+".")
	case strings.HasPrefix(lhs, metaSel+"[") && strings.HasSuffix(lhs, "]"):
		k, kerr := strconv.Unquote(lhs[len(metaSel)+1 : len(lhs)-1])
		if kerr != nil {
			return "", "", "", unsupported
		}
		key = k
	default:
		return "", "", "", unsupported
	}
	if key == "" || !catalog.ValidMetaKey(key) {
		return "", "", "", unsupported
	}
	return "meta", key, val, nil
}

// begin applies q's read mode and writes the headers every read answers
// with; index is the answer's X-Consul-Index (Consul's are never 0).
func (a *API) begin(ctx context.Context, w http.ResponseWriter, q query) error {
	info, err := a.reg.Read(ctx, q.mode)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("X-Consul-KnownLeader", strconv.FormatBool(info.KnownLeader))
	h.Set("X-Consul-LastContact", strconv.FormatInt(max(0, info.LastContact.Milliseconds()), 10))
	h.Set("X-Consul-Effective-Consistency", map[registry.ReadMode]string{
		registry.ReadDefault: "leader", registry.ReadStale: "stale", registry.ReadConsistent: "consistent"}[q.mode])
	return nil
}

func setIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(1, index), 10))
}

// services reads the services q's caller may read, as a blocking query
// when q asks, after the read mode's headers.
func (a *API) services(r *http.Request, w http.ResponseWriter, q query) ([]registry.Summary, uint64, error) {
	if err := a.begin(r.Context(), w, q); err != nil {
		return nil, 0, err
	}
	if q.index > 0 {
		return a.reg.WaitServices(r.Context(), httpapi.ClientOf(r), q.index, q.wait, q.scope)
	}
	return a.reg.ServicesFor(q.scope)
}

// catalogServices answers GET /v1/catalog/services: every service with
// instances the caller may read, and the union of their tags.
func (a *API) catalogServices(w http.ResponseWriter, r *http.Request) error {
	q, err := a.parse(r)
	if err != nil {
		return err
	}
	sums, index, err := a.services(r, w, q)
	if err != nil {
		return err
	}
	out := make(map[string][]string, len(sums))
	for _, s := range sums {
		sr, err := a.reg.Service(s.Name)
		if err != nil {
			return err
		}
		// The service is listed when an instance passes the filter
		// (?filter, ?tag, ?node-meta), with the tags of those that do.
		// Without one, every instance passes, and neither its freshness
		// nor its node is needed to say so.
		tags, found := []string{}, false
		add := func(inst *catalog.Instance) {
			found = true
			for _, t := range inst.Tags {
				if !slices.Contains(tags, t) {
					tags = append(tags, t)
				}
			}
		}
		if len(q.tags) == 0 && len(q.meta) == 0 && len(q.nodeMeta) == 0 {
			if sr.View != nil {
				for _, inst := range sr.View.Instances {
					add(inst)
				}
			}
		} else {
			sr.Each(registry.Filter{Tags: q.tags, Status: registry.StatusAny}, func(_ int, e registry.Entry) bool {
				if q.matches(nodeOf(e.Instance.Address, a.dc), metaOf(e)) {
					add(e.Instance)
				}
				return true
			})
		}
		if !found {
			continue
		}
		slices.Sort(tags)
		out[s.Name] = tags
	}
	setIndex(w, index)
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// readService reads the service r names, as a blocking query when q
// asks, after the read mode's headers.
func (a *API) readService(r *http.Request, w http.ResponseWriter, q query) (registry.ServiceRead, error) {
	name := r.PathValue("name")
	if err := registry.CheckServiceName(name); err != nil {
		return registry.ServiceRead{}, err
	}
	if err := a.reg.CheckRead(r.Context(), q.scope, name); err != nil {
		return registry.ServiceRead{}, err
	}
	if err := a.begin(r.Context(), w, q); err != nil {
		return registry.ServiceRead{}, err
	}
	if q.index > 0 {
		sr, err := a.reg.WaitService(r.Context(), httpapi.ClientOf(r), name, q.index, q.wait)
		if err == nil {
			// The token may have been revoked, or have expired, while the
			// query waited.
			err = a.reg.Recheck(q.scope)
		}
		return sr, err
	}
	return a.reg.Service(name)
}

// serviceAnswer answers a read of one service's instances (the route's
// {name}) with the JSON of each that passes the query's filters, built
// by entry from the instance, its synthetic node, the meta it shows and
// the service's index. statusOf is the status the instances must have,
// given the query.
func serviceAnswer[T any](a *API, w http.ResponseWriter, r *http.Request, statusOf func(query) catalog.Status,
	entry func(e registry.Entry, n node, meta map[string]string, index uint64) T) error {
	q, err := a.parse(r)
	if err != nil {
		return err
	}
	sr, err := a.readService(r, w, q)
	if err != nil {
		return err
	}
	out := []T{}
	sr.Each(registry.Filter{Tags: q.tags, Status: statusOf(q)}, func(_ int, e registry.Entry) bool {
		n := nodeOf(e.Instance.Address, a.dc)
		if meta := metaOf(e); q.matches(n, meta) {
			out = append(out, entry(e, n, meta, sr.Index()))
		}
		return true
	})
	setIndex(w, sr.Index())
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// catalogService answers GET /v1/catalog/service/{name}: every instance
// of the service, whatever its health, as Consul's catalog lists them.
func (a *API) catalogService(w http.ResponseWriter, r *http.Request) error {
	return serviceAnswer(a, w, r, func(query) catalog.Status { return registry.StatusAny },
		func(e registry.Entry, n node, meta map[string]string, index uint64) catalogService {
			return catalogService{
				ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: a.dc, TaggedAddresses: n.TaggedAddresses, NodeMeta: n.Meta,
				ServiceID: serviceID(e.Instance), ServiceName: e.Instance.Service, ServiceAddress: e.Instance.Address,
				ServiceTags: tagsOf(e.Instance), ServiceMeta: meta, ServicePort: e.Instance.Port,
				ServiceWeights: weights{Passing: 1, Warning: 1}, CreateIndex: index, ModifyIndex: index,
			}
		})
}

// healthService answers GET /v1/health/service/{name}: every instance
// with its node and its checks (?passing: those whose every check
// passes).
func (a *API) healthService(w http.ResponseWriter, r *http.Request) error {
	statusOf := func(q query) catalog.Status {
		if q.pass {
			return catalog.StatusPassing
		}
		return registry.StatusAny
	}
	return serviceAnswer(a, w, r, statusOf, func(e registry.Entry, n node, meta map[string]string, index uint64) serviceEntry {
		n.CreateIndex, n.ModifyIndex = index, index
		return serviceEntry{
			Node: n,
			Service: agentService{ID: serviceID(e.Instance), Service: e.Instance.Service, Tags: tagsOf(e.Instance),
				Meta: meta, Port: e.Instance.Port, Address: e.Instance.Address, Weights: weights{Passing: 1, Warning: 1},
				CreateIndex: index, ModifyIndex: index, Datacenter: a.dc},
			Checks: checksOf(n.Node, e, index),
		}
	})
}

// catalogNodes answers GET /v1/catalog/nodes: the synthetic node of every
// address that holds an instance the caller may read, sorted by name; as
// a blocking query, it waits on the service list.
func (a *API) catalogNodes(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Query().Has("filter") {
		return httpapi.BadField("filter", "filter is not served on /v1/catalog/nodes (its nodes are synthetic: muster-synthetic is their only meta)")
	}
	q, err := a.parse(r)
	if err != nil {
		return err
	}
	sums, index, err := a.services(r, w, q)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	out := []node{}
	for _, s := range sums {
		sr, err := a.reg.Service(s.Name)
		if err != nil {
			return err
		}
		if sr.View == nil {
			continue
		}
		for _, inst := range sr.View.Instances {
			if !seen[inst.Address] {
				seen[inst.Address] = true
				n := nodeOf(inst.Address, a.dc)
				if !q.matches(n, nil) {
					continue
				}
				n.CreateIndex, n.ModifyIndex = index, index
				out = append(out, n)
			}
		}
	}
	slices.SortFunc(out, func(x, y node) int { return strings.Compare(x.Node, y.Node) })
	setIndex(w, index)
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// datacenters answers GET /v1/catalog/datacenters.
func (a *API) datacenters(w http.ResponseWriter, r *http.Request) error {
	httpapi.WriteJSON(w, http.StatusOK, []string{a.dc})
	return nil
}

// voters are the leader's and the voters' addresses, from this server's
// own view of the configuration (no message to the other servers, which
// a stranger could otherwise multiply): their Raft addresses, or, for a
// single server with no cluster, this API's own address. Like the main
// API's members list, it needs a token when reads do.
func (a *API) voters(r *http.Request) (leader string, voters []string, err error) {
	if _, err := a.reg.Reader(r.Context(), token(r)); err != nil {
		return "", nil, err
	}
	leader, voters, err = a.reg.Voters()
	if errors.Is(err, registry.ErrNotClustered) {
		self := ""
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			self = la.String()
		}
		return self, []string{self}, nil
	}
	return leader, voters, err
}

// statusLeader answers GET /v1/status/leader: the leader's address as a
// JSON string, "" when none is known (as Consul answers).
func (a *API) statusLeader(w http.ResponseWriter, r *http.Request) error {
	leader, _, err := a.voters(r)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, leader)
	return nil
}

// statusPeers answers GET /v1/status/peers: the voters' addresses.
func (a *API) statusPeers(w http.ResponseWriter, r *http.Request) error {
	_, voters, err := a.voters(r)
	if err != nil {
		return err
	}
	if voters == nil {
		voters = []string{}
	}
	httpapi.WriteJSON(w, http.StatusOK, voters)
	return nil
}

// agentSelf answers GET /v1/agent/self with what clients read of it: the
// datacenter and this server's name.
func (a *API) agentSelf(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.reg.Reader(r.Context(), token(r)); err != nil {
		return err
	}
	self := a.reg.Self()
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{
		"Config": map[string]any{"Datacenter": a.dc, "NodeName": self.Node, "NodeID": nodeUUID(self.Node), "Server": true},
		"Member": map[string]any{"Name": self.Node, "Status": 1, "Tags": map[string]string{"dc": a.dc, "role": "consul"}},
		"Meta":   map[string]string{"muster": "true"},
	})
	return nil
}

// The JSON shapes, field for field as Consul's clients decode them.
type (
	weights struct {
		Passing int
		Warning int
	}
	node struct {
		ID              string
		Node            string
		Address         string
		Datacenter      string
		TaggedAddresses map[string]string
		Meta            map[string]string
		CreateIndex     uint64
		ModifyIndex     uint64
	}
	catalogService struct {
		ID                       string
		Node                     string
		Address                  string
		Datacenter               string
		TaggedAddresses          map[string]string
		NodeMeta                 map[string]string
		ServiceKind              string
		ServiceID                string
		ServiceName              string
		ServiceAddress           string
		ServiceTags              []string
		ServiceMeta              map[string]string
		ServicePort              int
		ServiceWeights           weights
		ServiceEnableTagOverride bool
		CreateIndex              uint64
		ModifyIndex              uint64
	}
	agentService struct {
		Kind              string
		ID                string
		Service           string
		Tags              []string
		Meta              map[string]string
		Port              int
		Address           string
		Weights           weights
		EnableTagOverride bool
		CreateIndex       uint64
		ModifyIndex       uint64
		Datacenter        string
	}
	healthCheck struct {
		Node        string
		CheckID     string
		Name        string
		Status      string
		Notes       string
		Output      string
		ServiceID   string
		ServiceName string
		ServiceTags []string
		Type        string
		CreateIndex uint64
		ModifyIndex uint64
	}
	serviceEntry struct {
		Node    node
		Service agentService
		Checks  []healthCheck
	}
)

// nodeOf is the synthetic node of an address: Consul lists instances by
// the node (agent) that holds them; muster has none, so each address is
// one.
func nodeOf(address, dc string) node {
	// Readable, and one name per address: "a.b" and "a-b" read alike, so
	// a few hex digits of the address's hash follow.
	id := nodeUUID(address)
	name := "muster-" + strings.NewReplacer(":", "-", ".", "-").Replace(address) + "-" + id[:6]
	return node{ID: id, Node: name, Address: address, Datacenter: dc,
		TaggedAddresses: map[string]string{"lan": address, "wan": address},
		Meta:            map[string]string{"muster-synthetic": "true"}}
}

// nodeUUID is a UUID-shaped ID derived from s.
func nodeUUID(s string) string {
	h := sha256.Sum256([]byte(s))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// serviceID is the instance's ID as Consul's answers show it: the ID its
// registrant chose through this API, else muster's.
func serviceID(inst *catalog.Instance) string {
	if inst.ExternalID != "" {
		return inst.ExternalID
	}
	return inst.ID
}

func tagsOf(inst *catalog.Instance) []string {
	if len(inst.Tags) == 0 {
		return []string{}
	}
	return inst.Tags
}

// metaOf is the instance's meta, with muster's freshness beside it:
// muster_quality, muster_last_seen_ms (absent when unknown) and
// muster_status. Keys beginning muster_ are muster's: an instance's own
// are left out, so that a filter on them selects by muster's values.
func metaOf(e registry.Entry) map[string]string {
	m := make(map[string]string, len(e.Instance.Meta)+3)
	for k, v := range e.Instance.Meta {
		if !strings.HasPrefix(k, "muster_") { // muster's own keys, below
			m[k] = v
		}
	}
	m["muster_quality"] = strconv.FormatFloat(e.Quality, 'f', 2, 64)
	if e.Age >= 0 {
		m["muster_last_seen_ms"] = strconv.FormatInt(e.Age.Milliseconds(), 10)
	}
	m["muster_status"] = string(e.Status)
	return m
}

// checksOf are an entry's checks as Consul shows them: the heartbeat as a
// TTL check (service:<id>), each active check (service:<id>:<n>), and,
// for a draining instance, Consul's maintenance check, critical.
func checksOf(nodeName string, e registry.Entry, index uint64) []healthCheck {
	inst := e.Instance
	mk := func(id, name, status, output, typ string) healthCheck {
		return healthCheck{Node: nodeName, CheckID: id, Name: name, Status: status, Output: output,
			ServiceID: serviceID(inst), ServiceName: inst.Service, ServiceTags: tagsOf(inst), Type: typ,
			CreateIndex: index, ModifyIndex: index}
	}
	var out []healthCheck
	if inst.TTL > 0 {
		out = append(out, mk("service:"+serviceID(inst), "muster heartbeat", heartbeatStatus(e),
			fmt.Sprintf("quality %.2f, last heartbeat %s ago", e.Quality, lastSeen(e.Age)), "ttl"))
	}
	for i, c := range e.Checks {
		out = append(out, mk("service:"+serviceID(inst)+":"+strconv.Itoa(i+1), "muster "+c.Type+" check", c.Status, c.Output, c.Type))
	}
	if e.Status == catalog.StatusDraining {
		m := mk("_service_maintenance:"+serviceID(inst), "Service Maintenance Mode", api.StatusCritical, "", "maintenance")
		m.Notes = "draining: the instance is leaving; send new calls elsewhere"
		out = append(out, m)
	}
	if out == nil {
		out = []healthCheck{}
	}
	return out
}

// heartbeatStatus is the status of an instance's heartbeat alone: critical
// once its TTL has run out, whatever its active checks say. An instance
// critical with no active check failing is critical by its heartbeat; one
// with a failing check is so by its heartbeat too only when the TTL has
// run out since the last heartbeat heard (or none was heard).
func heartbeatStatus(e registry.Entry) string {
	if e.Status != catalog.StatusCritical {
		return api.StatusPassing
	}
	failing := slices.ContainsFunc(e.Checks, func(c api.CheckState) bool { return c.Status != api.StatusPassing })
	if !failing || e.Age < 0 || e.Age > e.Instance.TTL {
		return api.StatusCritical
	}
	return api.StatusPassing
}

func lastSeen(age time.Duration) string {
	if age < 0 {
		return "unknown"
	}
	return age.Round(time.Millisecond).String()
}
