package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// registered is an instance registered by a test, with its session token.
type registered struct {
	id, token string
}

// registerWithToken registers an instance of service with the TTL given
// and returns its ID and session token (from the callback it answered).
func registerWithToken(t *testing.T, h *testserver.Harness, service, secret string, ttl time.Duration) registered {
	t.Helper()
	in := testutil.NewInstance(t, secret, verify.Proof)
	res, err := h.Anon.Register(context.Background(), service, secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: in.Port(), TTL: ttl.String()})
	if err != nil {
		t.Fatal(err)
	}
	return registered{res.ID, in.Calls[0].Token}
}

// postBeats sends body to POST /v1/heartbeats and returns the status, the
// answer and its decoded forms.
func postBeats(t *testing.T, h *testserver.Harness, body []byte) (int, api.HeartbeatsResponse, api.ErrorBody, []byte) {
	t.Helper()
	resp, err := http.Post(h.Srv.URL()+"/v1/heartbeats", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var ok api.HeartbeatsResponse
	var eb api.ErrorBody
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &ok); err != nil {
			t.Fatalf("answer %s: %v", raw, err)
		}
	} else if err := json.Unmarshal(raw, &eb); err != nil {
		t.Fatalf("error answer %s: %v", raw, err)
	}
	return resp.StatusCode, ok, eb, raw
}

func beatsBody(t *testing.T, beats ...api.Beat) []byte {
	t.Helper()
	b, err := json.Marshal(api.HeartbeatsRequest{Beats: beats})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHeartbeats_Batch: each beat of a batch is judged as the
// per-instance heartbeat judges it, and answered in order; refusals are
// the beat's own; a critical instance comes back to passing; a recorded
// beat renews the instance's freshness.
func TestHeartbeats_Batch(t *testing.T) {
	h := start(t, nil)
	k := h.Key(t, "web")
	a := registerWithToken(t, h, "web", k.Secret, 2*time.Second)
	b := registerWithToken(t, h, "web", k.Secret, time.Hour)
	testserver.Eventually(t, 10*time.Second, "a critical", func() bool { return lookupAny(t, h, "web", a.id).Status == "critical" })
	before := lookupAny(t, h, "web", b.id).LastSeenMS

	status, res, _, raw := postBeats(t, h, beatsBody(t,
		api.Beat{ID: a.id, Token: a.token},
		api.Beat{ID: b.id, Token: b.token},
		api.Beat{ID: b.id, Token: a.token},
		api.Beat{ID: "nope", Token: a.token},
		api.Beat{ID: b.id, Token: ""},
		api.Beat{ID: a.id, Token: k.Secret},
	))
	if status != http.StatusOK || len(res.Results) != 6 {
		t.Fatalf("%d %s", status, raw)
	}
	want := []struct {
		status, code string
		http         int
	}{
		{"passing", "", 0},
		{"passing", "", 0},
		{"", api.CodeForbidden, 403},
		{"", api.CodeNotFound, 404},
		{"", api.CodeUnauthorized, 401},
		{"", api.CodeForbidden, 403},
	}
	for i, w := range want {
		r := res.Results[i]
		if w.code == "" {
			if r.Error != nil || r.Status != w.status || r.HTTPStatus != 0 {
				t.Errorf("beat %d: %+v, want status %s", i, r, w.status)
			}
			continue
		}
		if r.Error == nil || r.Error.Code != w.code || r.HTTPStatus != w.http || r.Error.Message == "" || r.Status != "" || r.TTL != "" {
			t.Errorf("beat %d: %+v (error %+v), want %s %d", i, r, r.Error, w.code, w.http)
		}
	}
	if res.Results[0].TTL != "2s" || res.Results[1].TTL != "1h0m0s" {
		t.Errorf("TTLs %q %q", res.Results[0].TTL, res.Results[1].TTL)
	}
	if got := lookupAny(t, h, "web", a.id); got.Status != "passing" {
		t.Errorf("a after its beat: %+v", got)
	}
	if after := lookupAny(t, h, "web", b.id).LastSeenMS; after < 0 || (before >= 0 && after > before) {
		t.Errorf("b's last heartbeat age %d ms before, %d ms after", before, after)
	}
}

// TestHeartbeats_Refusals: a batch that is not one is refused as a whole
// with a JSON error naming what is wrong, and nothing is recorded.
func TestHeartbeats_Refusals(t *testing.T) {
	h := start(t, nil)
	k := h.Key(t, "web")
	a := registerWithToken(t, h, "web", k.Secret, time.Hour)
	if _, err := h.Anon.Heartbeat(context.Background(), a.id, a.token); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	aged := lookupAny(t, h, "web", a.id).LastSeenMS

	one := fmt.Sprintf(`{"id":%q,"token":%q}`, a.id, a.token)
	many := `{"beats":[` + strings.TrimSuffix(strings.Repeat(one+",", api.MaxBeats+1), ",") + `]}`
	huge := `{"beats":[{"id":"` + strings.Repeat("x", 300_000) + `","token":"t"}]}`
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		field      string
	}{
		{"empty body", ``, 400, api.CodeInvalidJSON, ""},
		{"not an object", `[1]`, 400, api.CodeInvalidJSON, ""},
		{"no beats", `{"beats":[]}`, 400, api.CodeInvalidArgument, "beats"},
		{"beats missing", `{}`, 400, api.CodeInvalidArgument, "beats"},
		{"beats not a list", `{"beats":{}}`, 400, api.CodeInvalidArgument, "beats"},
		{"too many", many, 400, api.CodeInvalidArgument, "beats"},
		{"unknown field", `{"beats":[` + one[:len(one)-1] + `,"ttl":"1h"}]}`, 400, api.CodeUnknownField, "ttl"},
		{"trailing data", `{"beats":[` + one + `]} {}`, 400, api.CodeInvalidJSON, ""},
		{"too large", huge, 413, api.CodeBodyTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, eb, raw := postBeats(t, h, []byte(tc.body))
			if status != tc.status || eb.Error.Code != tc.code || eb.Error.Field != tc.field || eb.Error.Message == "" {
				t.Fatalf("%d %s, want %d %s on %q", status, raw, tc.status, tc.code, tc.field)
			}
		})
	}
	if got := lookupAny(t, h, "web", a.id).LastSeenMS; got < aged {
		t.Errorf("a refused batch renewed the instance: last seen %d ms ago, %d before", got, aged)
	}
	req, _ := http.NewRequest("GET", h.Srv.URL()+"/v1/heartbeats", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/heartbeats: %d, want 405", resp.StatusCode)
	}
}

// TestHeartbeats_BodyBudget: callers that start batches and never finish
// them hold at most their address's share of the bytes of batches being
// read: past it their next batch is refused at once (503 busy), while
// another address's batch is served; and a batch that declares more than
// a batch may hold is refused before it is read.
func TestHeartbeats_BodyBudget(t *testing.T) {
	h := start(t, nil)
	k := h.Key(t, "web")
	a := registerWithToken(t, h, "web", k.Secret, time.Hour)
	body := beatsBody(t, api.Beat{ID: a.id, Token: a.token})
	addr := strings.TrimPrefix(h.Srv.URL(), "http://")
	held := 64 * 256_000 / 4 / 256_000 // the per-address share, in largest batches
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range held {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST /v1/heartbeats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 256000\r\n\r\n{\"beats\":[")
	}
	testserver.Eventually(t, 5*time.Second, "the share taken", func() bool {
		status, _, eb, _ := postBeats(t, h, body)
		return status == http.StatusServiceUnavailable && eb.Error.Code == api.CodeBusy
	})
	// Another address (127.0.0.2 is loopback too on Linux) is served.
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	resp, err := other.Post(h.Srv.URL()+"/v1/heartbeats", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Skipf("cannot send from 127.0.0.2: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("another address's batch: %d", resp.StatusCode)
	}
	// The SDK sends beats alone when batches are refused as busy.
	if hb, err := h.Anon.Heartbeat(context.Background(), a.id, a.token); err != nil || hb.Status != "passing" {
		t.Fatalf("SDK heartbeat while batches are refused: %+v, %v", hb, err)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	testserver.Eventually(t, 5*time.Second, "the share released", func() bool {
		status, _, _, _ := postBeats(t, h, body)
		return status == http.StatusOK
	})
	req, _ := http.NewRequest("POST", h.Srv.URL()+"/v1/heartbeats", strings.NewReader("{}"))
	req.ContentLength = 256_001
	req.Body = io.NopCloser(strings.NewReader("{}"))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("a declared 256,001 bytes: %d, want 413", resp.StatusCode)
		}
	}
}
