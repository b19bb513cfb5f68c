package httpapi_test

// Tests from an outside attack on tokens with roles and private reads
// (--anonymous-reads=false).

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// streamFirstID opens /v1/watch (query q) with token and returns the id
// of the first event carrying one (the snapshot's).
func streamFirstID(t *testing.T, h *harness, q, token string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.Srv.URL()+"/v1/watch"+q, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch%s: %d", q, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			return "snapshot id " + id + ", X-Muster-Index " + resp.Header.Get("X-Muster-Index")
		}
	}
	t.Fatalf("watch%s: no id", q)
	return ""
}

// TestTokens_ScopedStreamSnapshotIDIgnoresOthers: the snapshot a stream
// of limited scope starts with carries, as its id, the index of the
// latest change to a service the token covers, as its scoped list does,
// not the catalog's: a read token of web does not learn, by opening
// streams, each time a service outside its scope (billing) changes.
func TestTokens_ScopedStreamSnapshotIDIgnoresOthers(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	key := h.Key(t, "*")
	register(t, h, "web", key.Secret)
	rd := h.Token(t, "read", "web").Secret
	listIdx := func() string {
		resp, _ := h.Call(t, http.MethodGet, "/v1/services", rd, nil)
		return resp.Header.Get("X-Muster-Index")
	}
	l1, all1, web1 := listIdx(), streamFirstID(t, h, "", rd), streamFirstID(t, h, "?service=web", rd)
	register(t, h, "billing", key.Secret)
	l2, all2, web2 := listIdx(), streamFirstID(t, h, "", rd), streamFirstID(t, h, "?service=web", rd)
	if l1 != l2 {
		t.Fatalf("the scoped list's index moved %s -> %s (the list itself leaks)", l1, l2)
	}
	if all1 != all2 {
		t.Errorf("a read token of web: its stream's snapshot id moved %s -> %s when billing, outside its scope, changed (its list's index stayed %s)", all1, all2, l1)
	}
	if web1 != web2 {
		t.Errorf("a read token of web: the snapshot id of ?service=web moved %s -> %s when billing changed", web1, web2)
	}
}

// TestTokens_RevokedStreamReconnect: reconnecting a stream with a token
// since revoked is 403 (an unknown token), as api.md says.
func TestTokens_RevokedStreamReconnect(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	key := h.Key(t, "*")
	register(t, h, "web", key.Secret)
	tok := h.Token(t, "read", "web")
	if err := h.Admin.RevokeToken(context.Background(), tok.ID); err != nil {
		t.Fatal(err)
	}
	resp, data := h.Call(t, http.MethodGet, "/v1/watch", tok.Secret, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("reconnecting a stream with a revoked token: %d %s; api.md says 403", resp.StatusCode, strings.TrimSpace(string(data)))
	}
}

// TestTokens_DescriptionIsPrintable: token and key descriptions are
// printable text (api.md): C1 control characters (U+009B is CSI, which
// terminals that honour C1 read as an escape sequence's start; U+0085 is
// NEL) and a bidirectional override (U+202E) are refused, not stored and
// printed as they are by `muster tokens list` and `muster keys list`.
func TestTokens_DescriptionIsPrintable(t *testing.T) {
	h := start(t, nil)
	for _, d := range []string{"x\u009b31mRED", "x\u0085y", "x\u202ey"} {
		for _, path := range []string{"/v1/tokens", "/v1/keys"} {
			body, _ := json.Marshal(map[string]any{"role": "read", "services": []string{"web"}, "description": d})
			if path == "/v1/keys" {
				body, _ = json.Marshal(map[string]any{"services": []string{"web"}, "description": d})
			}
			resp, data := h.Call(t, http.MethodPost, path, h.AdminToken(t), body, "Content-Type", "application/json")
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("POST %s with description %+q: %d %.120s; want 400 (not printable)", path, d, resp.StatusCode, data)
			}
		}
	}
}

// TestAPI_TagsAndMetaArePrintable: a tag or meta value holding C1
// control characters (U+009B, CSI) or a bidirectional override is
// refused, naming the field: a registrant cannot reach every reader's
// terminal through `muster lookup`.
func TestAPI_TagsAndMetaArePrintable(t *testing.T) {
	h := start(t, nil)
	key := h.Key(t, "web")
	inst := testutil.NewInstance(t, key.Secret, verify.Proof)
	for _, c := range []struct {
		field string
		req   api.RegisterRequest
	}{
		{"tags", api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), Tags: []string{"v\u009b2J"}}},
		{"tags", api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), Tags: []string{"v\u202e1"}}},
		{"meta", api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), Meta: map[string]string{"a": "b\u009b31mRED"}}},
		{"meta", api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), Meta: map[string]string{"a": "b\u0085c"}}},
	} {
		status, eb, data := h.Post(t, "web", key.Secret, regBody(t, c.req))
		if status != http.StatusBadRequest || eb.Error.Field != c.field {
			t.Errorf("tags %+q meta %+q: %d %.100s; want 400 naming %s (not printable)", c.req.Tags, c.req.Meta, status, data, c.field)
		}
	}
}

// TestTokens_AnonymousReadsIgnoreTheToken: while reads are anonymous (the
// default), a read does not look at its token: an expired read token's
// read is served as an anonymous one, as security.md says; with private
// reads the same token is a 401.
func TestTokens_AnonymousReadsIgnoreTheToken(t *testing.T) {
	for _, private := range []bool{false, true} {
		var ahead atomic.Int64
		h := start(t, func(c *server.Config) {
			c.Registry.PrivateReads = private
			c.Registry.Now = func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
		})
		key := h.Key(t, "web")
		register(t, h, "web", key.Secret)
		tk, err := h.Admin.CreateToken(context.Background(), api.CreateTokenRequest{Role: "read", Services: []string{"web"}, TTL: "1m"})
		if err != nil {
			t.Fatal(err)
		}
		ahead.Store(int64(61 * time.Second))
		want := http.StatusOK
		if private {
			want = http.StatusUnauthorized
		}
		for _, path := range []string{"/v1/services/web", "/v1/services"} {
			if resp, data := h.Call(t, http.MethodGet, path, tk.Secret, nil); resp.StatusCode != want {
				t.Errorf("private reads %v: GET %s with an expired read token: %d %.80s; want %d", private, path, resp.StatusCode, data, want)
			}
		}
	}
}
