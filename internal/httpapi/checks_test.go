package httpapi_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// healthServer is an instance's health endpoint whose answer a test
// switches, counting the probes it gets.
type healthServer struct {
	srv    *httptest.Server
	status atomic.Int32
	hits   atomic.Int32
	hang   atomic.Bool
	stop   chan struct{}
}

func newHealthServer(t *testing.T) *healthServer { return newHealthServerTLS(t, false, nil) }

// newHealthServerTLS is newHealthServer over TLS when useTLS: with certs,
// or without, httptest's own self-signed certificate.
func newHealthServerTLS(t *testing.T, useTLS bool, certs []tls.Certificate) *healthServer {
	hs := &healthServer{stop: make(chan struct{})}
	hs.status.Store(200)
	hs.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs.hits.Add(1)
		if hs.hang.Load() {
			select {
			case <-hs.stop:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(int(hs.status.Load()))
		w.Write([]byte("state of the instance"))
	}))
	switch {
	case !useTLS:
		hs.srv.Start()
	default:
		hs.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes
		if certs != nil {
			hs.srv.TLS = &tls.Config{Certificates: certs}
		}
		hs.srv.StartTLS()
	}
	t.Cleanup(func() { close(hs.stop); hs.srv.Close() })
	return hs
}

func (hs *healthServer) port() int { return hs.srv.Listener.Addr().(*net.TCPAddr).Port }

// waitHits waits for n more probes than the server has had.
func (hs *healthServer) waitHits(t *testing.T, n int32) {
	t.Helper()
	want := hs.hits.Load() + n
	testserver.Eventually(t, time.Duration(n+3)*2*time.Second, "probes", func() bool { return hs.hits.Load() >= want })
}

// lookupAny returns the instance id of service as a lookup with
// status=any shows it.
func lookupAny(t *testing.T, h *testserver.Harness, service, id string) api.Instance {
	t.Helper()
	_, lr, _, _ := getLookup(t, h.Srv.URL()+"/v1/services/"+service+"?status=any")
	for _, in := range lr.Instances {
		if in.ID == id {
			return in
		}
	}
	t.Fatalf("%s is not in the lookup of %s", id, service)
	return api.Instance{}
}

// TestChecks_HTTPThresholds: a check-only instance (ttl 0) of an HTTP
// check is passing while its health endpoint answers 2xx; one failed probe
// changes nothing, three make it critical (a status event on the stream,
// out of default lookups); two good probes bring it back. Lookups show
// the check's state.
func TestChecks_HTTPThresholds(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "db")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	hs := newHealthServer(t)
	res, err := h.Anon.Register(ctx, "db", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "0s",
		Checks: []api.CheckDecl{{Type: "http", Path: "/healthz?full=1", Port: hs.port(), Interval: "1s", Timeout: "500ms"}}})
	if err != nil {
		t.Fatal(err)
	}
	stream := openWatch(t, h.Srv.URL()+"/v1/watch?service=db", "")
	snapshotOf(t, stream.next(t, 5*time.Second))

	hs.waitHits(t, 1)
	testserver.Eventually(t, 5*time.Second, "the check's first run in lookups", func() bool {
		got := lookupAny(t, h, "db", res.ID)
		return len(got.Checks) == 1 && got.Checks[0].LastRunMS >= 0
	})
	got := lookupAny(t, h, "db", res.ID)
	if got.Status != "passing" || got.Checks[0].Type != "http" || got.Checks[0].Status != "passing" || got.TTLMS != 0 || got.Quality != 1 {
		t.Fatalf("a passing check-only instance reads %+v", got)
	}

	hs.status.Store(503)
	hs.waitHits(t, 1)
	time.Sleep(100 * time.Millisecond)
	if got := lookupAny(t, h, "db", res.ID); got.Status != "passing" {
		t.Fatalf("after one failed probe: %+v", got)
	}
	ev := stream.next(t, 10*time.Second)
	e, c := change(t, ev)
	if c != "status "+res.ID+" critical" || len(e.Instance.Checks) != 1 || e.Instance.Checks[0].Status != "critical" {
		t.Fatalf("after failed probes the stream said %s (%s)", c, ev.data)
	}
	got = lookupAny(t, h, "db", res.ID)
	if got.Status != "critical" || got.Checks[0].Output != "HTTP 503 Service Unavailable" || strings.Contains(ev.data, "state of the instance") {
		t.Fatalf("after failed probes: %+v", got)
	}
	if _, lr, _, _ := getLookup(t, h.Srv.URL()+"/v1/services/db"); len(lr.Instances) != 0 {
		t.Fatalf("a critical instance is in the default lookup: %+v", lr.Instances)
	}
	if hs.hits.Load() < 3 {
		t.Fatalf("critical after %d probes", hs.hits.Load())
	}

	hs.status.Store(204)
	_, c = change(t, stream.next(t, 10*time.Second))
	if c != "status "+res.ID+" passing" {
		t.Fatalf("after good probes the stream said %s", c)
	}
	if _, lr, _, _ := getLookup(t, h.Srv.URL()+"/v1/services/db"); len(lr.Instances) != 1 {
		t.Fatal("the recovered instance is not in the default lookup")
	}
}

// TestChecks_ClosedPortAndHang: a TCP check of a closed port, and an HTTP
// check of an endpoint that never answers, each turn their instance
// critical, the hanging one within its timeout per probe.
func TestChecks_ClosedPortAndHang(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "db")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	hs := newHealthServer(t)
	hs.hang.Store(true)

	in1 := testutil.NewInstance(t, k.Secret, verify.Proof)
	tcp, err := h.Anon.Register(ctx, "db", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in1.Port(), TTL: "0s",
		Checks: []api.CheckDecl{{Type: "tcp", Port: closed, Interval: "1s", Timeout: "200ms", FailuresBeforeCritical: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	in2 := testutil.NewInstance(t, k.Secret, verify.Proof)
	hang, err := h.Anon.Register(ctx, "db", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in2.Port(), TTL: "0s",
		Checks: []api.CheckDecl{{Type: "http", Port: hs.port(), Interval: "1s", Timeout: "300ms", FailuresBeforeCritical: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{tcp.ID, hang.ID} {
		testserver.Eventually(t, 15*time.Second, id+" critical", func() bool { return lookupAny(t, h, "db", id).Status == "critical" })
	}
	if out := lookupAny(t, h, "db", tcp.ID).Checks[0].Output; !strings.Contains(out, "refused") {
		t.Errorf("closed port output %q", out)
	}
	if out := lookupAny(t, h, "db", hang.ID).Checks[0].Output; !strings.Contains(out, "300ms") && !strings.Contains(strings.ToLower(out), "timeout") && !strings.Contains(out, "timed out") {
		t.Errorf("hanging check output %q", out)
	}
}

// TestChecks_HeartbeatDoesNotReviveAFailingInstance: an instance that
// both heartbeats and declares a check is critical while its check fails,
// heartbeat or not, and passing again once the check passes.
func TestChecks_HeartbeatDoesNotReviveAFailingInstance(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	hs := newHealthServer(t)
	hs.status.Store(500)
	res, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "1h",
		Checks: []api.CheckDecl{{Type: "http", Port: hs.port(), Interval: "1s", Timeout: "500ms", FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	token := in.Calls[0].Token
	testserver.Eventually(t, 10*time.Second, "critical", func() bool { return lookupAny(t, h, "web", res.ID).Status == "critical" })
	for range 3 {
		hb, err := h.Anon.Heartbeat(ctx, res.ID, token)
		if err != nil || hb.Status != "critical" {
			t.Fatalf("heartbeat of an instance whose check fails: %+v, %v", hb, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := lookupAny(t, h, "web", res.ID); got.Status != "critical" || got.LastSeenMS < 0 {
		t.Fatalf("after heartbeats: %+v", got)
	}
	hs.status.Store(200)
	testserver.Eventually(t, 10*time.Second, "passing", func() bool { return lookupAny(t, h, "web", res.ID).Status == "passing" })
}

// TestChecks_Refusals: declarations the registry refuses, each with a 400
// naming the field, and nothing registered.
func TestChecks_Refusals(t *testing.T) {
	h := start(t, nil)
	k := h.Key(t, "db")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	for _, c := range []struct {
		ttl    string
		checks string
		field  string
	}{
		{"0s", ``, "ttl"},
		{"0s", `[]`, "ttl"},
		{"10s", `[{"type":"udp"}]`, "checks[0].type"},
		{"10s", `[{"type":"http","path":"healthz"}]`, "checks[0].path"},
		{"10s", `[{"type":"http","path":"http://169.254.169.254/"}]`, "checks[0].path"},
		{"10s", `[{"type":"tcp","interval":"10ms"}]`, "checks[0].interval"},
		{"10s", `[{"type":"tcp","interval":"5s","timeout":"6s"}]`, "checks[0].timeout"},
		{"10s", `[{"type":"tcp","port":70000}]`, "checks[0].port"},
		{"10s", `[{"type":"tcp","failures_before_critical":99}]`, "checks[0].failures_before_critical"},
		{"10s", `[{"type":"tcp"},{"type":"tcp"},{"type":"tcp"},{"type":"tcp"},{"type":"tcp"},{"type":"tcp"},{"type":"tcp"},{"type":"tcp"},{"type":"tcp"}]`, "checks"},
		{"10s", `{"type":"tcp"}`, ""},
	} {
		body := `{"address":"127.0.0.1","port":` + itoa(in.Port()) + `,"ttl":"` + c.ttl + `"`
		if c.checks != "" {
			body += `,"checks":` + c.checks
		}
		body += `}`
		status, eb, raw := h.Post(t, "db", k.Secret, []byte(body))
		if status != 400 || eb.Error.Code == "" || (c.field != "" && eb.Error.Field != c.field) {
			t.Errorf("%s %s: %d %s, want 400 on %q", c.ttl, c.checks, status, raw, c.field)
		}
	}
	if _, lr, _, _ := getLookup(t, h.Srv.URL()+"/v1/services/db?status=any"); len(lr.Instances) != 0 {
		t.Fatalf("refused registrations stored %d instances", len(lr.Instances))
	}
	var _ = json.Marshal
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestChecks_AddressOutsideTheAllowlist: a registration with checks for
// an address outside the networks the registry may reach is refused
// before anything is probed or stored.
func TestChecks_AddressOutsideTheAllowlist(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Verify.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	k := h.Key(t, "db")
	hs := newHealthServer(t)
	status, eb, raw := h.Post(t, "db", k.Secret, []byte(`{"address":"127.0.0.1","port":`+itoa(hs.port())+
		`,"ttl":"0s","checks":[{"type":"http","path":"/healthz"},{"type":"tcp"}]}`))
	if status != 422 || eb.Error.Code != api.CodeAddressNotAllowed {
		t.Fatalf("registration outside the allowlist: %d %s", status, raw)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := hs.hits.Load(); n != 0 {
		t.Fatalf("the refused instance was probed %d times", n)
	}
}

// TestChecks_FlappingSpendsTheKeysWriteBudget: an instance whose check
// flaps with thresholds of 1 returns to passing only while its key's
// write budget lasts (the budget registrations and heartbeat revivals
// spend), so flapping cannot write faster than the key may.
func TestChecks_FlappingSpendsTheKeysWriteBudget(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.RegisterBurst, c.Registry.RegisterEvery = 3, time.Hour })
	ctx := context.Background()
	k := h.Key(t, "db")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	var n atomic.Int32
	flap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			w.WriteHeader(503)
		}
	}))
	defer flap.Close()
	stream := openWatch(t, h.Srv.URL()+"/v1/watch?service=db", "")
	snapshotOf(t, stream.next(t, 5*time.Second))
	res, err := h.Anon.Register(ctx, "db", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "0s",
		Checks: []api.CheckDecl{{Type: "http", Port: flap.Listener.Addr().(*net.TCPAddr).Port, Interval: "1s", Timeout: "500ms",
			FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(8 * time.Second)
	passing, critical := 0, 0
	for time.Now().Before(deadline) {
		select {
		case ev := <-stream.events:
			if ev.name != api.EventStatus {
				continue
			}
			var e api.Event
			json.Unmarshal([]byte(ev.data), &e)
			if e.Instance.ID != res.ID {
				continue
			}
			switch e.Instance.Status {
			case "passing":
				passing++
			case "critical":
				critical++
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The registration spent one of the 3; two returns to passing are
	// left, while about 8 probes alternate.
	if passing > 2 || critical < 2 || n.Load() < 6 {
		t.Fatalf("%d probes: %d returns to passing, %d to critical", n.Load(), passing, critical)
	}
}

// TestChecks_CheckOnlyRemovedAfterDeregisterAfter: a check-only instance
// critical by its checks for its deregister_after is removed, with the
// reason expired; one without a deregister_after stays, critical.
func TestChecks_CheckOnlyRemovedAfterDeregisterAfter(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "db")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	stream := openWatch(t, h.Srv.URL()+"/v1/watch?service=db", "")
	snapshotOf(t, stream.next(t, 5*time.Second))
	reg := func(deregAfter string) api.RegisterResponse {
		in := testutil.NewInstance(t, k.Secret, verify.Proof)
		res, err := h.Anon.Register(ctx, "db", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "0s",
			DeregisterAfter: deregAfter, Checks: []api.CheckDecl{{Type: "tcp", Port: closed, Interval: "1s", Timeout: "200ms", FailuresBeforeCritical: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	gone, kept := reg("2s"), reg("")
	var seen []string
	for {
		e, c := change(t, stream.next(t, 15*time.Second))
		seen = append(seen, c)
		if e.Type == api.EventDeregistered {
			if c != "deregistered "+gone.ID+" critical expired" || !slices.Contains(seen, "status "+gone.ID+" critical") ||
				!slices.Contains(seen, "status "+kept.ID+" critical") {
				t.Fatalf("events: %q", seen)
			}
			break
		}
	}
	if got := lookupAny(t, h, "db", kept.ID); got.Status != "critical" {
		t.Fatalf("the instance without deregister_after: %+v", got)
	}
}

// TestChecks_HTTPSInstance: the HTTP checks of https instances speak TLS
// and judge the certificate as the callback did. An instance whose
// health endpoint has a certificate of the registry's CA (--verify-ca)
// passes, and turns critical when the endpoint starts failing; one whose
// endpoint's certificate is self-signed is critical, with the
// certificate's fault as the check's output, unless its key accepts any
// certificate (callback_tls any).
func TestChecks_HTTPSInstance(t *testing.T) {
	ca := testutil.NewTestCA(t, "instances-ca")
	h := start(t, func(c *server.Config) { c.VerifyCAFile = ca.File })
	ctx := context.Background()
	k := h.Key(t, "web")
	anyKey, err := h.Admin.NewKey(ctx, api.CreateKeyRequest{Services: []string{"web"}, CallbackTLS: "any"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := ca.IssuePEM(t, "health")
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	trusted := newHealthServerTLS(t, true, []tls.Certificate{pair})
	self := newHealthServerTLS(t, true, nil) // httptest's self-signed certificate
	register := func(key api.Key, hs *healthServer) string {
		t.Helper()
		in := testutil.NewTLSInstance(t, key.Secret, verify.Proof, ca)
		res, err := h.Anon.Register(ctx, "web", key.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), Scheme: "https", TTL: "0s",
			Checks: []api.CheckDecl{{Type: "http", Path: "/healthz", Port: hs.port(), Interval: "1s", Timeout: "500ms",
				FailuresBeforeCritical: 2, SuccessesBeforePassing: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	good, bad, anyCert := register(k, trusted), register(k, self), register(anyKey, self)

	state := func(id string) api.CheckState {
		got := lookupAny(t, h, "web", id)
		if len(got.Checks) != 1 {
			t.Fatalf("%s has checks %+v", id, got.Checks)
		}
		return got.Checks[0]
	}
	testserver.Eventually(t, 10*time.Second, "the self-signed endpoint critical", func() bool {
		return lookupAny(t, h, "web", bad).Status == "critical"
	})
	if got := state(bad); got.Output != "tls: certificate signed by unknown authority" {
		t.Errorf("the self-signed endpoint's check reads %+v", got)
	}
	for _, id := range []string{good, anyCert} {
		testserver.Eventually(t, 5*time.Second, id+"'s first probe", func() bool { return state(id).LastRunMS >= 0 })
		if got := lookupAny(t, h, "web", id); got.Status != "passing" || got.Checks[0].Output != "HTTP 200 OK" {
			t.Errorf("%s: %+v", id, got)
		}
	}

	trusted.status.Store(503)
	testserver.Eventually(t, 10*time.Second, "the failing endpoint critical", func() bool {
		return lookupAny(t, h, "web", good).Status == "critical"
	})
	if got := state(good); got.Output != "HTTP 503 Service Unavailable" {
		t.Errorf("the failing endpoint's check reads %+v", got)
	}
	if got := lookupAny(t, h, "web", anyCert); got.Status != "passing" {
		t.Errorf("the any-certificate instance: %+v", got)
	}
}
