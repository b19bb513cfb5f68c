package catalog_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// rules5Catalog applies every version-2 golden command, then the golden
// commands of rules 5 (testdata/golden/rules5-*.v2: a register key whose
// Consul registrations skip the callback, two registrations of one
// external ID, and one of another), checking that each passes Validate
// and encodes back to its very bytes.
func rules5Catalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	_, raw := goldenFiles(t, "v2")
	paths, err := filepath.Glob("testdata/golden/rules5-*.v2")
	if err != nil || len(paths) != 4 {
		t.Fatalf("rules 5 golden commands: %v, %v", paths, err)
	}
	sort.Strings(paths)
	c := catalog.New()
	for i, b := range raw {
		cmd, err := catalog.DecodeCommand(b)
		if err != nil {
			t.Fatal(err)
		}
		if res := c.Apply(uint64(i+1), cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cmd, err := catalog.DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if cmd.Rules != catalog.RulesExternal {
			t.Errorf("%s asks for rules %d", p, cmd.Rules)
		}
		if err := cmd.Validate(); err != nil {
			t.Errorf("%s fails validation: %v", p, err)
		}
		again, err := catalog.EncodeCommand(cmd)
		if err != nil || !bytes.Equal(again, b) {
			t.Errorf("%s does not encode back to its golden bytes (%v)", p, err)
		}
		if res := c.Apply(c.Index()+1, cmd); res.Err != nil {
			t.Fatalf("%s: apply: %v", p, res.Err)
		}
	}
	return c
}

// TestGolden_Rules5 applies the golden commands of rules 5 and checks
// what they leave: the key's policy, the replacement of an instance by a
// registration of the same key and external ID, the index of external
// IDs; and that the catalog is written as the golden JSON version 6 and
// binary version 7, which restore to it and to each other.
func TestGolden_Rules5(t *testing.T) {
	c := rules5Catalog(t)
	const key = "key_b1b2b3b4b5b6b7b8"
	k, ok := c.KeyBySecretHash(catalog.HashSecret("mk_golden_consul"))
	if !ok || k.ID != key || k.ConsulVerify != catalog.ConsulVerifyNone || k.ConsulVerifyOrDefault() != catalog.ConsulVerifyNone {
		t.Fatalf("the consul key applied as %+v, %v", k, ok)
	}
	if _, ok := c.Instance("bbbb0000000000000000000000000001"); ok {
		t.Error("the first registration of web-1 is still there: the second did not replace it")
	}
	for ext, id := range map[string]string{"web-1": "bbbb0000000000000000000000000002", "redis:6379": "bbbb0000000000000000000000000003"} {
		in, ok := c.InstanceByExternal(key, ext, "127.0.0.1")
		if !ok || in.ID != id || in.ExternalID != ext || in.Proof != catalog.ProofNone {
			t.Errorf("InstanceByExternal(%s) = %+v, %v; want %s", ext, in, ok, id)
		}
	}
	if _, ok := c.InstanceByExternal("key_0a1b2c3d4e5f6071", "web-1", "127.0.0.1"); ok {
		t.Error("another key finds the external ID web-1")
	}
	if v := c.Service("web"); v == nil || len(v.Instances) != 2 {
		t.Errorf("service web holds %v", v)
	}

	wantJSON, errJ := os.ReadFile("testdata/golden/snapshot.v6.json")
	wantBin, errB := os.ReadFile("testdata/golden/snapshot.v7.bin")
	if errJ != nil || errB != nil {
		t.Fatalf("golden snapshots: %v, %v", errJ, errB)
	}
	if !bytes.HasPrefix(wantJSON, []byte(`{"version":6,`)) || wantBin[16] != 7 {
		t.Fatalf("golden snapshots of versions %.14s and %d", wantJSON, wantBin[16])
	}
	if got := snapshotJSON(t, c); !bytes.Equal(got, wantJSON) {
		t.Errorf("WriteTo no longer writes the golden JSON version 6:\n got %s\nwant %s", got, wantJSON)
	}
	if got := snapshotBinary(t, c); !bytes.Equal(got, wantBin) {
		t.Errorf("WriteBinary no longer writes the golden version 7")
	}
	for name, b := range map[string][]byte{"json": wantJSON, "binary": wantBin} {
		r := catalog.New()
		if err := r.Restore(bytes.NewReader(b)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := snapshotBinary(t, r); !bytes.Equal(got, wantBin) && name == "binary" {
			t.Errorf("version-7 round trip differs")
		}
		if got := snapshotJSON(t, r); !bytes.Equal(got, wantJSON) {
			t.Errorf("the catalog restored from %s writes a different JSON version 6", name)
		}
		if in, ok := r.InstanceByExternal(key, "web-1", "127.0.0.1"); !ok || in.ID != "bbbb0000000000000000000000000002" {
			t.Errorf("restored from %s, InstanceByExternal(web-1) = %+v, %v", name, in, ok)
		}
		if k, _ := r.KeyBySecretHash(catalog.HashSecret("mk_golden_consul")); k == nil || k.ConsulVerify != catalog.ConsulVerifyNone {
			t.Errorf("restored from %s, the consul key is %+v", name, k)
		}
	}
	if r := catalog.New(); r.Restore(bytes.NewReader(wantBin)) != nil || len(r.CAs()) != 1 {
		t.Error("version 7 does not carry the CA")
	}
	if _, err := catalog.ReadBackup(bytes.NewReader(wantJSON)); err != nil {
		t.Errorf("ReadBackup refuses JSON version 6: %v", err)
	}
}

// TestRules5_OlderVersionsRefuseItsFields: a field of rules 5 in a
// command that asks for older rules, or in a JSON snapshot of an older
// version, is refused, never silently taken; and a catalog without any is
// still written in the older versions, so that a rolling upgrade's older
// servers read it until someone registers through the Consul API.
func TestRules5_OlderVersionsRefuseItsFields(t *testing.T) {
	c := rules5Catalog(t)
	in, _ := c.InstanceByExternal("key_b1b2b3b4b5b6b7b8", "web-1", "127.0.0.1")
	next := *in
	next.ID, next.Port = "bbbb0000000000000000000000000009", 9009
	cmd := catalog.Command{Op: catalog.OpRegister, Rules: catalog.RulesCurrent, Instance: &next}
	if err := cmd.Validate(); !errors.Is(err, catalog.ErrBadCommand) {
		t.Errorf("Validate of an external ID under rules %d = %v, want ErrBadCommand", catalog.RulesCurrent, err)
	}
	if res := c.Apply(c.Index()+1, cmd); !errors.Is(res.Err, catalog.ErrBadCommand) {
		t.Errorf("Apply of an external ID under rules %d = %v, want ErrBadCommand", catalog.RulesCurrent, res.Err)
	}
	key := &catalog.Key{ID: "key_c1", SecretHash: catalog.HashSecret("x"), Services: []string{"*"}, CreatedAt: time.Unix(1, 0).UTC(),
		Role: catalog.RoleRegister, ConsulVerify: catalog.ConsulVerifyNone}
	tok := catalog.Command{Op: catalog.OpCreateToken, Rules: catalog.RulesCurrent, Key: key}
	if err := tok.Validate(); !errors.Is(err, catalog.ErrBadCommand) {
		t.Errorf("Validate of consul_verify under rules %d = %v", catalog.RulesCurrent, err)
	}
	if res := c.Apply(c.Index()+1, tok); !errors.Is(res.Err, catalog.ErrBadCommand) {
		t.Errorf("Apply of consul_verify under rules %d = %v", catalog.RulesCurrent, res.Err)
	}
	read := *key
	read.Role = catalog.RoleRead
	if res := c.Apply(c.Index()+1, catalog.Command{Op: catalog.OpCreateToken, Rules: catalog.RulesExternal, Key: &read}); !errors.Is(res.Err, catalog.ErrBadCommand) {
		t.Errorf("a read token with consul_verify applied: %v", res.Err)
	}

	js := snapshotJSON(t, c)
	old := bytes.Replace(js, []byte(`{"version":6,`), []byte(`{"version":4,`), 1)
	if err := catalog.New().Restore(bytes.NewReader(old)); err == nil {
		t.Error("a JSON version 4 with external IDs restored")
	}
	if _, err := catalog.ReadBackup(bytes.NewReader(old)); !errors.Is(err, catalog.ErrBadSnapshot) {
		t.Errorf("ReadBackup of a JSON version 4 with external IDs = %v", err)
	}

	// The rules-5 instances and key gone, the older versions again.
	for _, id := range []string{"bbbb0000000000000000000000000002", "bbbb0000000000000000000000000003"} {
		if res := c.Apply(c.Index()+1, catalog.Command{Op: catalog.OpDeregister, ID: id}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if res := c.Apply(c.Index()+1, catalog.Command{Op: catalog.OpRevokeKey, ID: "key_b1b2b3b4b5b6b7b8"}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if b := snapshotBinary(t, c); b[16] != 5 {
		t.Errorf("without rules 5's fields WriteBinary writes version %d, want 5", b[16])
	}
	if b := snapshotJSON(t, c); !bytes.HasPrefix(b, []byte(`{"version":4,`)) {
		t.Errorf("without rules 5's fields WriteTo writes %.14s, want version 4", b)
	}
}

// TestRules5_ExternalIDAndAddressHeldApart: a registration whose external
// ID names one instance of its key and whose address and port another
// holds is refused (ErrExists), as it would replace two; the catalog is
// unchanged.
func TestRules5_ExternalIDAndAddressHeldApart(t *testing.T) {
	c := rules5Catalog(t)
	a, _ := c.InstanceByExternal("key_b1b2b3b4b5b6b7b8", "web-1", "127.0.0.1")
	b, _ := c.InstanceByExternal("key_b1b2b3b4b5b6b7b8", "redis:6379", "127.0.0.1")
	next := *a
	next.ID, next.Port = "bbbb000000000000000000000000000a", b.Port
	before := snapshotJSON(t, c)
	res := c.Apply(c.Index()+1, catalog.Command{Op: catalog.OpRegister, Rules: catalog.RulesExternal, Instance: &next})
	if !errors.Is(res.Err, catalog.ErrExists) {
		t.Fatalf("Apply = %v, want ErrExists", res.Err)
	}
	after := snapshotJSON(t, c)
	if !bytes.Equal(bytes.SplitN(before, []byte(`"instances"`), 2)[1], bytes.SplitN(after, []byte(`"instances"`), 2)[1]) {
		t.Error("a refused registration changed the catalog")
	}
	// Moving web-1 to a free port replaces it alone.
	next.Port = 9010
	if res := c.Apply(c.Index()+1, catalog.Command{Op: catalog.OpRegister, Rules: catalog.RulesExternal, Instance: &next}); res.Err != nil || res.Replaced != a.ID {
		t.Fatalf("Apply = %+v, want %s replaced", res, a.ID)
	}
	if in, _ := c.InstanceByExternal("key_b1b2b3b4b5b6b7b8", "web-1", "127.0.0.1"); in == nil || in.Port != 9010 {
		t.Errorf("web-1 is %+v", in)
	}
	if _, ok := c.InstanceByAddr("web", "127.0.0.1", a.Port); ok {
		t.Error("the replaced instance's address is still indexed")
	}
}

// TestRules5_OneExternalIDOnSeveralHosts: an ExternalID is unique per key
// and address, as a Consul service ID is per agent: the same ID
// registered at another address by the same key is another instance
// (replicas on several hosts), each found by its address, both by the ID.
func TestRules5_OneExternalIDOnSeveralHosts(t *testing.T) {
	c := rules5Catalog(t)
	const key = "key_b1b2b3b4b5b6b7b8"
	a, _ := c.InstanceByExternal(key, "web-1", "127.0.0.1")
	b := *a
	b.ID, b.Address, b.HostIP = "bbbb00000000000000000000000000b2", "127.0.0.2", "127.0.0.2"
	res := c.Apply(c.Index()+1, catalog.Command{Op: catalog.OpRegister, Rules: catalog.RulesExternal, Instance: &b})
	if res.Err != nil || res.Replaced != "" {
		t.Fatalf("the same ID at another address: %+v", res)
	}
	all := c.InstancesByExternal(key, "web-1")
	if len(all) != 2 || all[0].ID != a.ID || all[1].ID != b.ID {
		t.Fatalf("InstancesByExternal = %v", all)
	}
	if got, ok := c.InstanceByExternal(key, "web-1", "127.0.0.2"); !ok || got.ID != b.ID {
		t.Errorf("at 127.0.0.2: %+v, %v", got, ok)
	}
	if res := c.Apply(c.Index()+1, catalog.Command{Op: catalog.OpDeregister, ID: a.ID}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if all := c.InstancesByExternal(key, "web-1"); len(all) != 1 || all[0].ID != b.ID {
		t.Errorf("after the first left: %v", all)
	}
}

// TestRules5_ExternalIDMovedToAnotherService: a registration of the same
// key and external ID at the same address under another service name (a
// log may hold one: proposers refuse it since) replaces the instance,
// which leaves its old service's view as it leaves the catalog.
func TestRules5_ExternalIDMovedToAnotherService(t *testing.T) {
	c := rules5Catalog(t)
	const key = "key_b1b2b3b4b5b6b7b8"
	a, _ := c.InstanceByExternal(key, "web-1", "127.0.0.1")
	next := *a
	next.ID, next.Service, next.Port = "bbbb000000000000000000000000000c", "fetch_moved", 9011
	res := c.Apply(c.Index()+1, catalog.Command{Op: catalog.OpRegister, Rules: catalog.RulesExternal, Instance: &next})
	if res.Err != nil || res.Replaced != a.ID {
		t.Fatalf("Apply = %+v", res)
	}
	if _, ok := c.Instance(a.ID); ok {
		t.Fatal("replaced instance still held")
	}
	for _, inst := range c.Service(a.Service).Instances {
		if inst.ID == a.ID {
			t.Errorf("service %s's view still lists %s, replaced at index %d and gone from the catalog", a.Service, a.ID, res.Index)
		}
	}
}
