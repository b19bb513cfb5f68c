package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestCLI_EvictAndSnapshot: muster evict keeps an endpoint out while its
// process keeps registering; muster snapshot save writes a backup (0600)
// that inspect summarises and restore brings back into a new data dir,
// where a server starts with the same catalog, the bar included.
func TestCLI_EvictAndSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	ctx := context.Background()
	h := testserver.NewHarness(t, nil)
	env := map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": h.AdminToken(t)}
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, _, err := runCLI(t, env, args...)
		if err != nil {
			t.Fatalf("muster %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out
	}
	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	req := api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()}
	reg, err := h.Anon.Register(ctx, "web", k.Secret, req)
	if err != nil {
		t.Fatal(err)
	}

	if got := cli("evict", reg.ID, "--for", "1h", "--reason", "bad build"); !strings.HasPrefix(got, "evicted "+reg.ID) {
		t.Fatalf("evict = %q", got)
	}
	if _, err := h.Anon.Register(ctx, "web", k.Secret, req); !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "evicted") {
		t.Fatalf("re-registration after the eviction: %v", err)
	}
	if got := cli("lookup", "web"); !strings.Contains(got, "evicted: 127.0.0.1:") || !strings.Contains(got, "(bad build)") {
		t.Fatalf("lookup during the bar:\n%s", got)
	}
	if _, _, code, err := runCLI(t, env, "evict", reg.ID, "--for", "1h"); code != 1 || !strings.Contains(err.Error(), "evicted") {
		t.Fatalf("evicting it again: %v, exit %d", err, code)
	}

	file := filepath.Join(t.TempDir(), "backup.json")
	if got := cli("snapshot", "save", file); !strings.HasPrefix(got, "saved the catalog at index ") {
		t.Fatalf("snapshot save = %q", got)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the backup file: %v %v", fi, err)
	}
	if got := cli("snapshot", "inspect", file); !strings.Contains(got, "keys:      1") || !strings.Contains(got, "evictions: 1") {
		t.Fatalf("snapshot inspect:\n%s", got)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if got := cli("snapshot", "restore", file, "--data-dir", dir); !strings.Contains(got, "restored the catalog") {
		t.Fatalf("snapshot restore = %q", got)
	}
	if _, _, code, err := runCLI(t, env, "snapshot", "restore", file, "--data-dir", dir); code != 1 || err == nil {
		t.Fatalf("restoring into a dir that holds a cluster: %v, exit %d", err, code)
	}
	p := startProc(t, dir)
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	if keys, err := admin.Keys(ctx); err != nil || len(keys) != 1 || keys[0].ID != k.ID {
		t.Fatalf("the restored server's keys: %+v, %v", keys, err)
	}
	anon, _ := client.New(client.Config{Addr: p.url})
	if _, err := anon.Register(ctx, "web", k.Secret, req); !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "evicted") {
		t.Fatalf("the restored server forgot the eviction: %v", err)
	}

	// Restored again, into the running binary: the key made since is gone.
	if _, err := admin.CreateKey(ctx, []string{"db"}, "made after the save"); err != nil {
		t.Fatal(err)
	}
	procEnv := map[string]string{"MUSTER_ADDR": p.url, "MUSTER_TOKEN": adminToken(t, dir)}
	if out, errOut, code, err := runCLI(t, procEnv, "snapshot", "restore", file); code != 0 || !strings.Contains(out, "into the running registry") {
		t.Fatalf("restore into the running server: %q %q, exit %d, %v", out, errOut, code, err)
	}
	if keys, err := admin.Keys(ctx); err != nil || len(keys) != 1 || keys[0].ID != k.ID {
		t.Fatalf("the running server's keys after the restore: %+v, %v", keys, err)
	}
}

// TestCLI_SnapshotRestoreLive: muster snapshot restore FILE, without
// --data-dir, puts a saved snapshot back into the running registry: what
// was made after the save is gone, and what was removed is back. A
// damaged file, or no admin token, changes nothing.
func TestCLI_SnapshotRestoreLive(t *testing.T) {
	ctx := context.Background()
	h := testserver.NewHarness(t, nil)
	env := map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": h.AdminToken(t)}
	kept := h.Key(t, "web")
	in := testutil.NewInstance(t, kept.Secret, verify.Proof)
	reg, err := h.Anon.Register(ctx, "web", kept.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "backup.json")
	if out, errOut, code, err := runCLI(t, env, "snapshot", "save", file); code != 0 {
		t.Fatalf("snapshot save: %q %q %v", out, errOut, err)
	}
	h.Key(t, "db")
	if err := h.Admin.Deregister(ctx, reg.ID, ""); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(t.TempDir(), "damaged.json")
	if err := os.WriteFile(damaged, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	before := h.Srv.Catalog().Index()

	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		out  string // in stdout, or else in the error
	}{
		{"no file", env, []string{"snapshot", "restore"}, 2, "one file"},
		{"a damaged file", env, []string{"snapshot", "restore", damaged}, 1, "damaged"},
		{"no admin token", map[string]string{"MUSTER_ADDR": h.Srv.URL()}, []string{"snapshot", "restore", file}, 1, "admin token required"},
		{"a wrong token", map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": "ma_not-the-admin-token"}, []string{"snapshot", "restore", file}, 1, "not the admin token"},
		{"restored", env, []string{"snapshot", "restore", file}, 0, "restored the catalog saved at index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, code, err := runCLI(t, tt.env, tt.args...)
			got := out
			if err != nil {
				got = err.Error()
			}
			if code != tt.code || !strings.Contains(got, tt.out) {
				t.Fatalf("exit %d, %q; want exit %d, %q", code, got, tt.code, tt.out)
			}
			if code != 0 && h.Srv.Catalog().Index() != before {
				t.Fatalf("the catalog changed: index %d, was %d", h.Srv.Catalog().Index(), before)
			}
		})
	}
	if keys, err := h.Admin.Keys(ctx); err != nil || len(keys) != 1 || keys[0].ID != kept.ID {
		t.Errorf("keys after the restore: %+v, %v", keys, err)
	}
	if got, err := h.Admin.Instance(ctx, reg.ID); err != nil || got.Status != "passing" {
		t.Errorf("the instance removed after the save: %+v, %v", got, err)
	}
}
