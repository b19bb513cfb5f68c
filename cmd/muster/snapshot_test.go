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
	if _, _, code, err := runCLI(t, env, "snapshot", "restore", file); code != 2 {
		t.Fatalf("restore without --data-dir: %v, exit %d", err, code)
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
}
