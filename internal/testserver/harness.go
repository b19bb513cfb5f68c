package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
)

// Harness is a running registry with an admin client, an anonymous
// client and a copy of its log lines, for the tests of every front end.
type Harness struct {
	Srv   *server.Server
	Dir   string
	Admin *client.Client
	Anon  *client.Client
	Logs  *testutil.Buffer
}

// NewHarness starts a registry as Start does (mutate, if set, changes its
// config) and connects the clients. The admin token is read from the data
// dir the config names.
func NewHarness(tb testing.TB, mutate func(*server.Config)) *Harness {
	tb.Helper()
	h := &Harness{Logs: &testutil.Buffer{}}
	srv := Start(tb, func(c *server.Config) {
		c.Logger = slog.New(teeHandler{slog.NewTextHandler(h.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}), c.Logger.Handler()})
		if mutate != nil {
			mutate(c)
		}
		h.Dir = c.DataDir
	})
	h.Srv = srv
	h.Admin, _ = client.New(client.Config{Addr: srv.URL(), Token: h.AdminToken(tb)})
	h.Anon, _ = client.New(client.Config{Addr: srv.URL()})
	return h
}

type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	t.a.Handle(ctx, r.Clone())
	return t.b.Handle(ctx, r)
}
func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}
func (t teeHandler) WithGroup(n string) slog.Handler {
	return teeHandler{t.a.WithGroup(n), t.b.WithGroup(n)}
}

// AdminToken returns the admin token the server wrote (or was given).
func (h *Harness) AdminToken(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(h.Dir, "admin-token")
	if h.Srv != nil && h.Srv.AdminTokenPath() != "" {
		path = h.Srv.AdminTokenPath() // --admin-token-file's
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Key creates an enrolment key for the patterns.
func (h *Harness) Key(tb testing.TB, patterns ...string) api.Key {
	tb.Helper()
	k, err := h.Admin.CreateKey(context.Background(), patterns, "test")
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// Token creates a token of role for the given service patterns (none,
// for the admin role) and returns it with its secret.
func (h *Harness) Token(tb testing.TB, role string, patterns ...string) api.Token {
	tb.Helper()
	t, err := h.Admin.CreateToken(context.Background(), api.CreateTokenRequest{Role: role, Services: patterns, Description: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// Post sends a raw registration and returns the status, the decoded error
// body and the raw body.
func (h *Harness) Post(tb testing.TB, service, secret string, body []byte) (int, api.ErrorBody, []byte) {
	tb.Helper()
	resp, data := h.Call(tb, http.MethodPost, "/v1/services/"+service+"/instances", secret, body, "Content-Type", "application/json")
	var eb api.ErrorBody
	json.Unmarshal(data, &eb)
	return resp.StatusCode, eb, data
}

// Call sends a request to path on the server, with token as a bearer
// token unless it is empty and the header pairs given (name, value, ...),
// and returns the answer, its body read whole and closed.
func (h *Harness) Call(tb testing.TB, method, path, token string, body []byte, header ...string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, h.Srv.URL()+path, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

// RegBody encodes a registration request.
func RegBody(tb testing.TB, req api.RegisterRequest) []byte {
	tb.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Eventually polls cond every 20ms until it holds or d passes.
func Eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
