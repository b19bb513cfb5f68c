// Package testutil holds helpers shared by muster's tests: a logger that
// writes to testing.TB, and a fake service instance that answers the
// registry's verification callback. It is imported only by _test files.
package testutil

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/musterhq/muster/api"
)

// Logger returns a slog.Logger writing to tb.Log until the test ends.
func Logger(tb testing.TB) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(string(p[:len(p)-1]))
	}
	return len(p), nil
}

// ProofFunc computes the proof an instance answers for a challenge.
type ProofFunc func(secret, challenge string) string

// Instance is a fake service instance: an HTTP server on 127.0.0.1 that
// answers the verification callback. Its behaviour can be changed between
// registrations through the exported fields, under Mu.
type Instance struct {
	Server *httptest.Server
	Proof  ProofFunc

	Mu sync.Mutex
	// Secret is the enrolment key secret used to answer challenges.
	Secret string
	// Handler, when set, answers the callback instead of the default.
	Handler http.HandlerFunc
	// EchoNonce, when set, is put in the answer's nonce field.
	EchoNonce string
	// Calls records every callback received.
	Calls []api.VerifyRequest
}

// NewInstance starts a fake instance answering with proof(secret, challenge).
func NewInstance(tb testing.TB, secret string, proof ProofFunc) *Instance {
	tb.Helper()
	in := &Instance{Secret: secret, Proof: proof}
	in.Server = httptest.NewServer(http.HandlerFunc(in.serve))
	tb.Cleanup(in.Server.Close)
	return in
}

func (in *Instance) serve(w http.ResponseWriter, r *http.Request) {
	var req api.VerifyRequest
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &req)
	in.Mu.Lock()
	in.Calls = append(in.Calls, req)
	h, secret, echo := in.Handler, in.Secret, in.EchoNonce
	in.Mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	if r.URL.Path != api.DefaultVerifyPath || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(api.VerifyResponse{Proof: in.Proof(secret, req.Challenge), Nonce: echo})
}

// Port returns the instance's port.
func (in *Instance) Port() int {
	_, p, _ := net.SplitHostPort(in.Server.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

// LastCall returns the most recent callback.
func (in *Instance) LastCall() (api.VerifyRequest, bool) {
	in.Mu.Lock()
	defer in.Mu.Unlock()
	if len(in.Calls) == 0 {
		return api.VerifyRequest{}, false
	}
	return in.Calls[len(in.Calls)-1], true
}

// TokenOf returns the session token the registry sent in its callback
// for instance id, or "" if none came.
func (in *Instance) TokenOf(id string) string {
	in.Mu.Lock()
	defer in.Mu.Unlock()
	for _, c := range in.Calls {
		if c.InstanceID == id {
			return c.Token
		}
	}
	return ""
}

// CallCount returns how many callbacks arrived.
func (in *Instance) CallCount() int {
	in.Mu.Lock()
	defer in.Mu.Unlock()
	return len(in.Calls)
}

// Buffer collects output written from any goroutine.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BuildBinary builds the main package in dir (relative to the caller's
// package, "." for itself) into a fresh temp dir, for tests that run it as
// a real process, and returns its path and a function that removes it. It
// is meant for TestMain, so it returns errors instead of failing a test;
// the error includes the compiler's output.
func BuildBinary(dir, name string) (path string, cleanup func(), err error) {
	tmp, err := os.MkdirTemp("", "muster-bin")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(tmp, name)
	cmd := exec.Command("go", "build", "-o", path, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("go build %s: %v\n%s", dir, err, out)
	}
	return path, func() { os.RemoveAll(tmp) }, nil
}
