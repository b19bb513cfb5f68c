package consulapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// start runs a real server with the Consul-compatible API on a free port
// of 127.0.0.1 and returns it with a consul/api client of it.
func start(t *testing.T, mutate func(*server.Config)) (*testserver.Harness, *consul.Client) {
	t.Helper()
	h := testserver.NewHarness(t, func(c *server.Config) {
		c.Consul.Addr = "127.0.0.1:0"
		if mutate != nil {
			mutate(c)
		}
	})
	cc, err := consul.NewClient(&consul.Config{Address: h.Srv.ConsulAddr(), Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	return h, cc
}

// register registers an instance of service through muster's own API,
// with tags and meta, and returns its ID and session token.
func register(t *testing.T, h *testserver.Harness, service, secret string, tags []string, meta map[string]string) (string, string) {
	t.Helper()
	inst := testutil.NewInstance(t, secret, verify.Proof)
	reg, err := h.Anon.Register(context.Background(), service, secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: inst.Port(), TTL: "1h", Tags: tags, Meta: meta})
	if err != nil {
		t.Fatal(err)
	}
	return reg.ID, inst.TokenOf(reg.ID)
}

// TestConsul_ClientReadsTheCatalog: the real consul/api client decodes
// every answer of the routes served, and sees muster's instances as
// Consul service instances: ID, name, address, port, tags, meta (with
// muster's freshness), a node per address, and the heartbeat as a TTL
// check; tag and meta filters select, ?passing leaves a draining
// instance out.
func TestConsul_ClientReadsTheCatalog(t *testing.T) {
	h, cc := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "web", "db")
	web1, _ := register(t, h, "web", k.Secret, []string{"v1", "blue"}, map[string]string{"zone": "a"})
	web2, tok2 := register(t, h, "web", k.Secret, []string{"v2"}, map[string]string{"zone": "b"})
	register(t, h, "db", k.Secret, nil, nil)

	svcs, meta, err := cc.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 2 || strings.Join(svcs["web"], ",") != "blue,v1,v2" || len(svcs["db"]) != 0 {
		t.Errorf("catalog services: %v", svcs)
	}
	if meta.LastIndex == 0 || !meta.KnownLeader {
		t.Errorf("query meta: %+v", meta)
	}

	cs, _, err := cc.Catalog().Service("web", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("catalog service web: %d entries", len(cs))
	}
	for _, s := range cs {
		if s.ServiceName != "web" || s.ServiceAddress != "127.0.0.1" || s.ServicePort == 0 || s.Datacenter != "dc1" ||
			s.Node == "" || s.Address != "127.0.0.1" || s.ServiceMeta["muster_quality"] == "" || s.ServiceMeta["zone"] == "" {
			t.Errorf("catalog entry: %+v", s)
		}
	}
	if cs, _, err := cc.Catalog().Service("web", "v2", nil); err != nil || len(cs) != 1 || cs[0].ServiceID != web2 {
		t.Errorf("catalog service web tag v2: %+v, %v", cs, err)
	}
	if cs, _, err := cc.Catalog().Service("web", "", &consul.QueryOptions{Filter: `ServiceMeta.zone == "a"`}); err != nil || len(cs) != 1 || cs[0].ServiceID != web1 {
		t.Errorf("catalog service web, filter zone a: %+v, %v", cs, err)
	}
	if cs, _, err := cc.Catalog().Service("web", "", &consul.QueryOptions{Filter: `"blue" in ServiceTags`}); err != nil || len(cs) != 1 || cs[0].ServiceID != web1 {
		t.Errorf("catalog service web, filter blue in tags: %+v, %v", cs, err)
	}

	// Draining web2: the health view shows its maintenance check, and
	// ?passing leaves it out.
	if _, err := h.Anon.Drain(ctx, web2, tok2); err != nil {
		t.Fatal(err)
	}
	all, _, err := cc.Health().Service("web", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("health service web: %d entries", len(all))
	}
	for _, e := range all {
		want := consul.HealthPassing
		if e.Service.ID == web2 {
			want = consul.HealthMaint // Consul's maintenance check, critical
		}
		if got := e.Checks.AggregatedStatus(); got != want {
			t.Errorf("instance %s: aggregated status %s, want %s (%+v)", e.Service.ID, got, want, e.Checks)
		}
		if e.Checks[0].CheckID != "service:"+e.Service.ID || e.Checks[0].Type != "ttl" || e.Node.Node == "" {
			t.Errorf("instance %s: checks %+v, node %+v", e.Service.ID, e.Checks, e.Node)
		}
	}
	passing, _, err := cc.Health().Service("web", "", true, nil)
	if err != nil || len(passing) != 1 || passing[0].Service.ID != web1 {
		t.Errorf("health service web passing: %+v, %v", passing, err)
	}

	if nodes, _, err := cc.Catalog().Nodes(nil); err != nil || len(nodes) != 1 || nodes[0].Address != "127.0.0.1" || nodes[0].Datacenter != "dc1" {
		t.Errorf("catalog nodes: %+v, %v", nodes, err)
	}
	if dcs, err := cc.Catalog().Datacenters(); err != nil || len(dcs) != 1 || dcs[0] != "dc1" {
		t.Errorf("datacenters: %v, %v", dcs, err)
	}
	if leader, err := cc.Status().Leader(); err != nil || leader == "" {
		t.Errorf("status leader: %q, %v", leader, err)
	}
	if peers, err := cc.Status().Peers(); err != nil || len(peers) != 1 {
		t.Errorf("status peers: %v, %v", peers, err)
	}
	self, err := cc.Agent().Self()
	if err != nil || self["Config"]["Datacenter"] != "dc1" {
		t.Errorf("agent self: %v, %v", self, err)
	}
}

// TestConsul_BlockingQuery: a blocking query on a service (the client's
// WaitIndex) returns as soon as the service changes, with a higher
// X-Consul-Index, and not before; one on the service list likewise.
func TestConsul_BlockingQuery(t *testing.T) {
	h, cc := start(t, nil)
	k := h.Key(t, "web")
	register(t, h, "web", k.Secret, nil, nil)
	_, meta, err := cc.Health().Service("web", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, lmeta, err := cc.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		n     int
		index uint64
		err   error
		after time.Duration
	}
	svc, list := make(chan got, 1), make(chan got, 1)
	began := time.Now()
	go func() {
		es, m, err := cc.Health().Service("web", "", true, &consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 20 * time.Second})
		svc <- got{len(es), m.LastIndex, err, time.Since(began)}
	}()
	go func() {
		ss, m, err := cc.Catalog().Services(&consul.QueryOptions{WaitIndex: lmeta.LastIndex, WaitTime: 20 * time.Second})
		list <- got{len(ss), m.LastIndex, err, time.Since(began)}
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case g := <-svc:
		t.Fatalf("the blocking query returned before any change: %+v", g)
	default:
	}
	register(t, h, "web", k.Secret, nil, nil)
	for name, ch := range map[string]chan got{"health service": svc, "catalog services": list} {
		select {
		case g := <-ch:
			if g.err != nil || g.index <= meta.LastIndex || g.after > 10*time.Second {
				t.Errorf("%s: %+v (index before %d)", name, g, meta.LastIndex)
			}
			if name == "health service" && g.n != 2 {
				t.Errorf("health service after the change: %d entries, want 2", g.n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the blocking query did not return after the change", name)
		}
	}
}

// TestConsul_PrivateReads: with --anonymous-reads=false the Consul API's
// reads need a token covering the service, in X-Consul-Token as consul's
// clients send it; without one they are 401, outside the token's scope
// 403, and the service list shows only the token's services.
func TestConsul_PrivateReads(t *testing.T) {
	h, _ := start(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	k := h.Key(t, "web", "db")
	register(t, h, "web", k.Secret, nil, nil)
	register(t, h, "db", k.Secret, nil, nil)
	rd := h.Token(t, "read", "web")
	base := "http://" + h.Srv.ConsulAddr()
	get := func(path, tok string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if tok != "" {
			req.Header.Set("X-Consul-Token", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, b := get("/v1/health/service/web", ""); c != 401 || !strings.Contains(b, `"code"`) {
		t.Errorf("no token: %d %s", c, b)
	}
	if c, _ := get("/v1/health/service/web", rd.Secret); c != 200 {
		t.Errorf("read token of web: %d", c)
	}
	if c, b := get("/v1/health/service/db", rd.Secret); c != 403 {
		t.Errorf("read token of web, service db: %d %s", c, b)
	}
	c, b := get("/v1/catalog/services", rd.Secret)
	var svcs map[string][]string
	if c != 200 || json.Unmarshal([]byte(b), &svcs) != nil || len(svcs) != 1 || svcs["web"] == nil {
		t.Errorf("catalog services with a read token of web: %d %s", c, b)
	}
}

// TestConsul_BadQueries: a filter of another form, another datacenter, a
// wait that is not a duration: each a 400 naming the parameter.
func TestConsul_BadQueries(t *testing.T) {
	h, _ := start(t, nil)
	base := "http://" + h.Srv.ConsulAddr()
	for q, field := range map[string]string{
		"filter=" + urlq(`Service matches "w.*"`): "filter",
		"dc=dc9":               "dc",
		"index=1&wait=forever": "wait",
		"index=x":              "index",
		"stale&consistent":     "stale",
		"filter=" + urlq(`ServiceMeta.zone != "a"`): "filter",
	} {
		resp, err := http.Get(base + "/v1/catalog/service/web?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var eb api.ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != 400 || eb.Error.Field != field {
			t.Errorf("?%s: %d %+v, want 400 naming %s", q, resp.StatusCode, eb, field)
		}
	}
}

func urlq(s string) string {
	r := strings.NewReplacer(" ", "%20", `"`, "%22", "=", "%3D", "!", "%21", "*", "%2A")
	return r.Replace(s)
}

// TestConsul_FieldsAreConsuls: every field of the catalog's and health's
// answers is one Consul's documentation lists (testdata/consul-fields.json),
// spelled as Consul spells it, and the required ones are present, for an
// instance with tags, meta, an active check and a drain.
func TestConsul_FieldsAreConsuls(t *testing.T) {
	b, err := os.ReadFile("testdata/consul-fields.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden map[string]json.RawMessage
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	shape := func(name string) (allowed, required map[string]bool) {
		var s struct{ Allowed, Required []string }
		if err := json.Unmarshal(golden[name], &s); err != nil {
			t.Fatal(name, err)
		}
		allowed, required = map[string]bool{}, map[string]bool{}
		for _, f := range s.Allowed {
			allowed[f] = true
		}
		for _, f := range s.Required {
			required[f] = true
		}
		return allowed, required
	}
	check := func(what, name string, obj map[string]json.RawMessage) {
		t.Helper()
		allowed, required := shape(name)
		for f := range obj {
			if !allowed[f] {
				t.Errorf("%s: field %q is not one of Consul's", what, f)
			}
		}
		for f := range required {
			if _, ok := obj[f]; !ok {
				t.Errorf("%s: no field %q", what, f)
			}
		}
	}
	h, _ := start(t, nil)
	k := h.Key(t, "web")
	id, tok := register(t, h, "web", k.Secret, []string{"v1"}, map[string]string{"zone": "a"})
	if _, err := h.Anon.Drain(context.Background(), id, tok); err != nil {
		t.Fatal(err)
	}
	get := func(path string, v any) {
		t.Helper()
		resp, err := http.Get("http://" + h.Srv.ConsulAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d, %v", path, resp.StatusCode, err)
		}
	}
	var cs []map[string]json.RawMessage
	get("/v1/catalog/service/web", &cs)
	var nodes []map[string]json.RawMessage
	get("/v1/catalog/nodes", &nodes)
	var entries []map[string]json.RawMessage
	get("/v1/health/service/web", &entries)
	if len(cs) != 1 || len(nodes) != 1 || len(entries) != 1 {
		t.Fatalf("%d catalog entries, %d nodes, %d health entries", len(cs), len(nodes), len(entries))
	}
	check("catalog service", "catalog_service", cs[0])
	check("catalog node", "catalog_node", nodes[0])
	check("health entry", "health_entry", entries[0])
	var node, svc map[string]json.RawMessage
	var checks []map[string]json.RawMessage
	json.Unmarshal(entries[0]["Node"], &node)
	json.Unmarshal(entries[0]["Service"], &svc)
	json.Unmarshal(entries[0]["Checks"], &checks)
	check("health entry's node", "catalog_node", node)
	check("health entry's service", "health_service", svc)
	if len(checks) != 2 {
		t.Fatalf("a draining instance's checks: %d, want its heartbeat and the maintenance check", len(checks))
	}
	for _, c := range checks {
		check("health check", "health_check", c)
	}
}

// TestConsul_StatusInACluster: on a follower of a three-server cluster,
// status/leader names the leader's Raft address and status/peers the
// three voters', from the follower's own view.
func TestConsul_StatusInACluster(t *testing.T) {
	servers := testserver.StartCluster(t, 3, func(_ int, c *server.Config) { c.Consul.Addr = "127.0.0.1:0" })
	lead := testserver.WaitCluster(t, servers)
	follower := servers[(lead+1)%len(servers)]
	cc, err := consul.NewClient(&consul.Config{Address: follower.ConsulAddr(), Scheme: "http"})
	if err != nil {
		t.Fatal(err)
	}
	want := servers[lead].Node().RaftAddr()
	testserver.Eventually(t, 5*time.Second, "the follower knows the leader", func() bool {
		leader, err := cc.Status().Leader()
		return err == nil && leader == want
	})
	peers, err := cc.Status().Peers()
	if err != nil || len(peers) != 3 || !slices.Contains(peers, want) {
		t.Errorf("status peers: %v, %v; want the three voters, the leader %s among them", peers, err, want)
	}
}
