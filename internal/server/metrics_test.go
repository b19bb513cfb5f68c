package server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// scrape GETs url with token (if any) and parses the answer with
// Prometheus' own text parser.
func scrape(t *testing.T, url, token string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the answer does not parse as Prometheus text: %v", err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels
// include want, and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Summary != nil:
			return float64(m.GetSummary().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetrics_scrape: /metrics answers a loopback scraper without a token
// in Prometheus' text format, parsed by Prometheus' own parser; every
// family of muster's is named muster_… with the type its name promises;
// and the counters move with what the registry does: a registration, a
// refused one, heartbeats (one with a wrong token), a lookup; the gauges
// say how many instances and services there are and that this node
// leads; Raft's own measurements (go-metrics) and the Go runtime's are
// there.
func TestMetrics_scrape(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	ctx := context.Background()
	url := h.Srv.URL() + "/metrics"
	before := scrape(t, url, "")
	// A scraper that asks for OpenMetrics gets it.
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
			t.Errorf("asked for OpenMetrics, got %q", ct)
		}
	}

	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Anon.Register(ctx, "svc", "not-the-key", api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}); err == nil {
		t.Fatal("a registration with a wrong key was accepted")
	}
	// One request each (the SDK would gather them into batches).
	beat := func(token string) int {
		req, _ := http.NewRequest("PUT", h.Srv.URL()+"/v1/instances/"+reg.ID+"/heartbeat", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tok := inst.TokenOf(reg.ID)
	for range 3 {
		if c := beat(tok); c != http.StatusOK {
			t.Fatalf("heartbeat: %d", c)
		}
	}
	if c := beat("wrong-token"); c != http.StatusForbidden && c != http.StatusUnauthorized {
		t.Fatalf("heartbeat with a wrong token: %d", c)
	}
	if _, err := h.Anon.Lookup(ctx, "svc"); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/nope", "/v1/services/", "/a/b/c"} {
		resp, err := http.Get(h.Srv.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	after := scrape(t, url, "")

	for name, f := range after {
		if !strings.HasPrefix(name, "muster_") {
			continue
		}
		switch {
		case strings.HasSuffix(name, "_total") && f.GetType() != dto.MetricType_COUNTER:
			t.Errorf("%s is a %v, not a counter", name, f.GetType())
		case strings.HasSuffix(name, "_seconds") && f.GetType() == dto.MetricType_COUNTER:
			t.Errorf("%s is a counter of seconds without _total", name)
		case f.GetHelp() == "":
			t.Errorf("%s has no help", name)
		}
	}
	moved := func(name string, labels map[string]string, by float64) {
		t.Helper()
		b, _ := value(before, name, labels)
		a, ok := value(after, name, labels)
		if !ok {
			t.Errorf("%s%v missing from the scrape", name, labels)
			return
		}
		if a-b != by {
			t.Errorf("%s%v moved by %v, want %v", name, labels, a-b, by)
		}
	}
	moved("muster_registrations_total", map[string]string{"result": "ok"}, 1)
	moved("muster_registrations_total", map[string]string{"result": api.CodeUnauthorized}, 1)
	moved("muster_heartbeats_total", nil, 4)
	moved("muster_heartbeat_auth_failures_total", nil, 1)
	moved("muster_verification_callback_duration_seconds", map[string]string{"result": "ok"}, 1)
	moved("muster_http_requests_total", map[string]string{"route": "POST /v1/services/{service}/instances", "code": "2xx"}, 1)
	moved("muster_http_requests_total", map[string]string{"route": "POST /v1/services/{service}/instances", "code": "4xx"}, 1)
	moved("muster_http_requests_total", map[string]string{"route": "PUT /v1/instances/{id}/heartbeat", "code": "2xx"}, 3)
	moved("muster_http_request_duration_seconds", map[string]string{"route": "GET /v1/services/{service}"}, 1)
	// Paths no route has are one series, whatever they are.
	moved("muster_http_requests_total", map[string]string{"route": "unmatched", "code": "4xx"}, 3)
	for name, want := range map[string]float64{"muster_raft_leader": 1, "muster_services": 1} {
		if v, ok := value(after, name, nil); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	if v, _ := value(after, "muster_instances", map[string]string{"status": "passing"}); v != 1 {
		t.Errorf("muster_instances{status=passing} = %v, want 1", v)
	}
	if v, _ := value(after, "muster_raft_applied_index", nil); v < 2 {
		t.Errorf("muster_raft_applied_index = %v", v)
	}
	for _, name := range []string{"muster_raft_apply", "muster_raft_commitTime", "go_goroutines", "process_resident_memory_bytes",
		"muster_audit_records_dropped_total", "muster_audit_write_errors_total", "muster_audit_damaged_lines_total"} {
		if after[name] == nil {
			t.Errorf("%s missing from the scrape", name)
		}
	}
	// No label names a service, an instance or a key.
	for name, f := range after {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); v == "svc" || v == reg.ID || v == k.ID {
					t.Errorf("%s has label %s=%s", name, l.GetName(), v)
				}
			}
		}
	}
}

// TestMetrics_token: with a metrics token, /metrics answers only callers
// that present it or the admin token, loopback ones included, with the
// API's JSON errors (without one, see TestMetrics_stranger).
func TestMetrics_token(t *testing.T) {
	const token = "metrics-token-0123456789"
	h := testserver.NewHarness(t, func(c *server.Config) { c.MetricsToken = token })
	url := h.Srv.URL() + "/metrics"
	for _, tc := range []struct {
		token string
		want  int
		code  string
	}{
		{"", http.StatusUnauthorized, api.CodeUnauthorized},
		{"wrong-token-0123456789", http.StatusForbidden, api.CodeForbidden},
		{token, http.StatusOK, ""},
		{h.AdminToken(t), http.StatusOK, ""},
	} {
		req, _ := http.NewRequest("GET", url, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("token %q: %d, want %d: %s", tc.token, resp.StatusCode, tc.want, body)
		}
		if tc.code != "" && !strings.Contains(string(body), `"code":"`+tc.code+`"`) {
			t.Errorf("token %q: body %s, want code %s", tc.token, body, tc.code)
		}
	}
	if _, err := server.New(func() server.Config {
		c := testserver.Config(t)
		c.MetricsToken = "short"
		return c
	}()); err == nil || !strings.Contains(err.Error(), "metrics token") {
		t.Errorf("a short metrics token: %v", err)
	}
}

// TestPprof: /debug/pprof/ is off by default (404), and with Pprof on it
// answers the admin token only.
func TestPprof(t *testing.T) {
	get := func(h *testserver.Harness, path, token string) int {
		resp, _ := h.Call(t, "GET", path, token, nil)
		return resp.StatusCode
	}
	off := testserver.NewHarness(t, nil)
	if c := get(off, "/debug/pprof/", off.AdminToken(t)); c != http.StatusNotFound {
		t.Errorf("pprof off: %d, want 404", c)
	}
	on := testserver.NewHarness(t, func(c *server.Config) { c.Pprof = true })
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"not-the-admin-token-00", http.StatusForbidden}, {on.AdminToken(t), http.StatusOK}} {
		if c := get(on, "/debug/pprof/goroutine?debug=1", tc.token); c != tc.want {
			t.Errorf("pprof with token %q: %d, want %d", tc.token, c, tc.want)
		}
	}
}

// TestMetrics_stranger: without a metrics token, /metrics refuses a
// caller that is not on a loopback address, with a JSON error that says
// how to allow it (the server's handler, called with the peer addresses a
// remote caller would have: the tests reach only loopback).
func TestMetrics_stranger(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	for _, tc := range []struct {
		remote string
		want   int
	}{
		{"192.0.2.10:4000", http.StatusForbidden},
		{"[2001:db8::1]:4000", http.StatusForbidden},
		{"10.0.0.1:1", http.StatusForbidden},
		{"127.0.0.1:4000", http.StatusOK},
		{"[::1]:4000", http.StatusOK},
		{"[::ffff:127.0.0.1]:4000", http.StatusOK},
	} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = tc.remote
		rec := httptest.NewRecorder()
		h.Srv.Handler().ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("from %s: %d, want %d: %s", tc.remote, rec.Code, tc.want, rec.Body)
		}
		if tc.want == http.StatusForbidden && !strings.Contains(rec.Body.String(), "--metrics-token") {
			t.Errorf("from %s: the refusal does not say how to allow it: %s", tc.remote, rec.Body)
		}
	}
}

// TestMetrics_expiriesAndRequestLines: an instance that stops
// heartbeating is counted by muster_expiries_total{kind="ttl"} once the
// leader's sweep commits it critical, then by kind="deregister_after"
// once it is removed; and at debug level each request has one line with
// its method, route, status, duration, request ID (the caller's
// X-Request-Id, echoed) and caller.
func TestMetrics_expiriesAndRequestLines(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	ctx := context.Background()
	url := h.Srv.URL() + "/metrics"
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1s", DeregisterAfter: "2s"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams := scrape(t, url, "")
		ttl, _ := value(fams, "muster_expiries_total", map[string]string{"kind": "ttl"})
		gone, _ := value(fams, "muster_expiries_total", map[string]string{"kind": "deregister_after"})
		if ttl == 1 && gone == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expiries counted: ttl %v, deregister_after %v; want 1 and 1", ttl, gone)
		}
		time.Sleep(100 * time.Millisecond)
	}

	req, _ := http.NewRequest("GET", h.Srv.URL()+"/v1/services/svc", nil)
	req.Header.Set("X-Request-Id", "req-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "req-42" {
		t.Errorf("X-Request-Id echoed %q", got)
	}
	var line string
	for _, l := range strings.Split(h.Logs.String(), "\n") {
		if strings.Contains(l, "request_id=req-42") {
			line = l
		}
	}
	ok := line != ""
	for _, part := range []string{"level=DEBUG msg=request ", "node_id=node-", `method=GET route="GET /v1/services/{service}" status=200 duration=`, "caller=127.0.0.1:"} {
		ok = ok && strings.Contains(line, part)
	}
	if !ok {
		t.Errorf("no debug line for the request (with node_id and caller):\n%s", h.Logs.String())
	}
}

// TestMetrics_dns: each DNS query answered is counted by its type and
// the answer's code.
func TestMetrics_dns(t *testing.T) {
	h := testserver.NewHarness(t, func(c *server.Config) { c.DNS.Addr = "127.0.0.1:0" })
	c := new(dns.Client)
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"nosuch.service.muster.", dns.TypeSRV}, {"nosuch.service.muster.", dns.TypeSRV}, {"example.com.", dns.TypeA},
		{"example.com.", 300}, {"example.com.", 301}, {"example.com.", dns.TypeA + 1000}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if _, _, err := c.Exchange(m, h.Srv.DNSAddr()); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrape(t, h.Srv.URL()+"/metrics", "")
	for _, tc := range []struct {
		qtype, rcode string
		want         float64
	}{{"SRV", "NXDOMAIN", 2}, {"A", "REFUSED", 1}, {"other", "REFUSED", 3}} {
		if v, _ := value(fams, "muster_dns_queries_total", map[string]string{"qtype": tc.qtype, "rcode": tc.rcode}); v != tc.want {
			t.Errorf("muster_dns_queries_total{qtype=%s,rcode=%s} = %v, want %v", tc.qtype, tc.rcode, v, tc.want)
		}
	}
	// A stranger sweeping type numbers does not grow the series.
	if n := len(fams["muster_dns_queries_total"].GetMetric()); n != 3 {
		t.Errorf("%d series of muster_dns_queries_total, want 3", n)
	}
}

// TestReadTokenFile: a token file is read trimmed; one that is empty or
// blank, larger than MaxTokenFile, or endless (/dev/zero: found by an
// outside review to grow the server to 24 GB) is refused with an error
// that says why, after reading at most MaxTokenFile+1 bytes.
func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := server.ReadTokenFile(write("ok", "  metrics-token-0123456789\n")); err != nil || tok != "metrics-token-0123456789" {
		t.Errorf("a token file: %q, %v", tok, err)
	}
	for name, path := range map[string]string{
		"empty": write("empty", ""), "blank": write("blank", " \n\t \n"),
		"large": write("large", strings.Repeat("x", server.MaxTokenFile+1)), "endless": "/dev/zero",
	} {
		if _, err := os.Stat(path); err != nil {
			continue // no /dev/zero here
		}
		if tok, err := server.ReadTokenFile(path); err == nil {
			t.Errorf("%s: read %d bytes as a token", name, len(tok))
		}
	}
	if _, err := server.ReadTokenFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	loose := write("loose", "metrics-token-0123456789\n")
	if err := os.Chmod(loose, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ReadTokenFile(loose); !errors.Is(err, durable.ErrNotPrivate) || !strings.Contains(err.Error(), "chmod 600 "+loose) {
		t.Errorf("a token file others may read: %v, want ErrNotPrivate with the fix", err)
	}
}

// TestServer_RefusesALooseAdminTokenFile: an operator's admin token file
// (--admin-token-file) that other users may read is refused, with the
// fix, as the cluster secret's and the TLS key's are: the server does not
// change the mode of a file it does not own the place of.
func TestServer_RefusesALooseAdminTokenFile(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr = t.TempDir(), "127.0.0.1:0"
	cfg.AdminTokenFile = filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(cfg.AdminTokenFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg)
	if err == nil {
		err = s.Start(context.Background())
		s.Close()
	}
	if !errors.Is(err, durable.ErrNotPrivate) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("start with a 0644 admin token file: %v", err)
	}
	if fi, _ := os.Stat(cfg.AdminTokenFile); fi.Mode().Perm() != 0o644 {
		t.Fatalf("the operator's file was changed to %v", fi.Mode().Perm())
	}
}

// TestMetrics_push: an open event stream is counted, and the events it
// is handed are too.
func TestMetrics_push(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.Srv.URL()+"/v1/watch?service=svc", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	for seen := false; !seen; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the stream ended")
			}
			seen = strings.Contains(l, reg.ID)
		case <-time.After(5 * time.Second):
			t.Fatal("the stream did not show the registration")
		}
	}
	fams := scrape(t, h.Srv.URL()+"/metrics", "")
	if v, _ := value(fams, "muster_event_streams_open", nil); v != 1 {
		t.Errorf("muster_event_streams_open = %v, want 1", v)
	}
	if v, _ := value(fams, "muster_events_sent_total", nil); v < 1 {
		t.Errorf("muster_events_sent_total = %v, want at least 1", v)
	}
}
