package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/cluster"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestHandler_NotReady: a node that has no leader (here, a real Raft node
// that was never bootstrapped) must not answer reads from a catalog that may
// be partial, nor tell instances to register again.
func TestHandler_NotReady(t *testing.T) {
	cfg := cluster.DefaultConfig()
	cfg.DataDir, cfg.RaftAddr, cfg.Bootstrap = t.TempDir(), "127.0.0.1:0", false
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond
	cfg.Logger = testutil.Logger(t)
	cat := catalog.New()
	node, err := cluster.Open(cfg, cat)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	v, _ := verify.New(verify.DefaultConfig())
	live := health.NewLiveness(health.DefaultLivenessConfig(), health.NewTracker(), node, nil)
	rcfg := registry.DefaultConfig()
	rcfg.AdminTokenHash = catalog.HashSecret("admin")
	reg, err := registry.New(rcfg, cat, node, live, v)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Deps{Registry: reg, Logger: testutil.Logger(t)}))
	defer srv.Close()

	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/readyz", ""},
		{"GET", "/v1/services", ""},
		{"GET", "/v1/services/svc", ""},
		{"GET", "/v1/instances/abc", ""},
		{"PUT", "/v1/instances/abc/heartbeat", ""},
		{"POST", "/v1/heartbeats", `{"beats":[{"id":"abc","token":"x"}]}`},
		{"DELETE", "/v1/instances/abc", ""},
		{"POST", "/v1/keys", `{"services":["x"]}`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if tc.body != "" {
				req, _ = http.NewRequest(tc.method, srv.URL+tc.path, jsonBody(tc.body))
			}
			req.Header.Set("Authorization", "Bearer admin")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503", resp.StatusCode)
			}
			if tc.path == "/readyz" {
				return
			}
			var eb api.ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error.Code != api.CodeUnavailable {
				t.Fatalf("error body %+v, %v", eb, err)
			}
		})
	}
	resp, err := http.Get(srv.URL + "/livez")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("livez: %v %v", resp, err)
	}
	resp.Body.Close()
}
