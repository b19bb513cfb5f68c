package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
		{"a wrong token", map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": "ma_not-the-admin-token"}, []string{"snapshot", "restore", file}, 1, "neither the admin token"},
		{"restored", env, []string{"snapshot", "restore", file}, 0, "restored the catalog saved at index"},
		// Counted in the singular and the plural as each count needs.
		{"restored again", env, []string{"snapshot", "restore", file}, 0, ": 1 instance of 1 service, 1 key, 0 evictions\n"},
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

// TestCLI_SnapshotInspectStrict: muster snapshot inspect checks a file
// exactly as a restore does: a file with a field this muster does not
// know, at the top or inside an instance, or with "instances" renamed, is
// refused by inspect with the error the registry answers a restore of
// it, and nothing is restored.
func TestCLI_SnapshotInspectStrict(t *testing.T) {
	ctx := context.Background()
	h := testserver.NewHarness(t, nil)
	env := map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": h.AdminToken(t)}
	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.json")
	if out, errOut, code, err := runCLI(t, env, "snapshot", "save", file); code != 0 {
		t.Fatalf("snapshot save: %q %q %v", out, errOut, err)
	}
	saved, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(snap map[string]any)
		want   string
	}{
		{"an unknown field", func(snap map[string]any) { snap["colour"] = "blue" }, `unknown field "colour"`},
		{"an unknown field in an instance", func(snap map[string]any) {
			snap["instances"].([]any)[0].(map[string]any)["colour"] = "blue"
		}, `unknown field "colour"`},
		{"instances renamed", func(snap map[string]any) {
			snap["instancez"] = snap["instances"]
			delete(snap, "instances")
		}, `unknown field "instancez"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var snap map[string]any
			if err := json.Unmarshal(saved, &snap); err != nil {
				t.Fatal(err)
			}
			tc.change(snap)
			b, err := json.Marshal(snap)
			if err != nil {
				t.Fatal(err)
			}
			bad := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			if err := os.WriteFile(bad, b, 0o600); err != nil {
				t.Fatal(err)
			}
			before := h.Srv.Catalog().Index()
			out, errOut, code, err := runCLI(t, env, "snapshot", "inspect", bad)
			if code != 1 || out != "" || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("inspect: exit %d, stdout %q, %v; want exit 1 and %q\n%s", code, out, err, tc.want, errOut)
			}
			inspectErr := strings.TrimPrefix(err.Error(), bad+": ")
			// The registry's own check says the same.
			_, rerr := h.Admin.Restore(ctx, b)
			var answer *client.Error
			if !errors.As(rerr, &answer) || answer.Message != inspectErr+"; nothing was restored" {
				t.Errorf("inspect says %q; the registry answers a restore of it %v", inspectErr, rerr)
			}
			// And so does restore, into the registry or a new data dir.
			for _, args := range [][]string{{"snapshot", "restore", bad}, {"snapshot", "restore", bad, "--data-dir", filepath.Join(dir, "new")}} {
				if _, _, code, err := runCLI(t, env, args...); code != 1 || err == nil || err.Error() != bad+": "+inspectErr {
					t.Errorf("muster %s: exit %d, %v; want inspect's error", strings.Join(args, " "), code, err)
				}
			}
			if h.Srv.Catalog().Index() != before {
				t.Errorf("the catalog changed")
			}
		})
	}
	if out, _, code, err := runCLI(t, env, "snapshot", "inspect", file); code != 0 || !strings.Contains(out, "instances: 1") {
		t.Errorf("inspect of the file as saved: %q, exit %d, %v", out, code, err)
	}
}

// TestCLI_SnapshotRestoreNodeID: muster snapshot restore --data-dir DIR
// --node-id n4 makes DIR n4's, and prints the command that starts it; a
// server started over it with --node-id n4 serves the backup, and one
// given another ID refuses to start, naming both IDs, and leaves the
// data dir as it was.
func TestCLI_SnapshotRestoreNodeID(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	h := testserver.NewHarness(t, nil)
	env := map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": h.AdminToken(t)}
	k := h.Key(t, "web")
	file := filepath.Join(t.TempDir(), "backup.json")
	if out, errOut, code, err := runCLI(t, env, "snapshot", "save", file); code != 0 {
		t.Fatalf("snapshot save: %q %q %v", out, errOut, err)
	}
	dir := filepath.Join(t.TempDir(), "data-n4")
	out, errOut, code, err := runCLI(t, env, "snapshot", "restore", file, "--data-dir", dir, "--node-id", "n4")
	if code != 0 || !strings.HasSuffix(out, "start it with: muster server --data-dir "+dir+" --node-id n4\n") {
		t.Fatalf("restore --node-id n4: %q %q, exit %d, %v", out, errOut, code, err)
	}
	if _, _, code, err := runCLI(t, env, "snapshot", "restore", file, "--node-id", "n4"); code != 2 {
		t.Errorf("--node-id without --data-dir: exit %d, %v; want a usage error", code, err)
	}

	entries := func() []string {
		t.Helper()
		des, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		return names
	}
	was := entries()
	code, logged := runServerOnce(t, dir, "--node-id", "n5")
	if code != 1 || !strings.Contains(logged, `holds node ID "n4"`) || !strings.Contains(logged, `--node-id "n5"`) ||
		!strings.Contains(logged, "the data dir is kept") || strings.Contains(logged, "empty") {
		t.Fatalf("a server given another node ID: exit %d, output:\n%s", code, logged)
	}
	if got := entries(); strings.Join(got, " ") != strings.Join(was, " ") {
		t.Errorf("the data dir held %v, now %v", was, got)
	}

	p := startProc(t, dir, "--node-id", "n4")
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	if keys, err := admin.Keys(context.Background()); err != nil || len(keys) != 1 || keys[0].ID != k.ID {
		t.Fatalf("the restored server's keys: %+v, %v", keys, err)
	}
}

// TestCLI_SnapshotNotARegularFile: snapshot inspect and restore take a
// regular file only: a device that gives endless data (/dev/zero) and a
// pipe with no writer are refused at once, with the reason, instead of
// being read until memory runs out or waited on for ever.
func TestCLI_SnapshotNotARegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no FIFO here:", err)
	}
	for _, path := range []string{"/dev/zero", fifo} {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		for _, args := range [][]string{{"snapshot", "inspect", path}, {"snapshot", "restore", path, "--data-dir", t.TempDir()}} {
			done := make(chan struct{})
			var errOut string
			var code int
			go func() {
				defer close(done)
				_, errOut, code, _ = runCLI(t, nil, args...)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("muster %v did not return", args)
			}
			if code != 1 || !strings.Contains(errOut, "not a regular file") {
				t.Fatalf("muster %v: exit %d, %q", args, code, errOut)
			}
		}
	}
}
