package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestAPI_Quota: a key over its max_instances, an address over its limit
// and a key over its registration rate get 429 quota_exceeded (the rate
// with Retry-After), nothing stored and no callback; keys show their
// limit and what they hold.
func TestAPI_Quota(t *testing.T) {
	h := start(t, func(c *server.Config) {
		c.Registry.MaxInstancesPerAddress = 4
		c.Registry.RegisterBurst, c.Registry.RegisterEvery = 6, time.Hour
	})
	ctx := context.Background()
	k, err := h.Admin.NewKey(ctx, api.CreateKeyRequest{Services: []string{"web"}, MaxInstances: 2})
	if err != nil || k.MaxInstances != 2 || k.Instances != 0 {
		t.Fatalf("NewKey: %+v %v", k, err)
	}
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	sidecar := func(port int) []byte {
		return regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: port, VerifyPort: in.Port()})
	}
	for _, port := range []int{41000, 41001} {
		if status, eb, _ := h.Post(t, "web", k.Secret, sidecar(port)); status != 201 {
			t.Fatalf("register %d: %d %+v", port, status, eb)
		}
	}
	calls := in.CallCount()
	status, eb, raw := h.Post(t, "web", k.Secret, sidecar(41002))
	if status != http.StatusTooManyRequests || eb.Error.Code != api.CodeQuotaExceeded || eb.Error.Message == "" {
		t.Fatalf("over the key's quota: %d %s", status, raw)
	}
	if _, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: 41002, VerifyPort: in.Port()}); !errors.Is(err, client.ErrQuotaExceeded) {
		t.Fatalf("the SDK's error over quota: %v", err)
	}
	if in.CallCount() != calls || len(h.Srv.Catalog().Instances()) != 2 {
		t.Fatal("a registration over quota called back or was stored")
	}
	keys, err := h.Admin.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0].MaxInstances != 2 || keys[0].Instances != 2 {
		t.Fatalf("Keys: %+v %v", keys, err)
	}

	// Another key, same address: two more fit, then the address is full.
	k2 := h.Key(t, "web")
	in2 := testutil.NewInstance(t, k2.Secret, verify.Proof)
	for i, port := range []int{in2.Port(), 41003, 41004} {
		status, eb, raw := h.Post(t, "web", k2.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: port, VerifyPort: in2.Port()}))
		want := 201
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		if status != want || (want != 201 && eb.Error.Code != api.CodeQuotaExceeded) {
			t.Fatalf("registration %d at the address: %d %s", i, status, raw)
		}
	}

	// The rate: k2 has spent 3 of its burst of 6 (refusals over the
	// address's quota count too); three more, then refused.
	body := regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: in2.Port()})
	for range 3 {
		if status, _, raw := h.Post(t, "web", k2.Secret, body); status != 201 {
			t.Fatalf("re-registration within the rate: %d %s", status, raw)
		}
	}
	status, eb, raw = h.Post(t, "web", k2.Secret, body)
	if status != http.StatusTooManyRequests || eb.Error.Code != api.CodeQuotaExceeded {
		t.Fatalf("over the rate: %d %s", status, raw)
	}
	if ra, err := strconv.Atoi(retryAfter(t, h, k2.Secret, body)); err != nil || ra < 1 {
		t.Fatalf("Retry-After %v %v", ra, err)
	}
}

// retryAfter posts a registration and returns its Retry-After header.
func retryAfter(tb testing.TB, h *harness, secret string, body []byte) string {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.Srv.URL()+"/v1/services/web/instances", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("Retry-After")
}

// TestAPI_ReplaceDenied: a key holder with a listener on another port of
// the victim's host cannot replace the victim's instance (409), and the
// victim keeps heartbeating.
func TestAPI_ReplaceDenied(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	victim, attacker := h.Key(t, "billing"), h.Key(t, "billing")
	vin := testutil.NewInstance(t, victim.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "billing", victim.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: vin.Port()})
	if err != nil {
		t.Fatal(err)
	}
	call, _ := vin.LastCall()
	ain := testutil.NewInstance(t, attacker.Secret, verify.Proof)
	status, eb, raw := h.Post(t, "billing", attacker.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: vin.Port(), VerifyPort: ain.Port()}))
	if status != http.StatusConflict || eb.Error.Code != api.CodeConflict || eb.Error.Field != "port" {
		t.Fatalf("replacement with proof of the host: %d %s", status, raw)
	}
	if ain.CallCount() != 0 {
		t.Fatal("the refused replacement was called back")
	}
	if _, err := h.Anon.Heartbeat(ctx, reg.ID, call.Token); err != nil {
		t.Fatalf("the victim's heartbeat: %v", err)
	}
}

// TestAPI_CallbackReasonsOpaque: to a key with no instance at the address,
// a closed port, a silent port, a port serving other HTTP and one
// answering any POST with JSON all fail with the same reason and
// message: the callback is no port scanner.
func TestAPI_CallbackReasonsOpaque(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Verify.Timeout = 300 * time.Millisecond })
	k := h.Key(t, "web")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	silent, _ := net.Listen("tcp", "127.0.0.1:0")
	defer silent.Close()
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	catchAll := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"status":"ok"}`)) }))
	defer catchAll.Close()
	var first api.ErrorDetail
	for i, port := range []int{closed, silent.Addr().(*net.TCPAddr).Port, web.Listener.Addr().(*net.TCPAddr).Port, catchAll.Listener.Addr().(*net.TCPAddr).Port} {
		status, eb, raw := postPatient(t, h, "web", k.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: port}))
		if status != 422 || eb.Error.Reason != api.ReasonUnreachable {
			t.Fatalf("port %d: %d %s", i, status, raw)
		}
		if i == 0 {
			first = eb.Error
		} else if eb.Error != first {
			t.Fatalf("port %d answers %+v, port 0 %+v: the answers tell the ports apart", i, eb.Error, first)
		}
	}
	// The registry's log keeps the detail.
	if logs := h.Logs.String(); !strings.Contains(logs, "reason=timeout") || !strings.Contains(logs, "reason=bad_status") {
		t.Fatalf("the log lacks the precise reasons:\n%s", logs)
	}
}
