package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/cluster"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestAPI_Evict: the admin evicts an instance: it is gone, its heartbeat
// and its record say it was evicted and until when, and its endpoint
// cannot register again until the bar ends; then it can. Strangers and
// session tokens cannot evict.
func TestAPI_Evict(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	req := api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()}
	reg, err := h.Anon.Register(ctx, "web", k.Secret, req)
	if err != nil {
		t.Fatal(err)
	}
	call, _ := in.LastCall()

	evict := func(token, id, body string) (int, []byte) {
		r, _ := http.NewRequest(http.MethodPost, h.Srv.URL()+"/v1/instances/"+id+"/evict", strings.NewReader(body))
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, tc := range []struct {
		token, body string
		status      int
	}{
		{"", `{"for":"1s"}`, 401},
		{call.Token, `{"for":"1s"}`, 403}, // the instance's own token
		{k.Secret, `{"for":"1s"}`, 403},
		{h.AdminToken(t), `{"for":"soon"}`, 400},
		{h.AdminToken(t), `{"for":"0s"}`, 400},
		{h.AdminToken(t), `{"for":"721h"}`, 400},
		{h.AdminToken(t), `{"for":"1s","bogus":1}`, 400},
	} {
		if status, body := evict(tc.token, reg.ID, tc.body); status != tc.status {
			t.Fatalf("evict with %q: %d %s, want %d", tc.body, status, body, tc.status)
		}
	}
	if status, _ := evict(h.AdminToken(t), "no-such-id", `{"for":"1s"}`); status != 404 {
		t.Fatalf("evicting an unknown instance: %d", status)
	}

	status, body := evict(h.AdminToken(t), reg.ID, `{"for":"2s","reason":"bad build"}`)
	var ev api.Eviction
	json.Unmarshal(body, &ev)
	until, _ := time.Parse(time.RFC3339Nano, ev.Until)
	if status != 200 || ev.ID != reg.ID || ev.Port != in.Port() || ev.Reason != "bad build" || time.Until(until) < time.Second {
		t.Fatalf("evict: %d %s", status, body)
	}

	// Its heartbeat and its record say it was evicted.
	hb, _ := http.NewRequest(http.MethodPut, h.Srv.URL()+"/v1/instances/"+reg.ID+"/heartbeat", nil)
	hb.Header.Set("Authorization", "Bearer "+call.Token)
	resp, err := http.DefaultClient.Do(hb)
	if err != nil {
		t.Fatal(err)
	}
	var eb api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(eb.Error.Message, "evicted") || !strings.Contains(eb.Error.Message, "bad build") {
		t.Fatalf("heartbeat of the evicted instance: %d %+v", resp.StatusCode, eb)
	}
	// The endpoint cannot register again during the bar, not even with
	// another key; nothing is called back.
	calls := in.CallCount()
	st, eb2, raw := h.Post(t, "web", k.Secret, regBody(t, req))
	if st != 409 || eb2.Error.Code != api.CodeConflict || eb2.Error.Field != "port" || !strings.Contains(eb2.Error.Message, "evicted") {
		t.Fatalf("re-registration during the bar: %d %s", st, raw)
	}
	if in.CallCount() != calls {
		t.Fatal("a barred registration was called back")
	}
	// Another port of the same host is another endpoint.
	other := req
	other.Port, other.VerifyPort = 41999, in.Port()
	if st, _, raw := h.Post(t, "web", k.Secret, regBody(t, other)); st != 201 {
		t.Fatalf("another endpoint of the host: %d %s", st, raw)
	}
	// Lookups show the evicted endpoint, and until when.
	res, err := h.Anon.Lookup(ctx, "web")
	if err != nil || len(res.Evicted) != 1 || res.Evicted[0].Port != in.Port() || res.Evicted[0].Reason != "bad build" || res.Evicted[0].Until != ev.Until {
		t.Fatalf("lookup during the bar: %+v, %v", res, err)
	}
	// After the bar, it registers.
	time.Sleep(time.Until(until) + 50*time.Millisecond)
	if st, _, raw := h.Post(t, "web", k.Secret, regBody(t, req)); st != 201 {
		t.Fatalf("registration after the bar: %d %s", st, raw)
	}
	if res, err := h.Anon.Lookup(ctx, "web"); err != nil || len(res.Evicted) != 0 {
		t.Fatalf("lookup after the bar: %+v, %v", res, err)
	}
}

// TestAPI_Snapshot: the admin reads the whole catalog as one snapshot (a
// backup), which restores into a new data dir as the same catalog;
// strangers and non-admin tokens are refused.
func TestAPI_Snapshot(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()})
	if err != nil {
		t.Fatal(err)
	}
	get := func(token string) (*http.Response, []byte) {
		r, _ := http.NewRequest(http.MethodGet, h.Srv.URL()+"/v1/snapshot", nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, _ := get(""); resp.StatusCode != 401 {
		t.Fatalf("snapshot without a token: %d", resp.StatusCode)
	}
	if resp, _ := get(k.Secret); resp.StatusCode != 403 {
		t.Fatalf("snapshot with an enrolment key: %d", resp.StatusCode)
	}
	resp, body := get(h.AdminToken(t))
	if resp.StatusCode != 200 || resp.Header.Get(api.HeaderIndex) == "" {
		t.Fatalf("snapshot: %d %q", resp.StatusCode, resp.Header.Get(api.HeaderIndex))
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := cluster.RestoreSnapshot(dir, body); err != nil {
		t.Fatal(err)
	}
	restored := start(t, func(c *server.Config) { c.DataDir = dir })
	got, err := restored.Admin.Instance(ctx, reg.ID)
	if err != nil || got.Port != in.Port() {
		t.Fatalf("the restored server's instance: %+v, %v", got, err)
	}
	if keys, err := restored.Admin.Keys(ctx); err != nil || len(keys) != 1 || keys[0].ID != k.ID {
		t.Fatalf("the restored server's keys: %+v, %v", keys, err)
	}
}
