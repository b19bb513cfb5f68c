package catalog_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// The golden files under testdata/golden were written by the version-1
// encoder as it shipped (the registry before the service layer), one file
// per command kind in the order they are applied, and the snapshot of the
// catalog they leave. The .v2 files are the same commands as the encoder
// of command encoding version 2 (a CRC-32C trailer) first wrote them. They
// are never regenerated: a change to the code that would stop an existing
// data dir from replaying fails here. snapshot.v1.json is a snapshot in
// version 1 (JSON, the format of backups), snapshot.v2.bin one in version
// 2 (binary, the format of Raft's snapshots since), snapshot.v3.bin one
// in version 3 (binary, with the keys' fields of tokens), and
// snapshot-tokens.v4.json the same catalog as version 3's in JSON (version 4),
// the keys' fields of tokens optional in it.

func goldenCommands(tb testing.TB) (names []string, raw [][]byte) {
	tb.Helper()
	return goldenFiles(tb, "v1")
}

// goldenFiles returns the golden commands of one encoding version, by
// name.
func goldenFiles(tb testing.TB, version string) (names []string, raw [][]byte) {
	tb.Helper()
	paths, err := filepath.Glob("testdata/golden/command-*." + version)
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no golden commands: %v", err)
	}
	slices.Sort(paths)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		names = append(names, filepath.Base(p))
		raw = append(raw, b)
	}
	return names, raw
}

// sinceV2 are the operations added after command encoding version 2
// replaced version 1: they have version-2 golden files only.
var sinceV2 = map[catalog.Op]bool{catalog.OpEvict: true, catalog.OpCreateToken: true, catalog.OpAddCA: true, catalog.OpRetireCA: true}

// sinceSnapshotV2 are the operations added after snapshot.v2.bin was
// written: its catalog is that of the version-2 golden commands without
// them.
var sinceSnapshotV2 = map[catalog.Op]bool{catalog.OpCreateToken: true, catalog.OpAddCA: true, catalog.OpRetireCA: true}

// sinceSnapshotV3 are the operations added after snapshot.v3.bin was
// written (the CA's): its catalog is that of the version-2 golden
// commands without them.
var sinceSnapshotV3 = map[catalog.Op]bool{catalog.OpAddCA: true, catalog.OpRetireCA: true}

// newForms are version-2 golden files of an older operation in a form
// added since version 2 replaced version 1 (a new field, under a new
// rules version): they have no version-1 twin either.
var newForms = map[string]string{
	"command-18-register_checks.v2": "rules 4: active health checks, and a ttl of 0 with them",
}

// asV1 is the version-1 encoding of a command whose version-2 encoding is
// b: the same body, version byte 1, no checksum.
func asV1(b []byte) []byte {
	return append([]byte{1}, b[1:len(b)-4]...)
}

// TestGolden_Commands decodes and applies every version-1 command in
// order, checks that each passes Command.Validate (version-1 entries have
// no checksum, and one that fails validation halts the replica as
// corrupt), that the version-2 encoder writes the very same body, and
// that the catalog they leave is the golden snapshot, byte for byte.
func TestGolden_Commands(t *testing.T) {
	names, raw := goldenCommands(t)
	c := catalog.New()
	seen := map[catalog.Op]bool{}
	var decoded []catalog.Command
	for i, b := range raw {
		cmd, err := catalog.DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
		if err := cmd.Validate(); err != nil {
			t.Errorf("%s fails validation, so a data dir holding it would halt: %v", names[i], err)
		}
		seen[cmd.Op] = true
		decoded = append(decoded, cmd)
		again, err := catalog.EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(asV1(again), b) {
			t.Errorf("%s does not encode back to its golden body:\n got %s\nwant %s", names[i], asV1(again), b)
		}
		if res := c.Apply(uint64(i+1), cmd); res.Err != nil {
			t.Fatalf("%s: apply: %v", names[i], res.Err)
		}
	}
	for _, op := range c.Ops() {
		if !seen[op] && !sinceV2[op] {
			t.Errorf("no golden command for op %q: add one under testdata/golden, written by the encoder of the version that introduces it", op)
		}
	}

	// Decoded values, field by field, for the richest command of each kind.
	reg := decoded[2].Instance
	wantReg := &catalog.Instance{
		ID: "aaaa0000000000000000000000000001", Service: "fetch_url", Address: "127.0.0.1", Port: 8001, Scheme: "http",
		Tags: []string{"v2", "blue"}, Meta: map[string]string{"site": "dice.com", "zone": "a"},
		TTL: 10 * time.Second, DeregisterAfter: 100 * time.Second, TokenHash: catalog.HashSecret("token-aaaa0000000000000000000000000001"),
		KeyID: "key_0a1b2c3d4e5f6071", Proof: "address+port", Status: catalog.StatusPassing,
		RegisteredAt: time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC),
	}
	if decoded[2].Op != catalog.OpRegister || decoded[2].Rules != 1 || decoded[2].Reason != "api" || !reflect.DeepEqual(reg, wantReg) {
		t.Errorf("%s decodes to %+v %+v, want %+v", names[2], decoded[2], reg, wantReg)
	}
	key := decoded[0].Key
	wantKey := &catalog.Key{ID: "key_0a1b2c3d4e5f6071", SecretHash: catalog.HashSecret("mk_golden"), Services: []string{"fetch_*", "dice_scraper"},
		Description: "golden key", CreatedAt: time.Date(2026, 11, 30, 11, 59, 0, 0, time.UTC)}
	if !reflect.DeepEqual(key, wantKey) {
		t.Errorf("%s decodes to %+v, want %+v", names[0], key, wantKey)
	}
	if st := decoded[6]; st.Op != catalog.OpSetStatus || st.Status != catalog.StatusCritical || st.IfStatus != catalog.StatusPassing || st.ID != wantReg.ID {
		t.Errorf("%s decodes to %+v", names[6], st)
	}

	want, err := os.ReadFile("testdata/golden/snapshot.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := snapshotJSON(t, c); !bytes.Equal(got, want) {
		t.Errorf("the golden commands leave a different catalog:\n got %s\nwant %s", got, want)
	}
}

// TestGolden_Snapshot restores the version-1 snapshot and writes it back
// unchanged, and the catalog it holds is the one the commands left.
func TestGolden_Snapshot(t *testing.T) {
	want, err := os.ReadFile("testdata/golden/snapshot.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	c := catalog.New()
	if err := c.Restore(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if got := snapshotJSON(t, c); !bytes.Equal(got, want) {
		t.Errorf("snapshot round trip differs:\n got %s\nwant %s", got, want)
	}
	inst, ok := c.Instance("aaaa0000000000000000000000000001")
	if !ok || !inst.Draining || inst.Status != catalog.StatusPassing || inst.ModifyIndex != 9 || inst.Address != "127.0.0.1" {
		t.Errorf("restored instance = %+v, %v", inst, ok)
	}
	if v := c.Service("other"); v == nil || v.Index != 15 || len(v.Instances) != 0 {
		t.Errorf("restored empty service view = %+v", v)
	}
	if _, ok := c.KeyBySecretHash(catalog.HashSecret("mk_golden")); !ok {
		t.Error("restored key not found by its secret")
	}
}

// TestGolden_SnapshotV2 restores the version-2 (binary) snapshot, as
// WriteBinary first wrote it for the catalog the version-2 golden
// commands of its day leave: it restores that very catalog, with its
// checks, keyed services and bars, and its keys are enrolment keys that
// never expire, their callbacks verifying. WriteBinary still writes
// version 2, byte for byte, for a catalog without tokens (an older
// follower can install it), and so does that catalog read back from
// version 1. This file stays as it is: data dirs hold it.
func TestGolden_SnapshotV2(t *testing.T) {
	want, err := os.ReadFile("testdata/golden/snapshot.v2.bin")
	if err != nil {
		t.Fatal(err)
	}
	if want[16] != 2 {
		t.Fatalf("snapshot.v2.bin is of version %d", want[16])
	}
	_, raw := goldenFiles(t, "v2")
	applied := catalog.New()
	for i, b := range raw {
		cmd, err := catalog.DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		if sinceSnapshotV2[cmd.Op] {
			continue
		}
		if res := applied.Apply(uint64(i+1), cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	c := catalog.New()
	if err := c.Restore(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if got, want := snapshotJSON(t, c), snapshotJSON(t, applied); !bytes.Equal(got, want) {
		t.Errorf("the version-2 golden snapshot holds a different catalog from the commands':\n got %s\nwant %s", got, want)
	}
	if got := snapshotBinary(t, c); !bytes.Equal(got, want) {
		t.Errorf("version-2 snapshot round trip differs:\n got %q\nwant %q", got, want)
	}
	if got := snapshotBinary(t, applied); !bytes.Equal(got, want) {
		t.Errorf("WriteBinary no longer writes the golden bytes for a catalog without tokens:\n got %q\nwant %q", got, want)
	}
	if b := snapshotJSON(t, applied); !bytes.Contains(b, []byte(`"version": 1`)) && !bytes.Contains(b, []byte(`"version":1`)) {
		t.Errorf("WriteTo of a catalog without tokens is not version 1: %.80s", b)
	}
	fromV1 := catalog.New()
	if err := fromV1.Restore(bytes.NewReader(snapshotJSON(t, c))); err != nil {
		t.Fatal(err)
	}
	if got := snapshotBinary(t, fromV1); !bytes.Equal(got, want) {
		t.Errorf("the catalog read back from version 1 writes a different version 2")
	}
	inst, ok := c.Instance("aaaa0000000000000000000000000006")
	if !ok || inst.TTL != 0 || len(inst.Checks) != 3 || inst.Checks[2].GRPCService != "db.v1.Store" || inst.HostIP != "127.0.0.1" {
		t.Errorf("the instance with checks restored as %+v", inst)
	}
	if b, ok := c.BarByInstance("aaaa0000000000000000000000000001"); !ok || b.Reason != "operator: bad build" || b.Index != 17 {
		t.Errorf("the bar restored as %+v, %v", b, ok)
	}
	if !c.Keyed("fetch_db") || c.Index() != 18 {
		t.Errorf("keyed fetch_db = %v, index %d", c.Keyed("fetch_db"), c.Index())
	}
	keys := c.Keys()
	if len(keys) != 2 {
		t.Fatalf("%d keys restored, want 2", len(keys))
	}
	for _, k := range keys {
		if k.Role != "" || k.RoleOrDefault() != catalog.RoleRegister || !k.ExpiresAt.IsZero() || k.Expired(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)) ||
			k.CallbackTLS != "" || k.CallbackTLSOrDefault() != catalog.CallbackTLSVerify {
			t.Errorf("key %s restored from version 2 as %+v; want an enrolment key that never expires, its callbacks verifying", k.ID, k)
		}
	}
}

// TestGolden_SnapshotV3 restores the version-3 (binary) snapshot, as
// WriteBinary first wrote it for the catalog every version-2 golden
// command leaves, tokens of every kind included: it restores that very
// catalog, writes back to the same bytes, and WriteBinary still writes
// them for the commands' catalog. The same catalog in version 1
// (snapshot-tokens.v4.json, JSON version 4)
// is what WriteTo writes, and restores to the same version 3. A change
// to either writer's output fails here.
func TestGolden_SnapshotV3(t *testing.T) {
	want, err := os.ReadFile("testdata/golden/snapshot.v3.bin")
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, err := os.ReadFile("testdata/golden/snapshot-tokens.v4.json")
	if err != nil {
		t.Fatal(err)
	}
	if want[16] != 3 {
		t.Fatalf("snapshot.v3.bin is of version %d", want[16])
	}
	_, raw := goldenFiles(t, "v2")
	applied := catalog.New()
	for i, b := range raw {
		cmd, err := catalog.DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		if sinceSnapshotV3[cmd.Op] {
			continue
		}
		if res := applied.Apply(uint64(i+1), cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if got := snapshotBinary(t, applied); !bytes.Equal(got, want) {
		t.Errorf("WriteBinary no longer writes the golden bytes:\n got %q\nwant %q", got, want)
	}
	if wantJSON[0] != '{' || !bytes.HasPrefix(wantJSON, []byte(`{"version":4,`)) {
		t.Fatalf("snapshot-tokens.v4.json is not JSON version 4: %.40s", wantJSON)
	}
	if got := snapshotJSON(t, applied); !bytes.Equal(got, wantJSON) {
		t.Errorf("WriteTo no longer writes the golden JSON:\n got %s\nwant %s", got, wantJSON)
	}
	c := catalog.New()
	if err := c.Restore(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if got := snapshotJSON(t, c); !bytes.Equal(got, wantJSON) {
		t.Errorf("the version-3 golden snapshot holds a different catalog from the commands':\n got %s\nwant %s", got, wantJSON)
	}
	if got := snapshotBinary(t, c); !bytes.Equal(got, want) {
		t.Errorf("version-3 snapshot round trip differs:\n got %q\nwant %q", got, want)
	}
	fromJSON := catalog.New()
	if err := fromJSON.Restore(bytes.NewReader(wantJSON)); err != nil {
		t.Fatal(err)
	}
	if got := snapshotBinary(t, fromJSON); !bytes.Equal(got, want) {
		t.Errorf("the catalog read back from JSON version 4 writes a different version 3")
	}
	if _, err := catalog.ReadBackup(bytes.NewReader(wantJSON)); err != nil {
		t.Errorf("ReadBackup refuses the version-4 snapshot: %v", err)
	}
	for _, tc := range []struct {
		secret string
		want   catalog.Key
	}{
		{"mk_golden_read", catalog.Key{ID: "key_5a5b5c5d5e5f6061", Role: catalog.RoleRead, ExpiresAt: time.Date(2027, 3, 3, 9, 0, 0, 0, time.UTC)}},
		{"mk_golden_register", catalog.Key{ID: "key_7a7b7c7d7e7f8081", Role: catalog.RoleRegister, ExpiresAt: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC), CallbackTLS: catalog.CallbackTLSAny, MaxInstances: 4}},
		{"mk_golden_admin", catalog.Key{ID: "key_9a9b9c9d9e9fa0a1", Role: catalog.RoleAdmin}},
		{"mk_golden", catalog.Key{ID: "key_0a1b2c3d4e5f6071"}},
	} {
		k, ok := c.KeyBySecretHash(catalog.HashSecret(tc.secret))
		if !ok || k.ID != tc.want.ID || k.Role != tc.want.Role || !k.ExpiresAt.Equal(tc.want.ExpiresAt) || k.CallbackTLS != tc.want.CallbackTLS || k.MaxInstances != tc.want.MaxInstances {
			t.Errorf("the key of %s restored as %+v, %v; want %+v", tc.secret, k, ok, tc.want)
		}
	}
}

// TestGolden_SnapshotV5 restores the version-5 (binary) snapshot, as
// WriteBinary first wrote it for the catalog every version-2 golden
// command leaves, the CA commands included (a CA added, a second added
// by a rotation, the first retired): it restores that very catalog, CA
// and its key included, and writes back to the same bytes, and
// WriteBinary still writes them for the commands' catalog. WriteTo,
// the JSON of backups, writes that catalog as the version-4 golden
// JSON: no CA, and so no CA key, is ever in it.
func TestGolden_SnapshotV5(t *testing.T) {
	want, err := os.ReadFile("testdata/golden/snapshot.v5.bin")
	if err != nil {
		t.Fatal(err)
	}
	if want[16] != 5 {
		t.Fatalf("snapshot.v5.bin is of version %d", want[16])
	}
	wantJSON, err := os.ReadFile("testdata/golden/snapshot-tokens.v4.json")
	if err != nil {
		t.Fatal(err)
	}
	names, raw := goldenFiles(t, "v2")
	applied := catalog.New()
	var added []*catalog.CA
	for i, b := range raw {
		cmd, err := catalog.DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Op == catalog.OpAddCA {
			added = append(added, cmd.CA)
		}
		if res := applied.Apply(uint64(i+1), cmd); res.Err != nil {
			t.Fatalf("%s: %v", names[i], res.Err)
		}
	}
	if len(added) != 2 {
		t.Fatalf("%d golden ca_add commands, want 2", len(added))
	}
	if got := snapshotBinary(t, applied); !bytes.Equal(got, want) {
		t.Errorf("WriteBinary no longer writes the golden bytes:\n got %q\nwant %q", got, want)
	}
	c := catalog.New()
	if err := c.Restore(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if got := snapshotBinary(t, c); !bytes.Equal(got, want) {
		t.Errorf("version-5 snapshot round trip differs")
	}
	cas := c.CAs()
	if len(cas) != 1 || cas[0].ID != added[1].ID || !bytes.Equal(cas[0].KeyDER, added[1].KeyDER) || !bytes.Equal(cas[0].CertDER, added[1].CertDER) ||
		!cas[0].AddedAt.Equal(added[1].AddedAt) || cas[0].CreateIndex != 23 {
		t.Errorf("the CAs restored as %+v; want the rotation's, added at index 23", cas)
	}
	got := snapshotJSON(t, c)
	// The same catalog but for its index: three commands later.
	wantJSON = bytes.Replace(wantJSON, []byte(`"index":21,`), []byte(`"index":24,`), 1)
	if !bytes.Equal(got, wantJSON) {
		t.Errorf("WriteTo of a catalog with a CA differs from the same catalog without:\n got %s\nwant %s", got, wantJSON)
	}
	if bytes.Contains(got, added[1].KeyDER) || bytes.Contains(got, []byte(added[1].ID)) {
		t.Error("the JSON snapshot holds the CA")
	}
}

// TestGolden_CommandsV2 decodes every version-2 golden command, checks
// that it encodes back to the very same bytes (body and checksum), that it
// is the same command as its version-1 twin, and that applied in order
// the commands leave the catalog their twins leave. Every operation has a
// version-2 golden file.
func TestGolden_CommandsV2(t *testing.T) {
	names, raw := goldenFiles(t, "v2")
	v1Names, v1Raw := goldenCommands(t)
	twins := map[string][]byte{}
	for i, n := range v1Names {
		twins[strings.TrimSuffix(n, ".v1")] = v1Raw[i]
	}
	c, c1 := catalog.New(), catalog.New()
	seen := map[catalog.Op]bool{}
	var twinned []byte // the catalog after the last command with a twin
	for i, b := range raw {
		if b[0] != 2 {
			t.Fatalf("%s: version byte %d, want 2", names[i], b[0])
		}
		cmd, err := catalog.DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
		if err := cmd.Validate(); err != nil {
			t.Errorf("%s fails validation: %v", names[i], err)
		}
		seen[cmd.Op] = true
		again, err := catalog.EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Errorf("%s does not encode back to its golden bytes:\n got %q\nwant %q", names[i], again, b)
		}
		if res := c.Apply(uint64(i+1), cmd); res.Err != nil {
			t.Fatalf("%s: apply: %v", names[i], res.Err)
		}
		twin, ok := twins[strings.TrimSuffix(names[i], ".v2")]
		if !ok {
			if !sinceV2[cmd.Op] && newForms[names[i]] == "" {
				t.Errorf("%s has no version-1 twin, and its op %q is not one added since", names[i], cmd.Op)
			}
			continue
		}
		old, err := catalog.DecodeCommand(twin)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cmd, old) {
			t.Errorf("%s decodes to %+v, its version-1 twin to %+v", names[i], cmd, old)
		}
		c1.Apply(uint64(i+1), old)
		twinned = snapshotJSON(t, c)
	}
	for _, op := range c.Ops() {
		if !seen[op] {
			t.Errorf("no version-2 golden command for op %q: add one under testdata/golden, written by the encoder of the version that introduces it", op)
		}
	}
	tokens := map[string]*catalog.Key{}
	for _, k := range c.Keys() {
		tokens[k.ID] = k
	}
	wantTokens := []*catalog.Key{
		{ID: "key_5a5b5c5d5e5f6061", SecretHash: catalog.HashSecret("mk_golden_read"), Services: []string{"fetch_*"}, Description: "golden read token",
			CreatedAt: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC), CreateIndex: 19, Role: catalog.RoleRead, ExpiresAt: time.Date(2027, 3, 3, 9, 0, 0, 0, time.UTC)},
		{ID: "key_7a7b7c7d7e7f8081", SecretHash: catalog.HashSecret("mk_golden_register"), Services: []string{"fetch_db"}, MaxInstances: 4,
			CreatedAt: time.Date(2026, 12, 3, 9, 1, 0, 0, time.UTC), CreateIndex: 20, Role: catalog.RoleRegister, ExpiresAt: time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
			CallbackTLS: catalog.CallbackTLSAny},
		{ID: "key_9a9b9c9d9e9fa0a1", SecretHash: catalog.HashSecret("mk_golden_admin"), Services: []string{"*"}, Description: "golden admin token",
			CreatedAt: time.Date(2026, 12, 3, 9, 2, 0, 0, time.UTC), CreateIndex: 21, Role: catalog.RoleAdmin},
	}
	for _, want := range wantTokens {
		if got := tokens[want.ID]; !reflect.DeepEqual(got, want) {
			t.Errorf("the token %s decodes and applies to %+v, want %+v", want.ID, got, want)
		}
	}
	inst, ok := c.Instance("aaaa0000000000000000000000000006")
	if !ok || inst.TTL != 0 || len(inst.Checks) != 3 || inst.Checks[1] != (catalog.Check{Type: "http", Path: "/healthz", Port: 8080,
		Interval: 5 * time.Second, Timeout: time.Second, FailuresBeforeCritical: 3, SuccessesBeforePassing: 2}) || inst.Checks[2].GRPCService != "db.v1.Store" {
		t.Errorf("the instance with checks decodes to %+v", inst)
	}
	if a, b := twinned, snapshotJSON(t, c1); !bytes.Equal(a, b) {
		t.Errorf("the version-2 golden commands leave a different catalog from their version-1 twins:\n%s\n%s", a, b)
	}
}

// TestGolden_CommandsWithOrigin: the commands under testdata/golden
// named origin-*.v2 were written by the encoder that added
// Command.Origin (the audit trail's who, when and where). Each decodes
// with its origin, passes Validate, encodes back to the very same bytes,
// and without its origin encodes to the same body minus the origin
// field: the field is added, nothing else moved. Applied in order they
// make the same catalog as the same commands without an origin, which is
// what an older replica, which skips the field, applies. And no older
// golden command has an origin.
func TestGolden_CommandsWithOrigin(t *testing.T) {
	paths, err := filepath.Glob("testdata/golden/origin-*.v2")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden commands with an origin: %v", err)
	}
	slices.Sort(paths)
	with, without := catalog.New(), catalog.New()
	var origins []catalog.Origin
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(p)
		cmd, err := catalog.DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := cmd.Validate(); err != nil {
			t.Errorf("%s fails validation: %v", name, err)
		}
		if cmd.Origin == nil {
			t.Fatalf("%s decodes without its origin", name)
		}
		origins = append(origins, *cmd.Origin)
		again, err := catalog.EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Errorf("%s does not encode back to its golden bytes:\n got %q\nwant %q", name, again, b)
		}
		bare := cmd
		bare.Origin = nil
		plain, err := catalog.EncodeCommand(bare)
		if err != nil {
			t.Fatal(err)
		}
		body := string(b[1 : len(b)-4])
		cut := body[strings.Index(body, `,"origin":`) : len(body)-1]
		if got, want := string(plain[1:len(plain)-4]), strings.Replace(body, cut, "", 1); got != want {
			t.Errorf("%s without its origin encodes to\n%s\nwant the golden body without the field\n%s", name, got, want)
		}
		r1, r2 := with.Apply(uint64(i+1), cmd), without.Apply(uint64(i+1), bare)
		if r1.Err != nil || resultString(r1) != resultString(r2) {
			t.Errorf("%s applied: %s, without its origin: %s", name, resultString(r1), resultString(r2))
		}
	}
	if a, b := snapshotJSON(t, with), snapshotJSON(t, without); !bytes.Equal(a, b) {
		t.Errorf("the origin changed what the commands did:\n%s\n%s", a, b)
	}
	at := time.Date(2026, 12, 10, 9, 30, 0, 250000000, time.UTC)
	want := []catalog.Origin{
		{Time: at, Node: "node-5e1f0c", Caller: "192.0.2.7:51234"},
		{Time: at.Add(time.Second), Node: "n2", Caller: "[2001:db8::7]:40000"},
		{Time: at.Add(20 * time.Second), Node: "n1"},
		{Time: at.Add(2 * time.Minute), Node: "n1"},
	}
	if len(origins) != len(want) {
		t.Fatalf("%d golden commands with an origin, want %d", len(origins), len(want))
	}
	for i := range want {
		if !origins[i].Time.Equal(want[i].Time) || origins[i].Node != want[i].Node || origins[i].Caller != want[i].Caller {
			t.Errorf("%s: origin %+v, want %+v", filepath.Base(paths[i]), origins[i], want[i])
		}
	}
	for _, version := range []string{"v1", "v2"} {
		names, raw := goldenFiles(t, version)
		for i, b := range raw {
			if cmd, err := catalog.DecodeCommand(b); err != nil || cmd.Origin != nil {
				t.Errorf("%s: decodes to origin %+v, %v; entries written before the origin have none", names[i], cmd.Origin, err)
			}
		}
	}
}
