package consulapi_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// consulDo sends a request to the Consul-compatible API at base with
// token in X-Consul-Token, and returns the status and, for an error, its
// JSON body, which every error must have.
func consulDo(t *testing.T, method, base, path, token, body string) (int, api.ErrorBody) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb api.ErrorBody
	if resp.StatusCode >= 400 {
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Errorf("%s %s: %d without a JSON error (%v)", method, path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode, eb
}

// consulKey creates an enrolment key of services with the given
// consul_verify policy ("" for the default) and returns its secret.
func consulKey(t *testing.T, h *testserver.Harness, policy string, services ...string) string {
	t.Helper()
	k, err := h.Admin.CreateToken(context.Background(), api.CreateTokenRequest{Role: "register", Services: services, ConsulVerify: policy})
	if err != nil {
		t.Fatal(err)
	}
	if policy == "none" && k.ConsulVerify != "none" {
		t.Fatalf("the key lists consul_verify %q", k.ConsulVerify)
	}
	return k.Secret
}

// consulAs is a consul/api client of h's Consul-compatible API with
// token.
func consulAs(t *testing.T, h *testserver.Harness, token string) *consul.Client {
	t.Helper()
	cc, err := consul.NewClient(&consul.Config{Address: h.Srv.ConsulAddr(), Scheme: "http", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// healthOf is the Consul health entries of service, and the index.
func healthOf(t *testing.T, cc *consul.Client, service string, passing bool, index uint64) ([]*consul.ServiceEntry, uint64) {
	t.Helper()
	es, meta, err := cc.Health().Service(service, "", passing, &consul.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return es, meta.LastIndex
}

// TestConsul_ClientRegistersHeartbeatsDeregisters: a program written
// against consul/api, holding an enrolment key whose Consul
// registrations skip the callback, registers a service with a TTL check,
// passes and fails it, registers it again changed, and deregisters it;
// a blocking query sees each change, and muster's own API shows the
// instance with its proof "none".
func TestConsul_ClientRegistersHeartbeatsDeregisters(t *testing.T) {
	h, _ := start(t, nil)
	cc := consulAs(t, h, consulKey(t, h, "none", "web"))
	ag := cc.Agent()
	reg := &consul.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 8080, Tags: []string{"v1"},
		Meta: map[string]string{"team": "core"}, Check: &consul.AgentServiceCheck{TTL: "10s", DeregisterCriticalServiceAfter: "1m"}}
	if err := ag.ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	// As on Consul, a TTL check starts critical: not yet passing.
	all, index := healthOf(t, cc, "web", false, 0)
	if len(all) != 1 || all[0].Service.ID != "web-1" || all[0].Service.Port != 8080 || all[0].Checks.AggregatedStatus() != consul.HealthCritical {
		t.Fatalf("after registering: %+v", all)
	}
	if ok, _ := healthOf(t, cc, "web", true, 0); len(ok) != 0 {
		t.Fatalf("passing before the first pass: %d", len(ok))
	}
	if c := all[0].Checks[0]; c.CheckID != "service:web-1" || c.ServiceID != "web-1" {
		t.Errorf("the TTL check is %+v", c)
	}

	got := make(chan []*consul.ServiceEntry, 1)
	go func() {
		es, _, _ := cc.Health().Service("web", "", true, &consul.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second})
		got <- es
	}()
	time.Sleep(50 * time.Millisecond)
	if err := ag.PassTTL("service:web-1", "ok"); err != nil {
		t.Fatal(err)
	}
	select {
	case es := <-got:
		if len(es) != 1 || es[0].Checks.AggregatedStatus() != consul.HealthPassing {
			t.Fatalf("the blocking query woke with %+v", es)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query did not see the pass")
	}

	res, err := h.Anon.Lookup(context.Background(), "web")
	if err != nil || len(res.Instances) != 1 {
		t.Fatalf("muster's lookup: %+v, %v", res, err)
	}
	in := res.Instances[0]
	if in.Proof != api.ProofNone || in.Address != "127.0.0.1" || in.Meta["team"] != "core" || in.Status != api.StatusPassing {
		t.Errorf("muster shows %+v", in)
	}

	if err := ag.FailTTL("service:web-1", "disk full"); err != nil {
		t.Fatal(err)
	}
	if es, _ := healthOf(t, cc, "web", true, 0); len(es) != 0 {
		t.Errorf("after FailTTL, %d passing", len(es))
	}
	if err := ag.UpdateTTL("service:web-1", "back", consul.HealthPassing); err != nil {
		t.Fatal(err)
	}
	if es, _ := healthOf(t, cc, "web", true, 0); len(es) != 1 {
		t.Errorf("after UpdateTTL passing, %d passing", len(es))
	}

	// Registered again, changed: the same service ID, one instance.
	reg.Tags, reg.Port = []string{"v2"}, 8081
	reg.Check.Status = consul.HealthPassing
	if err := ag.ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	es, _ := healthOf(t, cc, "web", true, 0)
	if len(es) != 1 || es[0].Service.Port != 8081 || len(es[0].Service.Tags) != 1 || es[0].Service.Tags[0] != "v2" {
		t.Fatalf("after registering again: %+v", es)
	}

	if err := ag.ServiceDeregister("web-1"); err != nil {
		t.Fatal(err)
	}
	if es, _ := healthOf(t, cc, "web", false, 0); len(es) != 0 {
		t.Errorf("after deregistering: %+v", es)
	}
	if err := ag.ServiceDeregister("web-1"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("deregistering again: %v", err)
	}
	if err := ag.PassTTL("service:web-1", ""); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a pass after deregistering: %v", err)
	}
}

// TestConsul_RegistrationIsCalledBack: with a key of the default
// policy, a Consul registration passes muster's callback: refused when
// nothing at the address answers for the key, accepted when the process
// there does (here on the service's own port, so its proof is
// address+port).
func TestConsul_RegistrationIsCalledBack(t *testing.T) {
	h, _ := start(t, nil)
	secret := consulKey(t, h, "", "web")
	ag := consulAs(t, h, secret).Agent()
	check := &consul.AgentServiceCheck{TTL: "10s", Status: consul.HealthPassing}

	silent := httptest.NewServer(http.NotFoundHandler())
	defer silent.Close()
	err := ag.ServiceRegister(&consul.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.1", Port: portOf(t, silent.URL), Check: check})
	if err == nil || !strings.Contains(err.Error(), api.CodeVerificationFailed) || !strings.Contains(err.Error(), "muster answer") ||
		!strings.Contains(err.Error(), "http://127.0.0.1:"+strconv.Itoa(portOf(t, silent.URL))+"/.well-known/muster/verify") {
		t.Fatalf("a registration nothing answers for: %v", err)
	}

	inst := testutil.NewInstance(t, secret, verify.Proof)
	if err := ag.ServiceRegister(&consul.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.1", Port: inst.Port(), Check: check}); err != nil {
		t.Fatal(err)
	}
	res, err := h.Anon.Lookup(context.Background(), "web")
	if err != nil || len(res.Instances) != 1 || res.Instances[0].Proof != api.ProofAddressPort || res.Instances[0].Port != inst.Port() {
		t.Fatalf("muster shows %+v, %v", res, err)
	}
	if calls := len(inst.Calls); calls != 1 || inst.Calls[0].Service != "web" {
		t.Errorf("the instance was called back %d times: %+v", calls, inst.Calls)
	}

	// A sidecar on another port of the host (muster answer) answers for
	// a process that cannot (muster_verify_port): the host is proved, not
	// the port. It answers only for the services it is told.
	sidecar := httptest.NewServer(client.AnswerCallbacks(secret, nil, "web"))
	defer sidecar.Close()
	err = ag.ServiceRegister(&consul.AgentServiceRegistration{ID: "web-2", Name: "web", Address: "127.0.0.1", Port: 9999, Check: check,
		Meta: map[string]string{"muster_verify_port": strconv.Itoa(portOf(t, sidecar.URL))}})
	if err != nil {
		t.Fatal(err)
	}
	narrow := httptest.NewServer(client.AnswerCallbacks(secret, nil, "db"))
	defer narrow.Close()
	err = ag.ServiceRegister(&consul.AgentServiceRegistration{ID: "web-3", Name: "web", Address: "127.0.0.1", Port: 9998, Check: check,
		Meta: map[string]string{"muster_verify_port": strconv.Itoa(portOf(t, narrow.URL))}})
	if err == nil || !strings.Contains(err.Error(), api.CodeVerificationFailed) {
		t.Errorf("a sidecar that does not answer for web: %v", err)
	}
	res, _ = h.Anon.Lookup(context.Background(), "web")
	var proofs []string
	for _, in := range res.Instances {
		proofs = append(proofs, in.Proof+"@"+strconv.Itoa(in.Port))
		if _, ok := in.Meta["muster_verify_port"]; ok {
			t.Errorf("muster_verify_port is kept as meta: %+v", in.Meta)
		}
	}
	if len(res.Instances) != 2 || !strings.Contains(strings.Join(proofs, " "), api.ProofAddress+"@9999") {
		t.Errorf("instances: %v", proofs)
	}
}

// TestConsul_StrangersCannotWrite: every write needs an enrolment key.
// None, a read token, the admin token, a key that does not cover the
// service, another key than the one that registered the ID, a key in
// the URL: each refused with a JSON error, and nothing changes.
func TestConsul_StrangersCannotWrite(t *testing.T) {
	h, _ := start(t, nil)
	owner := consulKey(t, h, "none", "web")
	other := consulKey(t, h, "none", "web")
	narrow := consulKey(t, h, "none", "db")
	rd, err := h.Admin.CreateToken(context.Background(), api.CreateTokenRequest{Role: "read", Services: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"ID":"web-1","Name":"web","Address":"127.0.0.1","Port":8080,"Check":{"TTL":"10s","Status":"passing"}}`
	base := "http://" + h.Srv.ConsulAddr()
	do := func(method, path, token, body string) (int, api.ErrorBody) {
		t.Helper()
		return consulDo(t, method, base, path, token, body)
	}
	for _, c := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", 401}, {"an unknown token", "mk_nonsense", 401}, {"a read token", rd.Secret, 403},
		{"the admin token", h.AdminToken(t), 403}, {"a key of db", narrow, 403},
	} {
		if code, eb := do("PUT", "/v1/agent/service/register", c.token, body); code != c.want {
			t.Errorf("register with %s: %d %+v, want %d", c.name, code, eb, c.want)
		}
	}
	if code, _ := do("PUT", "/v1/agent/service/register?token="+url.QueryEscape(owner), "", body); code != 400 {
		t.Errorf("a key in the URL: %d, want 400", code)
	}
	if code, eb := do("PUT", "/v1/agent/service/register", owner, body); code != 200 {
		t.Fatalf("the owner's registration: %d %+v", code, eb)
	}
	// Another key, even of the same services, finds no web-1 of its own.
	for _, tok := range []string{other, rd.Secret, h.AdminToken(t), ""} {
		for _, p := range []string{"/v1/agent/check/fail/service:web-1", "/v1/agent/check/pass/service:web-1", "/v1/agent/service/deregister/web-1"} {
			if code, _ := do("PUT", p, tok, ""); code < 400 {
				t.Errorf("PUT %s with another credential: %d", p, code)
			}
		}
	}
	es, _, err := consulAs(t, h, "").Health().Service("web", "", true, nil)
	if err != nil || len(es) != 1 || es[0].Service.ID != "web-1" {
		t.Errorf("after the strangers: %+v, %v", es, err)
	}
	// Routes and methods that are not served.
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/agent/service/register", 405}, {"POST", "/v1/agent/service/register", 405},
		{"PUT", "/v1/agent/check/register", 404}, {"PUT", "/v1/agent/check/deregister/service:web-1", 404},
		{"PUT", "/v1/agent/check/pass/web-1", 404}, {"PUT", "/v1/catalog/register", 404}, {"GET", "/v1/kv/x", 404},
	} {
		if code, eb := do(c.method, c.path, owner, body); code != c.want {
			t.Errorf("%s %s: %d %+v, want %d", c.method, c.path, code, eb, c.want)
		}
	}
}

// TestConsul_RegistrationRefusals: what muster cannot honour is refused
// with a 400 naming the field, never accepted and served otherwise.
func TestConsul_RegistrationRefusals(t *testing.T) {
	h, _ := start(t, nil)
	ag := consulAs(t, h, consulKey(t, h, "none", "*")).Agent()
	ttl := &consul.AgentServiceCheck{TTL: "10s"}
	for _, c := range []struct {
		name  string
		reg   consul.AgentServiceRegistration
		field string
	}{
		{"no check", consul.AgentServiceRegistration{Name: "web", Address: "127.0.0.1", Port: 80}, "Check"},
		{"no port", consul.AgentServiceRegistration{Name: "web", Address: "127.0.0.1", Check: ttl}, "Port"},
		{"a proxy", consul.AgentServiceRegistration{Name: "web", Kind: consul.ServiceKindConnectProxy, Port: 80, Check: ttl}, "Kind"},
		{"connect", consul.AgentServiceRegistration{Name: "web", Port: 80, Check: ttl, Connect: &consul.AgentServiceConnect{Native: true}}, "Connect"},
		{"a script check", consul.AgentServiceRegistration{Name: "web", Port: 80, Check: &consul.AgentServiceCheck{Args: []string{"true"}, Interval: "10s"}}, "Check"},
		{"two TTL checks", consul.AgentServiceRegistration{Name: "web", Port: 80, Checks: consul.AgentServiceChecks{ttl, ttl}}, "Check.TTL"},
		{"a check of another host", consul.AgentServiceRegistration{Name: "web", Address: "127.0.0.1", Port: 80,
			Check: &consul.AgentServiceCheck{HTTP: "http://10.1.2.3:80/health", Interval: "10s"}}, "Check"},
		{"a check ID of its own", consul.AgentServiceRegistration{Name: "web", Port: 80, Check: &consul.AgentServiceCheck{CheckID: "mine", TTL: "10s"}}, "Check.CheckID"},
		{"muster's meta", consul.AgentServiceRegistration{Name: "web", Port: 80, Check: ttl, Meta: map[string]string{"muster_quality": "1"}}, "Meta"},
		{"an ID with a slash", consul.AgentServiceRegistration{ID: "web/1", Name: "web", Port: 80, Check: ttl}, "ID"},
		{"a name muster cannot hold", consul.AgentServiceRegistration{Name: "Web.API", Port: 80, Check: ttl}, "Name"},
		{"a TTL out of bounds", consul.AgentServiceRegistration{Name: "web", Port: 80, Check: &consul.AgentServiceCheck{TTL: "2h"}}, "ttl"},
	} {
		err := ag.ServiceRegister(&c.reg)
		if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), `"field":"`+c.field+`"`) {
			t.Errorf("%s: %v, want a 400 naming %s", c.name, err, c.field)
		}
	}
	if svcs, _, err := consulAs(t, h, "").Catalog().Services(nil); err != nil || len(svcs) != 0 {
		t.Errorf("after the refusals: %v, %v", svcs, err)
	}
}

// TestConsul_HTTPCheckRegistration: a registration with an HTTP check
// on localhost (what a Consul agent beside the instance would probe),
// its address proved by the callback (here answered by the service
// itself), becomes a check-only instance whose check muster runs
// against the instance's address: it passes while the endpoint answers
// 200, and the instance turns critical when it answers 503. A key whose
// registrations skip the callback may not register such a check.
func TestConsul_HTTPCheckRegistration(t *testing.T) {
	h, cc := start(t, nil)
	secret := consulKey(t, h, "", "web")
	ag := consulAs(t, h, secret).Agent()
	healthy := make(chan bool, 1)
	healthy <- true
	mux := http.NewServeMux()
	mux.Handle(api.DefaultVerifyPath, client.AnswerCallbacks(secret, nil, "web"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ok := <-healthy
		healthy <- ok
		if r.URL.Path != "/health" || !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	port := portOf(t, srv.URL)
	err := ag.ServiceRegister(&consul.AgentServiceRegistration{ID: "web-h", Name: "web", Address: "127.0.0.1", Port: port,
		Check: &consul.AgentServiceCheck{HTTP: "http://localhost:" + strconv.Itoa(port) + "/health", Interval: "1s", Timeout: "1s",
			SuccessBeforePassing: 1, FailuresBeforeCritical: 1}})
	if err != nil {
		t.Fatal(err)
	}
	inst := func() client.Instance {
		res, err := h.Anon.Lookup(context.Background(), "web", client.WithStatus("any"))
		if err != nil || len(res.Instances) != 1 {
			t.Fatalf("lookup: %+v, %v", res, err)
		}
		return res.Instances[0]
	}
	if in := inst(); in.TTLMS != 0 || len(in.Checks) != 1 || in.Checks[0].Type != api.CheckHTTP || in.Proof != api.ProofAddressPort {
		t.Fatalf("muster shows %+v", in)
	}
	none := consulAs(t, h, consulKey(t, h, "none", "web")).Agent()
	err = none.ServiceRegister(&consul.AgentServiceRegistration{ID: "web-n", Name: "web", Address: "127.0.0.1", Port: port + 1,
		Check: &consul.AgentServiceCheck{TCP: "127.0.0.1:" + strconv.Itoa(port), Interval: "1s"}})
	if err == nil || !strings.Contains(err.Error(), `"field":"Check"`) {
		t.Errorf("a key of consul_verify none registered a probe: %v", err)
	}
	waitFor := func(status string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			es, _, err := cc.Health().Service("web", "", false, nil)
			if err == nil && len(es) == 1 && es[0].Checks.AggregatedStatus() == status {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("the instance never became %s: %+v", status, inst())
	}
	waitFor(consul.HealthPassing)
	<-healthy
	healthy <- false
	waitFor(consul.HealthCritical)
}

func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConsul_ReplicasShareAServiceID: as on Consul, where a service ID
// is unique per agent, replicas on several hosts may register one ID
// with one key (the ID defaults to the name): each is an instance of its
// own, and a call by that ID reaches the replica on the host it comes
// from; from another host, which of them is meant is a 409.
func TestConsul_ReplicasShareAServiceID(t *testing.T) {
	h, cc := start(t, nil)
	secret := consulKey(t, h, "none", "web")
	from := func(ip string) *consul.Agent {
		t.Helper()
		cfg := &consul.Config{Address: h.Srv.ConsulAddr(), Scheme: "http", Token: secret,
			Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}}
		c, err := consul.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c.Agent()
	}
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		if err := from(ip).ServiceRegister(&consul.AgentServiceRegistration{Name: "web", Port: 8080, Check: &consul.AgentServiceCheck{TTL: "1h"}}); err != nil {
			t.Fatalf("the replica on %s: %v", ip, err)
		}
	}
	es, _, err := cc.Health().Service("web", "", false, nil)
	if err != nil || len(es) != 2 || es[0].Service.ID != "web" || es[1].Service.ID != "web" || es[0].Service.Address == es[1].Service.Address {
		t.Fatalf("two replicas with the ID web: %+v, %v", es, err)
	}
	if err := from("127.0.0.2").PassTTL("service:web", ""); err != nil {
		t.Fatal(err)
	}
	es, _, _ = cc.Health().Service("web", "", true, nil)
	if len(es) != 1 || es[0].Service.Address != "127.0.0.2" {
		t.Errorf("after the pass from 127.0.0.2, passing: %+v", es)
	}
	if err := from("127.0.0.3").PassTTL("service:web", ""); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("a pass from a third host: %v; want a 409", err)
	}
	if err := from("127.0.0.1").ServiceDeregister("web"); err != nil {
		t.Fatal(err)
	}
	es, _, _ = cc.Health().Service("web", "", false, nil)
	if len(es) != 1 || es[0].Service.Address != "127.0.0.2" {
		t.Errorf("after the deregistration from 127.0.0.1: %+v", es)
	}
	// One replica left: the ID names it, whoever calls.
	if err := from("127.0.0.3").ServiceDeregister("web"); err != nil {
		t.Errorf("deregistering the last replica from a third host: %v", err)
	}
}
