package server_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
)

// FuzzHandler sends arbitrary requests to the whole API of a real server:
// no input may make it fail (500) or answer an error that is not the JSON
// error body.
func FuzzHandler(f *testing.F) {
	for _, s := range []struct{ method, path, auth, body string }{
		{"GET", "/v1/services/fetch_url?tag=v2&meta=site:dice.com", "", ""},
		{"POST", "/v1/services/fetch_url/instances", "mk_x", `{"address":"127.0.0.1","port":1}`},
		{"POST", "/v1/keys", "ADMIN", `{"services":["*"]}`},
		{"PUT", "/v1/instances/abc/heartbeat", "t", ""},
		{"PUT", "/v1/instances/abc/drain", "ADMIN", ""},
		{"DELETE", "/v1/keys/key_x", "ADMIN", ""},
		{"GET", "/v1/instances/%zz", "", ""},
		{"PATCH", "/v1/services", "", "{"},
		{"POST", "/v1/services/a/instances", "", "\x00\xff"},
	} {
		f.Add(s.method, s.path, s.auth, []byte(s.body))
	}
	// The server must not log through f inside the fuzz target.
	h := start(f, func(c *server.Config) { c.Logger = slog.New(slog.DiscardHandler) })
	adminTok := h.AdminToken(f)
	handler := h.Srv.Handler()
	f.Fuzz(func(t *testing.T, method, path, auth string, body []byte) {
		req, err := http.NewRequest(method, "http://muster"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		if auth == "ADMIN" {
			auth = adminTok
		}
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q: %d %s", method, path, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var eb api.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
				t.Fatalf("%s %q: %d with a body that is not a JSON error: %q", method, path, w.Code, w.Body)
			}
		}
	})
}
