package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServerProcess_OpensLegacyDataDir: the muster binary, started on a
// data dir written by the registry as it shipped before the service layer
// (internal/server/testdata/datadir-v1), serves every key and instance that
// binary held, through the CLI, with the admin token it wrote.
func TestServerProcess_OpensLegacyDataDir(t *testing.T) {
	src := "../../internal/server/testdata/datadir-v1"
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "admin-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	var want struct {
		Instances []struct {
			ID, Service, Status string
			Draining            bool
		}
		Keys []struct{ ID string }
	}
	b, err := os.ReadFile("../../internal/server/testdata/datadir-v1.expect.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Instances) == 0 || len(want.Keys) == 0 {
		t.Fatal("the expected catalog is empty")
	}

	p := startProc(t, dir)
	env := map[string]string{"MUSTER_ADDR": p.url, "MUSTER_TOKEN": adminToken(t, dir)}
	out, err := cli(t, env, "keys", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range want.Keys {
		if !strings.Contains(out, k.ID) {
			t.Errorf("keys list lacks %s:\n%s", k.ID, out)
		}
	}
	for _, inst := range want.Instances {
		out, err := cli(t, env, "lookup", inst.Service, "--status", "any", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Instances []struct{ ID, Status string }
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("lookup %s -o json: %v\n%s", inst.Service, err, out)
		}
		wantStatus := inst.Status
		if inst.Draining {
			wantStatus = "draining"
		}
		found := false
		for _, got := range res.Instances {
			if got.ID == inst.ID {
				found = true
				if got.Status != wantStatus {
					t.Errorf("%s of %s: status %q, want %q", inst.ID, inst.Service, got.Status, wantStatus)
				}
			}
		}
		if !found {
			t.Errorf("lookup %s lacks %s:\n%s", inst.Service, inst.ID, out)
		}
	}
}
