package consulapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
)

// TestConsul_RevokedTokenBlockingServiceQuery: with private reads, a blocking
// query on /v1/health/service/{name} (and /v1/catalog/service) that began
// with a valid token answers no instance once the token was revoked while
// it waited: the scope is checked again when the wait ends, as the main
// API's lookups and this API's service list do.
func TestConsul_RevokedTokenBlockingServiceQuery(t *testing.T) {
	h, _ := start(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	k := h.Key(t, "web")
	register(t, h, "web", k.Secret, nil, nil)
	rd := h.Token(t, "read", "web")
	base := "http://" + h.Srv.ConsulAddr()
	idx := func(route string) uint64 {
		req, _ := http.NewRequest(http.MethodGet, base+route, nil)
		req.Header.Set("X-Consul-Token", rd.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s before revocation: %d", route, resp.StatusCode)
		}
		n, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
		return n
	}
	type result struct {
		route string
		code  int
		body  string
	}
	routes := []string{"/v1/health/service/web", "/v1/catalog/service/web"}
	out := make(chan result, len(routes))
	for _, route := range routes {
		i := idx(route)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, base+route+"?wait=20s&index="+strconv.FormatUint(i, 10), nil)
			req.Header.Set("X-Consul-Token", rd.Secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				out <- result{route, -1, err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out <- result{route, resp.StatusCode, string(b)}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := h.Admin.RevokeToken(context.Background(), rd.ID); err != nil {
		t.Fatal(err)
	}
	register(t, h, "web", k.Secret, nil, nil) // wakes the blocking queries
	for range routes {
		select {
		case r := <-out:
			if r.code == 200 {
				t.Errorf("%s: a token revoked during the blocking query still read the service: %d %.160s", r.route, r.code, r.body)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("blocking query did not return")
		}
	}
	// The same read without ?index is refused, as it should be.
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/health/service/web", nil)
	req.Header.Set("X-Consul-Token", rd.Secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode == 200 {
		t.Fatalf("a plain read with the revoked token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// TestConsul_FilterOnMusterMeta: the filter ServiceMeta.key == "value"
// matches the meta the answers show, muster's own keys (muster_status)
// among them.
func TestConsul_FilterOnMusterMeta(t *testing.T) {
	h, cc := start(t, nil)
	k := h.Key(t, "web")
	register(t, h, "web", k.Secret, nil, nil)
	all, _, err := cc.Catalog().Service("web", "", nil)
	if err != nil || len(all) != 1 || all[0].ServiceMeta["muster_status"] != "passing" {
		t.Fatalf("catalog service web: %+v, %v", all, err)
	}
	for _, f := range []string{`ServiceMeta.muster_status == "passing"`, `ServiceMeta["muster_status"] == "passing"`} {
		got, _, err := cc.Catalog().Service("web", "", &consul.QueryOptions{Filter: f})
		if err != nil || len(got) != 1 {
			t.Errorf("filter %s: %d entries, %v; want the one instance whose ServiceMeta.muster_status is passing", f, len(got), err)
		}
	}
}

// TestConsul_EveryAnswerIsJSON: every route not served answers a JSON
// error, for every method: a CONNECT, and an unclean path (a PUT to
// //v1/agent/service/register, or one with ..), which ServeMux would answer
// in plain text or with a redirect.
func TestConsul_EveryAnswerIsJSON(t *testing.T) {
	h, _ := start(t, nil)
	addr := h.Srv.ConsulAddr()
	for _, req := range []string{
		"CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\nConnection: close\r\n\r\n",
		"PUT //v1/agent/service/register HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
		"PUT /v1/agent/x/../service/register HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			c.Close()
			t.Fatal(err)
		}
		var eb api.ErrorBody
		derr := json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		c.Close()
		if resp.StatusCode < 400 || derr != nil || eb.Error.Code == "" {
			t.Errorf("%.40q: %d %q (%v), want a JSON error", req, resp.StatusCode, resp.Header.Get("Content-Type"), derr)
		}
	}
}

// TestConsul_NodeMeta: consul/api's QueryOptions.NodeMeta
// (Prometheus's consul_sd_configs node_meta) sends ?node-meta=key:value;
// muster's synthetic nodes carry only {"muster-synthetic": "true"}, so
// node-meta=rack:a selects nothing, never every instance.
func TestConsul_NodeMeta(t *testing.T) {
	h, cc := start(t, nil)
	k := h.Key(t, "web")
	register(t, h, "web", k.Secret, nil, nil)
	opts := &consul.QueryOptions{NodeMeta: map[string]string{"rack": "a"}}
	es, _, err := cc.Health().Service("web", "", false, opts)
	if err == nil && len(es) != 0 {
		t.Errorf("health service web, node-meta rack:a: %d entries, want none (no node has that meta)", len(es))
	}
	cs, _, err := cc.Catalog().Service("web", "", opts)
	if err == nil && len(cs) != 0 {
		t.Errorf("catalog service web, node-meta rack:a: %d entries, want none (no node has that meta)", len(cs))
	}
	ns, _, err := cc.Catalog().Nodes(opts)
	if err == nil && len(ns) != 0 {
		t.Errorf("catalog nodes, node-meta rack:a: %d nodes, want none", len(ns))
	}
	if es, _, err := cc.Health().Service("web", "", false, &consul.QueryOptions{NodeMeta: map[string]string{"muster-synthetic": "true"}}); err != nil || len(es) != 1 {
		t.Errorf("health service web, node-meta muster-synthetic:true: %d entries, %v; want the instance", len(es), err)
	}
}

// TestConsul_MetaFilterValueWithIn: ServiceMeta.k == "v" is served for any
// value, one holding " in " (made in berlin) too, which is not the tag
// form.
func TestConsul_MetaFilterValueWithIn(t *testing.T) {
	h, cc := start(t, nil)
	k := h.Key(t, "web")
	id, _ := register(t, h, "web", k.Secret, nil, map[string]string{"note": "made in berlin"})
	got, _, err := cc.Catalog().Service("web", "", &consul.QueryOptions{Filter: `ServiceMeta.note == "made in berlin"`})
	if err != nil || len(got) != 1 || got[0].ServiceID != id {
		t.Errorf(`filter ServiceMeta.note == "made in berlin": %d entries, %v; want the instance`, len(got), err)
	}
}

// TestConsul_WaitOverTheMaximumIsCut: as Consul does, a wait beyond the
// longest (10 minutes) is cut to it, not refused: a client configured with
// WaitTime 15m (wait=900000ms, as consul/api sends it) gets its answer.
func TestConsul_WaitOverTheMaximumIsCut(t *testing.T) {
	h, cc := start(t, nil)
	k := h.Key(t, "web")
	register(t, h, "web", k.Secret, nil, nil)
	_, meta, err := cc.Health().Service("web", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := cc.Health().Service("web", "", false, &consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 15 * time.Minute})
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	register(t, h, "web", k.Secret, nil, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("a blocking query with WaitTime 15m: %v; Consul clamps it to its maximum", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query did not return after a change")
	}
}

// TestConsul_FiltersByEndpoint: the catalog's filters name ServiceMeta
// and ServiceTags, the health endpoint's Service.Meta and Service.Tags,
// as Consul's do, each refusing the other's; the service list applies its
// filter (a service is listed when an instance matches); the node list
// serves none.
func TestConsul_FiltersByEndpoint(t *testing.T) {
	h, _ := start(t, nil)
	k := h.Key(t, "web", "db")
	register(t, h, "web", k.Secret, []string{"v2"}, map[string]string{"zone": "a"})
	register(t, h, "db", k.Secret, []string{"v1"}, nil)
	base := "http://" + h.Srv.ConsulAddr()
	get := func(path string, v any) int {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil && resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	q := func(f string) string {
		return "?filter=" + strings.NewReplacer(" ", "%20", `"`, "%22", "=", "%3D").Replace(f)
	}
	for path, want := range map[string]int{
		"/v1/health/service/web" + q(`Service.Meta.zone == "a"`): 1,
		"/v1/health/service/web" + q(`"v2" in Service.Tags`):     1,
		"/v1/health/service/web" + q(`Service.Meta.zone == "b"`): 0,
		"/v1/catalog/service/web" + q(`ServiceMeta.zone == "a"`): 1,
	} {
		var es []json.RawMessage
		if c := get(path, &es); c != 200 || len(es) != want {
			t.Errorf("%s: %d, %d entries, want %d", path, c, len(es), want)
		}
	}
	for _, path := range []string{
		"/v1/health/service/web" + q(`ServiceMeta.zone == "a"`),
		"/v1/catalog/service/web" + q(`Service.Meta.zone == "a"`),
		"/v1/catalog/nodes" + q(`Meta.rack == "a"`),
	} {
		if c := get(path, nil); c != 400 {
			t.Errorf("%s: %d, want 400", path, c)
		}
	}
	var svcs map[string][]string
	if c := get("/v1/catalog/services"+q(`"v2" in ServiceTags`), &svcs); c != 200 || len(svcs) != 1 || svcs["web"] == nil {
		t.Errorf("catalog services filtered on v2: %d %v", c, svcs)
	}
}
