package catalog

import (
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestCatalog_intern: instances registered through separate commands
// (each with its own copies of the strings, as decoded from its log
// entry) share their service's name, their key's ID, their address and
// their scheme; the table of addresses forgets one when its last
// instance leaves, so that churn of addresses does not grow it.
func TestCatalog_intern(t *testing.T) {
	c := New()
	idx := uint64(0)
	apply := func(cmd Command) error { idx++; return c.Apply(idx, cmd).Err }
	if err := apply(Command{Op: OpCreateKey, Key: &Key{ID: "k1", SecretHash: make([]byte, 32), Services: []string{"*"}}}); err != nil {
		t.Fatal(err)
	}
	// fresh returns a copy of s in memory of its own.
	fresh := func(s string) string { return strings.Clone(s) }
	for i, id := range []string{"a", "b", "c"} {
		if err := apply(Command{Op: OpRegister, Rules: RulesCurrent, Instance: &Instance{
			ID: id, Service: fresh("web"), Address: fresh("10.0.0.1"), Port: 80 + i, Scheme: fresh("http"),
			TTL: time.Second, DeregisterAfter: time.Minute, TokenHash: make([]byte, 32), KeyID: fresh("k1"),
			Status: Status(fresh("passing")), Proof: fresh(ProofAddressPort)}}); err != nil {
			t.Fatal(err)
		}
	}
	same := func(field string, get func(*Instance) string) {
		t.Helper()
		a, b := c.instances["a"], c.instances["c"]
		if unsafe.StringData(get(a)) != unsafe.StringData(get(b)) {
			t.Errorf("%s: instances a and c hold separate copies of %q", field, get(a))
		}
	}
	same("Service", func(in *Instance) string { return in.Service })
	same("KeyID", func(in *Instance) string { return in.KeyID })
	same("Address", func(in *Instance) string { return in.Address })
	same("Scheme", func(in *Instance) string { return in.Scheme })
	same("Proof", func(in *Instance) string { return in.Proof })
	same("Status", func(in *Instance) string { return string(in.Status) })
	if len(c.hosts) != 1 {
		t.Fatalf("hosts = %v, want one address", c.hosts)
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := apply(Command{Op: OpDeregister, ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.hosts) != 0 {
		t.Fatalf("hosts = %v after every instance left, want none", c.hosts)
	}
}
