package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestServerProcess_DiskReserve: with --disk-reserve-mib above the free
// space of the data dir's disk, the server starts, reads work, writes get
// a retryable 503 naming the disk, and /readyz says degraded: disk.
func TestServerProcess_DiskReserve(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	ctx := context.Background()
	dir := t.TempDir()
	p := startProc(t, dir, "--disk-reserve-mib", "1000000000") // a petabyte: never free
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	if _, err := admin.CreateKey(ctx, []string{"web"}, ""); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("a write on a disk below the reserve: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, p.url+"/v1/keys", strings.NewReader(`{"services":["web"]}`))
	req.Header.Set("Authorization", "Bearer "+adminToken(t, dir))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var eb api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != 503 || eb.Error.Code != api.CodeUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(eb.Error.Message, "disk") {
		t.Fatalf("a write below the reserve: %d %+v, Retry-After %q", resp.StatusCode, eb, resp.Header.Get("Retry-After"))
	}
	if _, err := admin.Services(ctx); err != nil {
		t.Fatalf("a read on a disk below the reserve: %v", err)
	}
	resp, err = http.Get(p.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var h api.Health
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != 200 || h.Degraded != "disk" {
		t.Fatalf("/readyz = %d %+v, want 200 degraded: disk", resp.StatusCode, h)
	}

	// With the guard off (0) on the same data dir, writes work.
	p.kill9(t)
	p = startProc(t, dir, "--disk-reserve-mib", "0")
	admin, _ = client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	k, err := admin.CreateKey(ctx, []string{"web"}, "")
	if err != nil {
		t.Fatal(err)
	}
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := admin.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()}); err != nil {
		t.Fatal(err)
	}
}

// TestServer_SeedCompatNeedsNames: --seed-compat without --seed-services,
// or with wildcards alone, refuses to start, before it creates anything.
func TestServer_SeedCompatNeedsNames(t *testing.T) {
	for _, extra := range [][]string{nil, {"--seed-services", "*"}, {"--seed-services", "fetch_url,**"}} {
		dir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"server", "--http-addr", "127.0.0.1:0", "--data-dir", dir, "--seed-compat"}, extra...)
		_, err := cli(t, nil, args...)
		if err == nil || !strings.Contains(err.Error(), "seed") {
			t.Fatalf("%v: %v", extra, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v: the refused start created the data dir (%v)", extra, err)
		}
	}
}

// TestServer_BadFlagValuesAreUsageErrors: a flag value a component
// refuses exits 2, like any command-line mistake, before anything is
// created.
func TestServer_BadFlagValuesAreUsageErrors(t *testing.T) {
	for _, bad := range [][]string{
		{"--expiry-grace", "-5s"}, {"--verify-timeout", "0s"}, {"--max-instances-per-key", "-1"},
		{"--verify-allow", "notacidr"}, {"--register-rate", "-1"},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"server", "--http-addr", "127.0.0.1:0", "--data-dir", dir}, bad...)
		_, errOut, code, err := runCLI(t, nil, args...)
		if code != 2 || err == nil || !strings.Contains(errOut, "-h") {
			t.Errorf("%v: exit %d, %v\n%s", bad, code, err, errOut)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v: the refused start created the data dir", bad)
		}
	}
}
