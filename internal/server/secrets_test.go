package server_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestServer_NoSecretsInLogsOrOpenFiles: a session of every kind of
// credential use, logged at debug level, writes none of the secrets
// involved (admin token, enrolment key secret, session token) to the
// log; and the data dir, with every directory in it, is its owner's
// alone, even when it was created open to others.
func TestServer_NoSecretsInLogsOrOpenFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := start(t, func(c *server.Config) { c.DataDir = dir })
	ctx := context.Background()
	admin := h.AdminToken(t)
	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()})
	if err != nil {
		t.Fatal(err)
	}
	call, _ := in.LastCall()
	if _, err := h.Anon.Heartbeat(ctx, reg.ID, call.Token); err != nil {
		t.Fatal(err)
	}
	// Refusals log too: a wrong key, a wrong token, a failed callback.
	wrong := testutil.NewInstance(t, "mk_not-the-key", verify.Proof)
	h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: wrong.Port()})
	h.Anon.Register(ctx, "web", "mk_guessed-secret", api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()})
	h.Anon.Heartbeat(ctx, reg.ID, "guessed-token")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: port})
	// A token of a role, used and refused.
	op := h.Token(t, "operator", "web")
	opc, _ := client.New(client.Config{Addr: h.Srv.URL(), Token: op.Secret})
	if _, err := opc.Drain(ctx, reg.ID, op.Secret); err != nil {
		t.Fatal(err)
	}
	h.Call(t, "GET", "/v1/tokens", op.Secret, nil)
	h.Call(t, "GET", "/v1/audit", "mt_guessed-operator-token", nil)
	if err := h.Admin.Deregister(ctx, reg.ID, admin); err != nil {
		t.Fatal(err)
	}
	if err := h.Admin.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}

	if err := h.Srv.Node().Snapshot(); err != nil {
		t.Fatal(err)
	}
	logs := h.Logs.String()
	if !strings.Contains(logs, reg.ID) || !strings.Contains(logs, k.ID) {
		t.Fatalf("the log lacks the instance and key IDs, so it tests nothing:\n%s", logs)
	}
	for name, secret := range map[string]string{
		"admin token": admin, "enrolment key secret": k.Secret, "session token": call.Token,
		"guessed key": "mk_guessed-secret", "guessed token": "guessed-token",
		"operator token": op.Secret, "guessed operator token": "mt_guessed-operator-token",
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds the %s", name)
		}
	}

	err = filepath.WalkDir(h.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode().Perm()
		if d.IsDir() {
			// The data dir and the directories in it: what lies deeper
			// (raft's snapshot directories) is out of reach through them.
			if (path == h.Dir || filepath.Dir(path) == h.Dir) && mode&0o077 != 0 {
				t.Errorf("directory %s has mode %v", path, mode)
			}
			return nil
		}
		if filepath.Dir(path) == h.Dir && mode&0o077 != 0 {
			t.Errorf("file %s has mode %v, want no access for group or others", path, mode)
		}
		// Only hashes of the secrets the registry issues are kept: no
		// file of the data dir (the Raft log and snapshots among them)
		// holds one in the clear.
		if b, err := os.ReadFile(path); err == nil {
			for name, secret := range map[string]string{"enrolment key secret": k.Secret, "session token": call.Token, "operator token": op.Secret} {
				if strings.Contains(string(b), secret) {
					t.Errorf("%s holds the %s in the clear", path, name)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(h.Dir, "admin-token")); err != nil {
		t.Fatalf("no admin-token file: %v", err)
	}

	// The audit trail records every one of those decisions, refusals
	// included, by IDs and addresses: no secret, token or hash of one, in
	// files of the owner's alone.
	if err := h.Srv.Close(); err != nil { // the journals' queues written out
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(h.Dir, "audit", "*.jsonl"))
	var trail strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		trail.Write(b)
		if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
			t.Errorf("audit file %s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(filepath.Join(h.Dir, "audit")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the audit directory: %v, %v", fi, err)
	}
	if !strings.Contains(trail.String(), reg.ID) || !strings.Contains(trail.String(), k.ID) || strings.Count(trail.String(), `"outcome":"refused"`) < 4 {
		t.Fatalf("the audit trail lacks the decisions, so it tests nothing:\n%s", trail.String())
	}
	for name, secret := range map[string]string{
		"admin token": admin, "enrolment key secret": k.Secret, "session token": call.Token,
		"guessed key": "mk_guessed-secret", "guessed token": "guessed-token",
		"key secret's hash":    base64.StdEncoding.EncodeToString(catalog.HashSecret(k.Secret)),
		"session token's hash": base64.StdEncoding.EncodeToString(catalog.HashSecret(call.Token)),
	} {
		if strings.Contains(trail.String(), secret) {
			t.Errorf("the audit trail holds the %s", name)
		}
	}
}

// TestServer_TightensAnOlderDataDir: a data dir an older version left open
// to others (0755, with admin-token and node-id 0644) is made its owner's
// alone at start, and the server says so.
func TestServer_TightensAnOlderDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"admin-token": "ma_older-version-token\n", "node-id": "node-older"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := start(t, func(c *server.Config) { c.DataDir = dir })
	for name, want := range map[string]os.FileMode{".": 0o700, "admin-token": 0o600, "node-id": 0o600} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", name, got, want)
		}
	}
	if h.AdminToken(t) != "ma_older-version-token" || h.Srv.Node().NodeID() != "node-older" {
		t.Fatal("the older files' contents were not kept")
	}
	if logs := h.Logs.String(); !strings.Contains(logs, "made it the owner's alone") || !strings.Contains(logs, "made it 0600") {
		t.Fatalf("the server did not say it tightened the data dir:\n%s", logs)
	}
}

// TestServer_RefusesAShortAdminToken: an admin token that could be
// guessed is refused, given directly or in the data dir's file.
func TestServer_RefusesAShortAdminToken(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr, cfg.AdminToken = t.TempDir(), "127.0.0.1:0", "short"
	if _, err := server.New(cfg); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Fatalf("New with a 5-character admin token: %v", err)
	}
	cfg.AdminToken = ""
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "admin-token"), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "at least") {
		s.Close()
		t.Fatalf("Start with a 5-character admin-token file: %v", err)
	}
}

// TestServer_FailedStartWritesNothing: a start that fails on its HTTP
// address (in use) or on its cluster secret file (readable by others)
// leaves a new data dir unwritten, so that fixing the flag and starting
// again is all it takes.
func TestServer_FailedStartWritesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	loose := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(loose, []byte(strings.Repeat("s", 40)), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*server.Config){
		"address in use":    func(c *server.Config) { c.HTTPAddr = busy.Addr().String() },
		"loose secret file": func(c *server.Config) { c.Cluster.SecretFile = loose },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := server.DefaultConfig()
			cfg.DataDir, cfg.HTTPAddr = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0"
			change(&cfg)
			s, err := server.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(context.Background()); err == nil {
				s.Close()
				t.Fatal("started")
			}
			if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the failed start created the data dir (%v)", err)
			}
		})
	}
}
