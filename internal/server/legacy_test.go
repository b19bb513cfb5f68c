package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
)

// copyDataDir copies a data dir from testdata into a fresh temp dir (the
// server writes to it) with the modes the server would have given its
// files.
func copyDataDir(tb testing.TB, name string) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "data")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", name))); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "admin-token"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// TestServer_OpensLegacyDataDir: a data dir written by the registry as it
// shipped before the service layer (testdata/datadir-v1: keys created and
// revoked, instances registered, drained, expired, revived and removed, a
// tutorial-protocol registration, a snapshot with log entries after it)
// opens with every instance and key intact: the catalog it holds is, byte
// for byte, the snapshot that binary took just before it stopped
// (testdata/datadir-v1.expect.json). It is served as before, too.
func TestServer_OpensLegacyDataDir(t *testing.T) {
	dir := copyDataDir(t, "datadir-v1")
	h := start(t, func(c *server.Config) {
		c.DataDir = dir
		c.AdminToken = "" // the data dir's own admin-token file
		c.Liveness.Grace = server.DefaultConfig().Liveness.Grace
	})
	pretty, err := os.ReadFile("testdata/datadir-v1.expect.json")
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := json.Compact(&want, pretty); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := h.Srv.Catalog().Snapshot().WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	// It opened without adding a CA: a cluster that holds state makes its
	// first CA when a certificate is first asked for or an admin rotates, so
	// that a server upgraded first never stops those not yet upgraded
	// with a command they do not know.
	if cas := h.Srv.Catalog().CAs(); len(cas) != 0 {
		t.Fatalf("the registry added %d CAs as it opened a data dir that holds state", len(cas))
	}
	if !bytes.Equal(bytes.TrimSpace(got.Bytes()), want.Bytes()) {
		t.Fatalf("catalog opened from the legacy data dir differs from what the old binary held:\n got %s\nwant %s", got.Bytes(), want.Bytes())
	}
	// An anonymous GET /v1/ca makes none either (it never writes); an
	// admin's rotation makes the first.
	resp, body := h.Call(t, "GET", "/v1/ca", "", nil)
	if resp.StatusCode != 503 || len(h.Srv.Catalog().CAs()) != 0 {
		t.Fatalf("GET /v1/ca with no CA yet: %d %s, %d CAs; want 503 and none made", resp.StatusCode, body, len(h.Srv.Catalog().CAs()))
	}

	// Through the API, with the admin token the old binary wrote.
	tok, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := h.Call(t, "POST", "/v1/ca/rotate", strings.TrimSpace(string(tok)), nil); resp.StatusCode != 200 || len(h.Srv.Catalog().CAs()) != 1 {
		t.Fatalf("the first POST /v1/ca/rotate: %d %s, %d CAs; want 200 and one CA", resp.StatusCode, body, len(h.Srv.Catalog().CAs()))
	}
	if resp, body := h.Call(t, "GET", "/v1/ca", "", nil); resp.StatusCode != 200 || !bytes.Contains(body, []byte("BEGIN CERTIFICATE")) {
		t.Fatalf("GET /v1/ca after the first CA: %d %s", resp.StatusCode, body)
	}
	admin, _ := client.New(client.Config{Addr: h.Srv.URL(), Token: strings.TrimSpace(string(tok))})
	ctx := context.Background()
	keys, err := admin.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keyIDs []string
	for _, k := range keys {
		keyIDs = append(keyIDs, k.ID)
	}
	var st struct {
		Instances []struct {
			ID, Service, Status string
			Draining            bool
		}
		Keys []struct{ ID string }
	}
	if err := json.Unmarshal(want.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	var wantKeys []string
	for _, k := range st.Keys {
		wantKeys = append(wantKeys, k.ID)
	}
	if !slices.Equal(keyIDs, wantKeys) {
		t.Errorf("keys = %v, want %v", keyIDs, wantKeys)
	}
	for _, inst := range st.Instances {
		res, err := h.Anon.Lookup(ctx, inst.Service, client.WithStatus("any"))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, got := range res.Instances {
			if got.ID == inst.ID {
				found = true
				wantStatus := inst.Status
				if inst.Draining {
					wantStatus = "draining"
				}
				if got.Status != wantStatus {
					t.Errorf("instance %s of %s: status %q, want %q", inst.ID, inst.Service, got.Status, wantStatus)
				}
			}
		}
		if !found {
			t.Errorf("instance %s of %s missing from lookups", inst.ID, inst.Service)
		}
	}
}
