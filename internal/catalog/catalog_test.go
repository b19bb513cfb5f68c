package catalog_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// t0 is a fixed wall-clock time for commands; Apply never reads a clock.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)

// newKey returns a complete key whose secret is "secret-"+id.
func newKey(id string, patterns ...string) *catalog.Key {
	return &catalog.Key{
		ID:          id,
		SecretHash:  catalog.HashSecret("secret-" + id),
		Services:    patterns,
		Description: "key " + id,
		CreatedAt:   t0,
	}
}

// newInstance returns a complete, passing instance enrolled with key k1.
func newInstance(id, service, address string, port int) *catalog.Instance {
	return &catalog.Instance{
		ID:              id,
		Service:         service,
		Address:         address,
		Port:            port,
		Scheme:          "http",
		Tags:            []string{"v1", "blue"},
		Meta:            map[string]string{"zone": "a"},
		TTL:             10 * time.Second,
		DeregisterAfter: 100 * time.Second,
		TokenHash:       catalog.HashSecret("token-" + id),
		KeyID:           "k1",
		Proof:           "address+port",
		Status:          catalog.StatusPassing,
		RegisteredAt:    t0,
	}
}

func createKey(k *catalog.Key) catalog.Command {
	return catalog.Command{Op: catalog.OpCreateKey, Key: k}
}

func register(inst *catalog.Instance) catalog.Command {
	return catalog.Command{Op: catalog.OpRegister, Instance: inst, Reason: "test"}
}

// replica is a catalog driven like a Raft log: every command gets the next
// index.
type replica struct {
	c   *catalog.Catalog
	idx uint64
}

func newReplica() *replica { return &replica{c: catalog.New()} }

// apply applies cmd at the next index and returns its result.
func (l *replica) apply(cmd catalog.Command) catalog.Result {
	l.idx++
	return l.c.Apply(l.idx, cmd)
}

// must applies cmds and fails tb if any of them fails.
func (l *replica) must(tb testing.TB, cmds ...catalog.Command) {
	tb.Helper()
	for _, cmd := range cmds {
		if res := l.apply(cmd); res.Err != nil {
			tb.Fatalf("apply %s at %d: %v", cmd.Op, l.idx, res.Err)
		}
	}
}

// snapshotJSON returns the catalog's snapshot as written by WriteTo.
// resultString is what two catalogs that hold the same state answer
// alike for one command: its index, the instance replaced, the error,
// and the instance it named as the command left it (its ID, status,
// drain flag and indexes: the pointer is each catalog's own).
func resultString(r catalog.Result) string {
	s := fmt.Sprintf("index %d replaced %q err %v", r.Index, r.Replaced, r.Err)
	if in := r.Instance; in != nil {
		s += fmt.Sprintf(" instance %s %s draining=%v %d/%d", in.ID, in.Status, in.Draining, in.CreateIndex, in.ModifyIndex)
	}
	return s
}

func snapshotJSON(tb testing.TB, c *catalog.Catalog) []byte {
	tb.Helper()
	var buf bytes.Buffer
	n, err := c.Snapshot().WriteTo(&buf)
	if err != nil {
		tb.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		tb.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

// viewIDs returns the instance IDs of a service view, in view order.
func viewIDs(tb testing.TB, c *catalog.Catalog, service string) []string {
	tb.Helper()
	v := c.Service(service)
	if v == nil {
		tb.Fatalf("Service(%q) = nil", service)
	}
	ids := []string{}
	for _, inst := range v.Instances {
		ids = append(ids, inst.ID)
	}
	return ids
}

// noPanic runs fn and reports a panic as a test failure, so that one bug does
// not abort the rest of the package's tests. It reports whether fn returned.
func noPanic(tb testing.TB, what string, fn func()) (ok bool) {
	tb.Helper()
	defer func() {
		if r := recover(); r != nil {
			tb.Errorf("%s panicked: %v\n%s", what, r, debug.Stack())
			ok = false
		}
	}()
	fn()
	return true
}

func TestCatalog_Apply(t *testing.T) {
	// base is applied before every case: a key for web-* and api, and one
	// passing instance i1 of web-a.
	base := []catalog.Command{
		createKey(newKey("k1", "web-*", "api")),
		register(newInstance("i1", "web-a", "10.0.0.1", 80)),
	}
	withStatus := func(inst *catalog.Instance, s catalog.Status) *catalog.Instance { inst.Status = s; return inst }
	withKey := func(inst *catalog.Instance, k string) *catalog.Instance { inst.KeyID = k; return inst }

	tests := []struct {
		name         string
		setup        []catalog.Command
		cmd          catalog.Command
		wantErr      error
		wantReplaced string
		check        func(t *testing.T, c *catalog.Catalog)
	}{
		{
			name: "register",
			cmd:  register(newInstance("i2", "web-a", "10.0.0.2", 80)),
			check: func(t *testing.T, c *catalog.Catalog) {
				inst, ok := c.Instance("i2")
				if !ok {
					t.Fatal("i2 not stored")
				}
				if inst.CreateIndex != 3 || inst.ModifyIndex != 3 {
					t.Errorf("indexes = %d/%d, want 3/3", inst.CreateIndex, inst.ModifyIndex)
				}
				if got := viewIDs(t, c, "web-a"); !slices.Equal(got, []string{"i1", "i2"}) {
					t.Errorf("view = %v", got)
				}
			},
		},
		{
			name:         "register replaces same service address and port",
			cmd:          register(newInstance("i2", "web-a", "10.0.0.1", 80)),
			wantReplaced: "i1",
			check: func(t *testing.T, c *catalog.Catalog) {
				if _, ok := c.Instance("i1"); ok {
					t.Error("replaced i1 still present")
				}
				if got := viewIDs(t, c, "web-a"); !slices.Equal(got, []string{"i2"}) {
					t.Errorf("view = %v, want [i2]", got)
				}
				// A third registration at the address replaces i2, not i1.
				res := c.Apply(4, register(newInstance("i3", "web-a", "10.0.0.1", 80)))
				if res.Err != nil || res.Replaced != "i2" {
					t.Errorf("second replacement = %+v, want Replaced i2", res)
				}
			},
		},
		{
			name: "register same address other port does not replace",
			cmd:  register(newInstance("i2", "web-a", "10.0.0.1", 81)),
			check: func(t *testing.T, c *catalog.Catalog) {
				if got := viewIDs(t, c, "web-a"); !slices.Equal(got, []string{"i1", "i2"}) {
					t.Errorf("view = %v", got)
				}
			},
		},
		{
			name: "register same address and port other service does not replace",
			cmd:  register(newInstance("i2", "web-b", "10.0.0.1", 80)),
			check: func(t *testing.T, c *catalog.Catalog) {
				if _, ok := c.Instance("i1"); !ok {
					t.Error("i1 of another service was removed")
				}
			},
		},
		{
			name: "register replaces after the old instance changed status",
			setup: []catalog.Command{
				{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusCritical},
			},
			cmd:          register(newInstance("i2", "web-a", "10.0.0.1", 80)),
			wantReplaced: "i1",
		},
		{
			name: "register at the address of a deregistered instance replaces nothing",
			setup: []catalog.Command{
				{Op: catalog.OpDeregister, ID: "i1"},
			},
			cmd: register(newInstance("i2", "web-a", "10.0.0.1", 80)),
		},
		{
			name:    "register duplicate ID",
			cmd:     register(newInstance("i1", "web-a", "10.0.0.9", 80)),
			wantErr: catalog.ErrExists,
			check: func(t *testing.T, c *catalog.Catalog) {
				if inst, _ := c.Instance("i1"); inst.Address != "10.0.0.1" {
					t.Errorf("i1 was overwritten: %+v", inst)
				}
			},
		},
		{
			name:    "register with unknown key",
			cmd:     register(withKey(newInstance("i2", "web-a", "10.0.0.2", 80), "nope")),
			wantErr: catalog.ErrKeyRevoked,
		},
		{
			name:    "register with revoked key",
			setup:   []catalog.Command{{Op: catalog.OpRevokeKey, ID: "k1"}},
			cmd:     register(newInstance("i2", "web-a", "10.0.0.2", 80)),
			wantErr: catalog.ErrKeyRevoked,
			check: func(t *testing.T, c *catalog.Catalog) {
				if _, ok := c.Instance("i2"); ok {
					t.Error("instance stored despite revoked key")
				}
			},
		},
		{
			name:    "register revoked key does not replace",
			setup:   []catalog.Command{{Op: catalog.OpRevokeKey, ID: "k1"}},
			cmd:     register(newInstance("i2", "web-a", "10.0.0.1", 80)),
			wantErr: catalog.ErrKeyRevoked,
			check: func(t *testing.T, c *catalog.Catalog) {
				if _, ok := c.Instance("i1"); !ok {
					t.Error("failed registration removed the instance at its address")
				}
			},
		},
		{
			name:    "register outside key scope",
			cmd:     register(newInstance("i2", "db", "10.0.0.2", 80)),
			wantErr: catalog.ErrKeyScope,
			check: func(t *testing.T, c *catalog.Catalog) {
				if c.Service("db") != nil {
					t.Error("service view created by a refused registration")
				}
			},
		},
		{
			name: "register exact pattern",
			cmd:  register(newInstance("i2", "api", "10.0.0.2", 80)),
		},
		{
			name:    "register prefix of exact pattern",
			cmd:     register(newInstance("i2", "apix", "10.0.0.2", 80)),
			wantErr: catalog.ErrKeyScope,
		},
		{name: "register nil instance", cmd: catalog.Command{Op: catalog.OpRegister}, wantErr: catalog.ErrBadCommand},
		{name: "register empty ID", cmd: register(newInstance("", "web-a", "10.0.0.2", 80)), wantErr: catalog.ErrBadCommand},
		{name: "register bad service name", cmd: register(newInstance("i2", "Web", "10.0.0.2", 80)), wantErr: catalog.ErrBadCommand},
		{name: "register empty service name", cmd: register(newInstance("i2", "", "10.0.0.2", 80)), wantErr: catalog.ErrBadCommand},
		{
			name: "register short token hash",
			cmd: register(func() *catalog.Instance {
				i := newInstance("i2", "web-a", "10.0.0.2", 80)
				i.TokenHash = i.TokenHash[:31]
				return i
			}()),
			wantErr: catalog.ErrBadCommand,
		},
		{
			name:    "register missing token hash",
			cmd:     register(func() *catalog.Instance { i := newInstance("i2", "web-a", "10.0.0.2", 80); i.TokenHash = nil; return i }()),
			wantErr: catalog.ErrBadCommand,
		},
		{name: "register bad status", cmd: register(withStatus(newInstance("i2", "web-a", "10.0.0.2", 80), "up")), wantErr: catalog.ErrBadCommand},
		{name: "register empty status", cmd: register(withStatus(newInstance("i2", "web-a", "10.0.0.2", 80), "")), wantErr: catalog.ErrBadCommand},
		{
			name: "register critical",
			cmd:  register(withStatus(newInstance("i2", "web-a", "10.0.0.2", 80), catalog.StatusCritical)),
		},

		{
			name: "deregister",
			cmd:  catalog.Command{Op: catalog.OpDeregister, ID: "i1"},
			check: func(t *testing.T, c *catalog.Catalog) {
				if _, ok := c.Instance("i1"); ok {
					t.Error("i1 still present")
				}
				if got := viewIDs(t, c, "web-a"); len(got) != 0 {
					t.Errorf("view = %v, want empty", got)
				}
			},
		},
		{name: "deregister unknown", cmd: catalog.Command{Op: catalog.OpDeregister, ID: "nope"}, wantErr: catalog.ErrNotFound},
		{name: "deregister twice", setup: []catalog.Command{{Op: catalog.OpDeregister, ID: "i1"}}, cmd: catalog.Command{Op: catalog.OpDeregister, ID: "i1"}, wantErr: catalog.ErrNotFound},
		{
			name: "deregister if status holds",
			cmd:  catalog.Command{Op: catalog.OpDeregister, ID: "i1", IfStatus: catalog.StatusPassing},
		},
		{
			name:    "deregister if status differs",
			cmd:     catalog.Command{Op: catalog.OpDeregister, ID: "i1", IfStatus: catalog.StatusCritical},
			wantErr: catalog.ErrConflict,
			check: func(t *testing.T, c *catalog.Catalog) {
				if _, ok := c.Instance("i1"); !ok {
					t.Error("conditional deregister removed i1 despite conflict")
				}
			},
		},

		{
			name: "drain",
			cmd:  catalog.Command{Op: catalog.OpDrain, ID: "i1"},
			check: func(t *testing.T, c *catalog.Catalog) {
				inst, _ := c.Instance("i1")
				if !inst.Draining || inst.Status != catalog.StatusPassing || inst.ModifyIndex != 3 {
					t.Errorf("i1 = draining %v status %q modify %d, want draining passing 3", inst.Draining, inst.Status, inst.ModifyIndex)
				}
			},
		},
		{name: "drain unknown", cmd: catalog.Command{Op: catalog.OpDrain, ID: "nope"}, wantErr: catalog.ErrNotFound},
		{
			// Log entries written before draining became a flag still drain.
			name: "legacy set status draining",
			cmd:  catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusDraining},
			check: func(t *testing.T, c *catalog.Catalog) {
				inst, _ := c.Instance("i1")
				if !inst.Draining || inst.Status != catalog.StatusPassing {
					t.Errorf("i1 = draining %v status %q, want draining, passing", inst.Draining, inst.Status)
				}
			},
		},
		{name: "conditional set status draining is not a status", cmd: catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusDraining, IfStatus: catalog.StatusPassing}, wantErr: catalog.ErrBadCommand},
		{
			name: "set status",
			cmd:  catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusCritical},
			check: func(t *testing.T, c *catalog.Catalog) {
				inst, _ := c.Instance("i1")
				if inst.Status != catalog.StatusCritical || inst.CreateIndex != 2 || inst.ModifyIndex != 3 {
					t.Errorf("i1 = status %q create %d modify %d, want critical 2 3", inst.Status, inst.CreateIndex, inst.ModifyIndex)
				}
				if v := c.Service("web-a"); v.Instances[0] != inst {
					t.Error("service view does not hold the new instance value")
				}
			},
		},
		{name: "set status unknown", cmd: catalog.Command{Op: catalog.OpSetStatus, ID: "nope", Status: catalog.StatusCritical}, wantErr: catalog.ErrNotFound},
		{name: "set status bad status", cmd: catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: "down"}, wantErr: catalog.ErrBadCommand},
		{name: "set status empty status", cmd: catalog.Command{Op: catalog.OpSetStatus, ID: "i1"}, wantErr: catalog.ErrBadCommand},
		{
			name: "set status if status holds",
			cmd:  catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing},
			check: func(t *testing.T, c *catalog.Catalog) {
				if inst, _ := c.Instance("i1"); inst.Status != catalog.StatusCritical {
					t.Errorf("status = %q", inst.Status)
				}
			},
		},
		{
			name:    "set status if status differs",
			cmd:     catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical},
			wantErr: catalog.ErrConflict,
		},
		{
			name: "set status to current status is a no-op",
			cmd:  catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusPassing},
			check: func(t *testing.T, c *catalog.Catalog) {
				if inst, _ := c.Instance("i1"); inst.ModifyIndex != 2 {
					t.Errorf("ModifyIndex = %d, want 2 (unchanged)", inst.ModifyIndex)
				}
				if v := c.Service("web-a"); v.Index != 2 {
					t.Errorf("service index = %d, want 2 (unchanged)", v.Index)
				}
			},
		},

		{
			name: "create key",
			cmd:  createKey(newKey("k2", "db")),
			check: func(t *testing.T, c *catalog.Catalog) {
				k, ok := c.KeyBySecretHash(catalog.HashSecret("secret-k2"))
				if !ok || k.ID != "k2" || k.CreateIndex != 3 {
					t.Fatalf("KeyBySecretHash = %+v, %v", k, ok)
				}
				if got := c.Keys(); len(got) != 2 || got[0].ID != "k1" || got[1].ID != "k2" {
					t.Errorf("Keys() not sorted by ID: %v", got)
				}
				if res := c.Apply(4, register(withKey(newInstance("i2", "db", "10.0.0.2", 80), "k2"))); res.Err != nil {
					t.Errorf("register with new key: %v", res.Err)
				}
			},
		},
		{name: "create key duplicate ID", cmd: createKey(&catalog.Key{ID: "k1", SecretHash: catalog.HashSecret("other"), Services: []string{"x"}}), wantErr: catalog.ErrExists},
		{name: "create key duplicate secret", cmd: createKey(&catalog.Key{ID: "k2", SecretHash: catalog.HashSecret("secret-k1"), Services: []string{"x"}}), wantErr: catalog.ErrExists},
		{name: "create key nil", cmd: catalog.Command{Op: catalog.OpCreateKey}, wantErr: catalog.ErrBadCommand},
		{name: "create key empty ID", cmd: createKey(newKey("", "x")), wantErr: catalog.ErrBadCommand},
		{name: "create key no services", cmd: createKey(newKey("k2")), wantErr: catalog.ErrBadCommand},
		{name: "create key short hash", cmd: createKey(&catalog.Key{ID: "k2", SecretHash: []byte("short"), Services: []string{"x"}}), wantErr: catalog.ErrBadCommand},

		{
			name: "revoke key",
			cmd:  catalog.Command{Op: catalog.OpRevokeKey, ID: "k1"},
			check: func(t *testing.T, c *catalog.Catalog) {
				if _, ok := c.KeyBySecretHash(catalog.HashSecret("secret-k1")); ok {
					t.Error("revoked key still authenticates")
				}
				if len(c.Keys()) != 0 {
					t.Errorf("Keys() = %v, want none", c.Keys())
				}
				// Revocation stops new registrations, not existing instances.
				if _, ok := c.Instance("i1"); !ok {
					t.Error("revocation removed an existing instance")
				}
				// The ID and secret may be used again.
				if res := c.Apply(4, createKey(newKey("k1", "x"))); res.Err != nil {
					t.Errorf("re-create revoked key: %v", res.Err)
				}
			},
		},
		{name: "revoke unknown key", cmd: catalog.Command{Op: catalog.OpRevokeKey, ID: "nope"}, wantErr: catalog.ErrNotFound},

		{name: "unknown op marked skippable", cmd: catalog.Command{Op: "explode", ID: "i1", SkipIfUnknown: true}, wantErr: catalog.ErrSkipped},
		{name: "empty op", cmd: catalog.Command{}, wantErr: catalog.ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newReplica()
			l.must(t, base...)
			l.must(t, tt.setup...)
			before := snapshotJSON(t, l.c)
			res := l.apply(tt.cmd)
			if !errors.Is(res.Err, tt.wantErr) || (tt.wantErr == nil && res.Err != nil) {
				t.Fatalf("Apply(%s) err = %v, want %v", tt.cmd.Op, res.Err, tt.wantErr)
			}
			if res.Index != l.idx {
				t.Errorf("Result.Index = %d, want %d", res.Index, l.idx)
			}
			if res.Replaced != tt.wantReplaced {
				t.Errorf("Result.Replaced = %q, want %q", res.Replaced, tt.wantReplaced)
			}
			if got := l.c.Index(); got != l.idx {
				t.Errorf("Index() = %d, want %d (failed commands still advance the applied index)", got, l.idx)
			}
			if res.Err != nil {
				// A failed command changes nothing but the applied index.
				after := snapshotJSON(t, l.c)
				if want := bytes.Replace(before, fmt.Appendf(nil, `"index":%d`, l.idx-1), fmt.Appendf(nil, `"index":%d`, l.idx), 1); !bytes.Equal(after, want) {
					t.Errorf("failed command changed the catalog:\nbefore %s\nafter  %s", before, after)
				}
			}
			if tt.check != nil {
				tt.check(t, l.c)
			}
		})
	}
}

// TestCatalog_Apply_unsupported: a command this version cannot apply as
// its proposer meant it changes nothing, not even the applied index, and
// says so with ErrUnsupported, for the replica to stop. (An unknown op was
// ErrBadCommand before: applied nowhere here while a newer leader applied
// it, which is divergence once there are several voters.)
func TestCatalog_Apply_unsupported(t *testing.T) {
	for _, tt := range []struct {
		name string
		cmd  catalog.Command
	}{
		{"unknown op", catalog.Command{Op: "explode", ID: "i1"}},
		{"rules from the future", catalog.Command{Op: catalog.OpDeregister, ID: "i1", Rules: catalog.RulesMax + 1}},
		{"rules from the future on a skippable command", catalog.Command{Op: catalog.OpDeregister, ID: "i1", Rules: catalog.RulesMax + 1, SkipIfUnknown: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newReplica()
			l.must(t, createKey(newKey("k1", "web-*")), register(newInstance("i1", "web-a", "10.0.0.1", 80)))
			sub := l.c.Subscribe()
			defer sub.Close()
			before := snapshotJSON(t, l.c)
			res := l.c.Apply(3, tt.cmd)
			if !errors.Is(res.Err, catalog.ErrUnsupported) {
				t.Fatalf("Apply err = %v, want ErrUnsupported", res.Err)
			}
			if after := snapshotJSON(t, l.c); !bytes.Equal(after, before) {
				t.Errorf("unsupported command changed the catalog:\nbefore %s\nafter  %s", before, after)
			}
			if ch, ok := sub.Take(); ok {
				t.Errorf("unsupported command notified subscribers: %+v", ch)
			}
		})
	}
	if ops := catalog.New().Ops(); !slices.Contains(ops, catalog.OpDrain) || slices.Contains(ops, "explode") {
		t.Errorf("Ops() = %v disagrees with the dispatch table", ops)
	}
}

func TestCatalog_Apply_copiesInput(t *testing.T) {
	l := newReplica()
	k := newKey("k1", "web-*")
	inst := newInstance("i1", "web-a", "10.0.0.1", 80)
	l.must(t, createKey(k), register(inst))

	// The caller's command values may be reused after Apply.
	k.Services[0] = "changed"
	inst.Tags[0] = "changed"
	inst.Meta["zone"] = "changed"
	inst.Status = catalog.StatusCritical

	if got := l.c.Keys()[0].Services; !slices.Equal(got, []string{"web-*"}) {
		t.Errorf("stored key services = %v", got)
	}
	stored, _ := l.c.Instance("i1")
	if stored == inst {
		t.Fatal("catalog stored the caller's pointer")
	}
	if stored.Tags[0] != "v1" || stored.Meta["zone"] != "a" || stored.Status != catalog.StatusPassing {
		t.Errorf("stored instance follows caller's changes: %+v", stored)
	}
}

func TestCatalog_ServiceIndex(t *testing.T) {
	l := newReplica()
	l.must(t,
		createKey(newKey("k1", "*")),                       // 1
		register(newInstance("a1", "a", "10.0.0.1", 80)),   // 2
		register(newInstance("b1", "b", "10.0.0.2", 80)),   // 3
		register(newInstance("a2", "a", "10.0.0.3", 80)),   // 4
		createKey(newKey("k2", "x")),                       // 5: touches no service
		catalog.Command{Op: catalog.OpRevokeKey, ID: "k2"}, // 6
	)
	type want map[string]uint64
	steps := []struct {
		name    string
		cmd     *catalog.Command // nil: just check
		wantErr error
		want    want
	}{
		{name: "after registrations", want: want{"a": 4, "b": 3}},
		{name: "set status", cmd: &catalog.Command{Op: catalog.OpSetStatus, ID: "a1", Status: catalog.StatusCritical}, want: want{"a": 7, "b": 3}},
		{name: "no-op set status", cmd: &catalog.Command{Op: catalog.OpSetStatus, ID: "a1", Status: catalog.StatusCritical}, want: want{"a": 7, "b": 3}},
		{name: "failed command", cmd: &catalog.Command{Op: catalog.OpDeregister, ID: "a1", IfStatus: catalog.StatusPassing}, wantErr: catalog.ErrConflict, want: want{"a": 7, "b": 3}},
		{name: "refused registration", cmd: &catalog.Command{Op: catalog.OpRegister, Instance: newInstance("a1", "a", "10.0.0.9", 80)}, wantErr: catalog.ErrExists, want: want{"a": 7, "b": 3}},
		{name: "deregister one", cmd: &catalog.Command{Op: catalog.OpDeregister, ID: "a1"}, want: want{"a": 11, "b": 3}},
		{name: "replace", cmd: &catalog.Command{Op: catalog.OpRegister, Instance: newInstance("b2", "b", "10.0.0.2", 80)}, want: want{"a": 11, "b": 12}},
		{name: "last instance leaves", cmd: &catalog.Command{Op: catalog.OpDeregister, ID: "a2"}, want: want{"a": 13, "b": 12}},
		{name: "service comes back", cmd: &catalog.Command{Op: catalog.OpRegister, Instance: newInstance("a3", "a", "10.0.0.1", 80)}, want: want{"a": 14, "b": 12}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.cmd != nil {
				if res := l.apply(*st.cmd); !errors.Is(res.Err, st.wantErr) || (st.wantErr == nil && res.Err != nil) {
					t.Fatalf("apply: %v, want %v", res.Err, st.wantErr)
				}
			}
			for name, idx := range st.want {
				v := l.c.Service(name)
				if v == nil {
					t.Fatalf("Service(%q) = nil", name)
				}
				if v.Index != idx {
					t.Errorf("Service(%q).Index = %d, want %d", name, v.Index, idx)
				}
				if v.Name != name {
					t.Errorf("Service(%q).Name = %q", name, v.Name)
				}
			}
			var names []string
			for _, v := range l.c.Services() {
				names = append(names, v.Name)
			}
			if !slices.Equal(names, []string{"a", "b"}) {
				t.Errorf("Services() = %v, want [a b]", names)
			}
		})
	}
	if v := l.c.Service("never"); v != nil {
		t.Errorf("Service(never) = %+v, want nil", v)
	}
	if v := l.c.Service("a"); v == nil || len(v.Instances) != 1 {
		t.Errorf("Service(a) = %+v, want one instance", v)
	}
}

func TestCatalog_ServiceView(t *testing.T) {
	l := newReplica()
	l.must(t,
		createKey(newKey("k1", "web")),
		register(newInstance("i2", "web", "10.0.0.2", 80)),
		register(newInstance("i1", "web", "10.0.0.1", 80)),
		register(newInstance("i3", "web", "10.0.0.3", 80)),
	)
	old := l.c.Service("web")
	if got := viewIDs(t, l.c, "web"); !slices.Equal(got, []string{"i1", "i2", "i3"}) {
		t.Fatalf("view not sorted by ID: %v", got)
	}
	oldInstances := slices.Clone(old.Instances)
	oldCopy := make([]catalog.Instance, len(old.Instances))
	for i, inst := range old.Instances {
		oldCopy[i] = *inst
	}
	oldIndex := old.Index

	l.must(t,
		catalog.Command{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusCritical},
		catalog.Command{Op: catalog.OpDeregister, ID: "i2"},
		register(newInstance("i4", "web", "10.0.0.3", 80)), // replaces i3
		register(newInstance("i0", "web", "10.0.0.9", 80)),
	)

	if old.Index != oldIndex {
		t.Errorf("old view index changed: %d → %d", oldIndex, old.Index)
	}
	if len(old.Instances) != len(oldInstances) {
		t.Fatalf("old view has %d instances, had %d", len(old.Instances), len(oldInstances))
	}
	for i := range old.Instances {
		if old.Instances[i] != oldInstances[i] {
			t.Errorf("old view slot %d now points at %s", i, old.Instances[i].ID)
		}
		if !reflect.DeepEqual(*old.Instances[i], oldCopy[i]) {
			t.Errorf("instance %s in old view was modified:\n got %+v\nwant %+v", oldCopy[i].ID, *old.Instances[i], oldCopy[i])
		}
	}
	if got := viewIDs(t, l.c, "web"); !slices.Equal(got, []string{"i0", "i1", "i4"}) {
		t.Errorf("new view = %v, want [i0 i1 i4]", got)
	}
	if cur := l.c.Service("web"); cur == old {
		t.Error("Service returned the same view pointer after changes")
	}
}

// populate applies a command sequence that exercises every op and leaves a
// service with no instances, so that snapshots carry every kind of state.
func populate(tb testing.TB, l *replica) {
	tb.Helper()
	withTags := newInstance("c1", "cache", "192.168.1.5", 6379)
	withTags.Tags = nil
	withTags.Meta = map[string]string{"a": "1", "b": "2", "c": "3"}
	withTags.RegisteredAt = time.Date(2025, 6, 1, 0, 0, 0, 0, time.FixedZone("x", 3600))
	l.must(tb,
		createKey(newKey("k1", "web-*", "cache", "gone")),
		createKey(newKey("k2", "*")),
		createKey(newKey("k3", "x")),
		register(newInstance("w1", "web-a", "10.0.0.1", 80)),
		register(newInstance("w2", "web-a", "10.0.0.2", 80)),
		register(newInstance("w3", "web-b", "::1", 8080)),
		register(withTags),
		register(newInstance("g1", "gone", "10.0.0.3", 80)),
		catalog.Command{Op: catalog.OpDrain, ID: "w2"},
		catalog.Command{Op: catalog.OpDeregister, ID: "g1"},
		catalog.Command{Op: catalog.OpRevokeKey, ID: "k3"},
		register(newInstance("w4", "web-a", "10.0.0.1", 80)), // replaces w1
	)
	l.apply(catalog.Command{Op: catalog.OpDeregister, ID: "nope"}) // failed, still advances the index
}

func TestSnapshot_WriteTo(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		src := newReplica()
		populate(t, src)
		orig := snapshotJSON(t, src.c)

		dst := catalog.New()
		if err := dst.Restore(bytes.NewReader(orig)); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if got := snapshotJSON(t, dst); !bytes.Equal(got, orig) {
			t.Fatalf("restored snapshot differs:\n got %s\nwant %s", got, orig)
		}
		if dst.Index() != src.c.Index() {
			t.Errorf("Index() = %d, want %d", dst.Index(), src.c.Index())
		}
		for _, sv := range src.c.Services() {
			dv := dst.Service(sv.Name)
			if dv == nil || dv.Index != sv.Index || len(dv.Instances) != len(sv.Instances) {
				t.Errorf("Service(%q) = %+v, want %+v", sv.Name, dv, sv)
			}
		}
		if v := dst.Service("gone"); v == nil || len(v.Instances) != 0 {
			t.Errorf("empty service view not restored: %+v", v)
		}
		if k, ok := dst.KeyBySecretHash(catalog.HashSecret("secret-k2")); !ok || k.ID != "k2" {
			t.Error("restored key does not authenticate")
		}
		if inst, ok := dst.Instance("w4"); !ok || !inst.TokenMatches("token-w4") {
			t.Error("restored instance lost its token hash")
		}

		// The restored catalog goes on exactly like the original.
		next := []catalog.Command{
			register(newInstance("w5", "web-b", "::1", 8080)), // replaces w3
			{Op: catalog.OpSetStatus, ID: "c1", Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing},
			register(newInstance("z1", "web-z", "10.0.0.9", 80)),
		}
		for _, cmd := range next {
			idx := src.c.Index() + 1
			r1, r2 := src.c.Apply(idx, cmd), dst.Apply(idx, cmd)
			if resultString(r1) != resultString(r2) {
				t.Errorf("Apply %s: original %+v, restored %+v", cmd.Op, r1, r2)
			}
		}
		if a, b := snapshotJSON(t, src.c), snapshotJSON(t, dst); !bytes.Equal(a, b) {
			t.Errorf("catalogs diverged after restore:\n%s\n%s", a, b)
		}
	})

	t.Run("point in time", func(t *testing.T) {
		l := newReplica()
		populate(t, l)
		want := snapshotJSON(t, l.c)
		snap := l.c.Snapshot()
		l.must(t,
			register(newInstance("late", "web-a", "10.0.0.7", 80)),
			catalog.Command{Op: catalog.OpDeregister, ID: "w2"},
			catalog.Command{Op: catalog.OpRevokeKey, ID: "k1"},
		)
		var buf bytes.Buffer
		if _, err := snap.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("snapshot written after later changes differs:\n got %s\nwant %s", buf.Bytes(), want)
		}
	})

	t.Run("write error", func(t *testing.T) {
		l := newReplica()
		populate(t, l)
		if _, err := l.c.Snapshot().WriteTo(failWriter{}); err == nil {
			t.Error("WriteTo to a failing writer returned nil")
		}
	})
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// Base64 of two distinct 32-byte hashes, for hand-written snapshots.
const (
	zeroHash = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	oneHash  = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
)

// instJSON returns a snapshot instance entry.
func instJSON(id, service, tokenHash, status string) string {
	return fmt.Sprintf(`{"id":%q,"service":%q,"address":"10.0.0.1","port":80,"scheme":"http","token_hash":%q,"status":%q}`, id, service, tokenHash, status)
}

func TestCatalog_Restore(t *testing.T) {
	t.Run("replaces existing state", func(t *testing.T) {
		src := newReplica()
		src.must(t, createKey(newKey("only", "solo")), register(func() *catalog.Instance {
			i := newInstance("s1", "solo", "10.0.0.1", 80)
			i.KeyID = "only"
			return i
		}()))
		dst := newReplica()
		populate(t, dst)
		if err := dst.c.Restore(bytes.NewReader(snapshotJSON(t, src.c))); err != nil {
			t.Fatal(err)
		}
		if got, want := snapshotJSON(t, dst.c), snapshotJSON(t, src.c); !bytes.Equal(got, want) {
			t.Errorf("restore merged instead of replacing:\n got %s\nwant %s", got, want)
		}
		if dst.c.Service("web-a") != nil {
			t.Error("old service view survived restore")
		}
		if _, ok := dst.c.KeyBySecretHash(catalog.HashSecret("secret-k1")); ok {
			t.Error("old key survived restore")
		}
		// A registration at an address from the previous state replaces
		// nothing: the address index was replaced too.
		n1 := newInstance("n1", "web-a", "10.0.0.1", 80)
		dst.c.Apply(100, createKey(newKey("k9", "web-*")))
		n1.KeyID = "k9"
		if res := dst.c.Apply(101, register(n1)); res.Err != nil || res.Replaced != "" {
			t.Errorf("register after restore = %+v, want no replacement", res)
		}
	})

	t.Run("instance of a service without a view", func(t *testing.T) {
		in := `{"version":1,"index":7,"instances":[` + instJSON("a", "orphan", zeroHash, "passing") + `]}`
		c := catalog.New()
		if err := c.Restore(strings.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		v := c.Service("orphan")
		if v == nil || v.Index != 7 || len(v.Instances) != 1 {
			t.Errorf("Service(orphan) = %+v, want a view at the snapshot index holding a", v)
		}
	})

	bad := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"not json", "snapshot"},
		{"truncated", `{"version":1,"index":3,"instances":[`},
		{"null", "null"},
		{"array", "[]"},
		{"no version", `{"index":3}`},
		{"future version", `{"version":2,"index":3}`},
		{"wrong type", `{"version":1,"index":"three"}`},
		{"negative index", `{"version":1,"index":-1}`},
		// Decodable, but not a state Apply could have produced.
		{"null instance", `{"version":1,"index":3,"instances":[null]}`},
		{"null key", `{"version":1,"index":3,"keys":[null]}`},
		{"instance without ID", `{"version":1,"instances":[` + instJSON("", "s", zeroHash, "passing") + `]}`},
		{"instance with bad service", `{"version":1,"instances":[` + instJSON("a", "S", zeroHash, "passing") + `]}`},
		{"instance with short token hash", `{"version":1,"instances":[` + instJSON("a", "s", "AAAA", "passing") + `]}`},
		{"instance with bad status", `{"version":1,"instances":[` + instJSON("a", "s", zeroHash, "up") + `]}`},
		{"duplicate instance IDs", `{"version":1,"instances":[` + instJSON("a", "s", zeroHash, "passing") + `,` + instJSON("a", "t", zeroHash, "passing") + `]}`},
		{"key without ID", `{"version":1,"keys":[{"secret_hash":"` + zeroHash + `","services":["x"]}]}`},
		{"key with short hash", `{"version":1,"keys":[{"id":"k","secret_hash":"AAAA","services":["x"]}]}`},
		{"duplicate key IDs", `{"version":1,"keys":[{"id":"k","secret_hash":"` + zeroHash + `"},{"id":"k","secret_hash":"` + oneHash + `"}]}`},
		{"duplicate key secrets", `{"version":1,"keys":[{"id":"k","secret_hash":"` + zeroHash + `"},{"id":"k2","secret_hash":"` + zeroHash + `"}]}`},
		{"bad service name", `{"version":1,"services":{"Bad":1}}`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			l := newReplica()
			populate(t, l)
			before := snapshotJSON(t, l.c)
			sub := l.c.Subscribe()
			defer sub.Close()
			var err error
			if !noPanic(t, "Restore", func() { err = l.c.Restore(strings.NewReader(tt.in)) }) {
				return // the catalog may still be locked
			}
			if err == nil {
				t.Fatalf("Restore(%q) = nil, want error", tt.in)
			}
			if got := snapshotJSON(t, l.c); !bytes.Equal(got, before) {
				t.Errorf("failed Restore changed the catalog:\n got %s\nwant %s", got, before)
			}
			if ch, ok := sub.Take(); ok {
				t.Errorf("a failed Restore notified subscribers: %+v", ch)
			}
		})
	}
}

// script returns a pseudo-random but fixed command sequence over a small
// space of IDs, services and addresses, so that replacements, conflicts
// and failures all occur.
func script(seed uint64, n int) []catalog.Command {
	r := rand.New(rand.NewPCG(seed, seed))
	services := []string{"a", "b", "c-1", "web_x"}
	statuses := []catalog.Status{catalog.StatusPassing, catalog.StatusCritical, "bogus"}
	id := func(prefix string) string { return fmt.Sprintf("%s%d", prefix, r.IntN(12)) }
	cmds := []catalog.Command{createKey(newKey("k1", "*"))}
	for range n {
		switch r.IntN(6) {
		case 0, 1:
			inst := newInstance(id("i"), services[r.IntN(len(services))], fmt.Sprintf("10.0.0.%d", r.IntN(4)), 80+r.IntN(2))
			inst.KeyID = id("k")
			if r.IntN(3) > 0 {
				inst.KeyID = "k1"
			}
			inst.Status = statuses[r.IntN(len(statuses))]
			inst.RegisteredAt = t0.Add(time.Duration(r.IntN(1000)) * time.Second)
			cmds = append(cmds, register(inst))
		case 2:
			cmds = append(cmds, catalog.Command{Op: catalog.OpSetStatus, ID: id("i"), Status: statuses[r.IntN(3)], IfStatus: []catalog.Status{"", catalog.StatusPassing}[r.IntN(2)]})
		case 3:
			cmds = append(cmds, catalog.Command{Op: catalog.OpDeregister, ID: id("i"), IfStatus: []catalog.Status{"", catalog.StatusCritical}[r.IntN(2)]})
		case 4:
			k := newKey(id("k"), services[r.IntN(len(services))], "web*")
			if r.IntN(2) == 0 {
				cmds = append(cmds, createKey(k))
				break
			}
			// A token: of a role that may not register, or an enrolment
			// key with an expiry and a callback mode.
			switch k.Role = catalog.Roles()[r.IntN(4)]; k.Role {
			case catalog.RoleAdmin:
				k.Services = []string{"*"}
			case catalog.RoleRegister:
				k.ExpiresAt, k.CallbackTLS = t0.Add(time.Hour), catalog.CallbackTLSAny
			}
			cmds = append(cmds, createToken(k))
		case 5:
			cmds = append(cmds, catalog.Command{Op: catalog.OpRevokeKey, ID: id("k")})
		}
	}
	return cmds
}

func TestCatalog_Apply_deterministic(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 42} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			cmds := script(seed, 400)
			direct, viaLog := catalog.New(), catalog.New()
			var results [2][]catalog.Result
			for i, cmd := range cmds {
				idx := uint64(i + 1)
				results[0] = append(results[0], direct.Apply(idx, cmd))
				// The second replica sees the command as Raft carries it.
				b, err := catalog.EncodeCommand(cmd)
				if err != nil {
					t.Fatal(err)
				}
				dec, err := catalog.DecodeCommand(b)
				if err != nil {
					t.Fatal(err)
				}
				results[1] = append(results[1], viaLog.Apply(idx, dec))
			}
			for i := range results[0] {
				if !reflect.DeepEqual(results[0][i], results[1][i]) {
					t.Fatalf("command %d (%s): results differ: %+v vs %+v", i, cmds[i].Op, results[0][i], results[1][i])
				}
			}
			a, b := snapshotJSON(t, direct), snapshotJSON(t, viaLog)
			if !bytes.Equal(a, b) {
				t.Fatalf("snapshots differ:\n%s\n%s", a, b)
			}
			// Taking the snapshot again gives the same bytes: no map order leaks.
			for range 5 {
				if again := snapshotJSON(t, direct); !bytes.Equal(again, a) {
					t.Fatal("two snapshots of one catalog differ")
				}
			}
			if len(direct.Instances()) == 0 {
				t.Error("script left no instances; it exercises too little")
			}
		})
	}
}

// TestCatalog_Subscribe: every subscriber learns, after each applied
// change, its index and the services it touched; failed commands and
// failed restores notify no one; a Restore means "everything".
func TestCatalog_Subscribe(t *testing.T) {
	type call struct {
		index    uint64
		services []string
		all      bool
	}
	l := newReplica()
	subs := []*catalog.Subscription{l.c.Subscribe(), l.c.Subscribe()}
	take := func(t *testing.T, s *catalog.Subscription) []call {
		t.Helper()
		ch, ok := s.Take()
		if !ok {
			return nil
		}
		select {
		case <-s.Ready():
			t.Error("Ready still signalled after Take")
		default:
		}
		// Key changes touch no service; nil and empty are treated alike here.
		if len(ch.Services) == 0 {
			ch.Services = nil
		}
		return []call{{ch.Index, ch.Services, ch.All}}
	}
	steps := []struct {
		name string
		cmd  catalog.Command
		want []call // the change this step adds
	}{
		{"create key", createKey(newKey("k1", "*")), []call{{1, nil, false}}},
		{"register", register(newInstance("a1", "a", "10.0.0.1", 80)), []call{{2, []string{"a"}, false}}},
		{"register other service", register(newInstance("b1", "b", "10.0.0.1", 80)), []call{{3, []string{"b"}, false}}},
		{"replace", register(newInstance("a2", "a", "10.0.0.1", 80)), []call{{4, []string{"a"}, false}}},
		{"set status", catalog.Command{Op: catalog.OpSetStatus, ID: "a2", Status: catalog.StatusCritical}, []call{{5, []string{"a"}, false}}},
		{"failed conditional", catalog.Command{Op: catalog.OpDeregister, ID: "a2", IfStatus: catalog.StatusPassing}, nil},
		{"failed register", register(newInstance("a2", "a", "10.0.0.1", 80)), nil},
		{"unknown command", catalog.Command{Op: "nope"}, nil},
		{"deregister", catalog.Command{Op: catalog.OpDeregister, ID: "b1"}, []call{{9, []string{"b"}, false}}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			l.apply(st.cmd)
			for i, s := range subs {
				if st.want != nil {
					select {
					case <-s.Ready():
					default:
						t.Errorf("subscriber %d: Ready not signalled", i)
					}
				}
				if got := take(t, s); !reflect.DeepEqual(got, st.want) {
					t.Errorf("subscriber %d: change = %+v, want %+v", i, got, st.want)
				}
			}
		})
	}
	t.Run("restore", func(t *testing.T) {
		snap := snapshotJSON(t, l.c)
		if err := l.c.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatal(err)
		}
		for i, s := range subs {
			if got, want := take(t, s), []call{{9, nil, true}}; !reflect.DeepEqual(got, want) {
				t.Errorf("subscriber %d: change = %+v, want %+v", i, got, want)
			}
		}
	})
	t.Run("coalesced", func(t *testing.T) {
		l.must(t,
			register(newInstance("c1", "c", "10.0.0.3", 80)),
			register(newInstance("b2", "b", "10.0.0.3", 80)),
			catalog.Command{Op: catalog.OpDrain, ID: "c1"},
		)
		for i, s := range subs {
			if got, want := take(t, s), []call{{l.idx, []string{"b", "c"}, false}}; !reflect.DeepEqual(got, want) {
				t.Errorf("subscriber %d: change = %+v, want %+v", i, got, want)
			}
		}
	})
	t.Run("closed", func(t *testing.T) {
		subs[1].Close()
		l.must(t, catalog.Command{Op: catalog.OpDeregister, ID: "c1"})
		if got := take(t, subs[1]); got != nil {
			t.Errorf("closed subscriber got %+v", got)
		}
		if got := take(t, subs[0]); len(got) != 1 || got[0].index != l.idx {
			t.Errorf("open subscriber got %+v", got)
		}
	})
	t.Run("a subscriber that never takes does not block Apply", func(t *testing.T) {
		idle := l.c.Subscribe()
		defer idle.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range 5000 {
				l.apply(catalog.Command{Op: catalog.OpSetStatus, ID: "a2", Status: []catalog.Status{catalog.StatusPassing, catalog.StatusCritical}[i%2]})
			}
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("Apply blocked on a subscriber that never takes")
		}
		if got := take(t, idle); len(got) != 1 || got[0].index != l.idx || !reflect.DeepEqual(got[0].services, []string{"a"}) {
			t.Errorf("idle subscriber's coalesced change = %+v, want index %d, services [a]", got, l.idx)
		}
	})
}

func TestCatalog_concurrentReads(t *testing.T) {
	// Readers run alongside Apply, as HTTP handlers do alongside the FSM
	// goroutine; -race checks the locking.
	l := newReplica()
	l.must(t, createKey(newKey("k1", "*")))
	cmds := script(7, 300)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				for _, v := range l.c.Services() {
					for _, inst := range v.Instances {
						_ = inst.Status
					}
				}
				_ = l.c.Instances()
				_ = l.c.Keys()
				_, _ = l.c.KeyBySecretHash(catalog.HashSecret("secret-k1"))
				_ = l.c.Index()
				var buf bytes.Buffer
				_, _ = l.c.Snapshot().WriteTo(&buf)
			}
		}()
	}
	for _, cmd := range cmds {
		l.apply(cmd)
	}
	close(done)
	wg.Wait()
}

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"web", "web", true},
		{"web", "web2", false},
		{"web", "we", false},
		{"web", "", false},
		{"*", "", true},
		{"*", "anything", true},
		{"**", "x", true},
		{"web-*", "web-", true},
		{"web-*", "web-a", true},
		{"web-*", "web", false},
		{"web-*", "api-web-a", false},
		{"*-db", "users-db", true},
		{"*-db", "-db", true},
		{"*-db", "users-db2", false},
		{"a*b", "ab", true},
		{"a*b", "axxb", true},
		{"a*b", "axxbc", false},
		{"a*a", "a", false}, // prefix and suffix must not overlap
		{"a*a", "aa", true},
		{"ab*ba", "aba", false},
		{"ab*ba", "abba", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "acb", false},
		{"*a*a", "aa", true},
		{"*a*a", "a", false},
		{"*ab*ab", "abab", true},
		{"*ab*ab", "abxab", true},
		{"*ab*ab", "aab", false},
		{"*x*", "abc", false},
		{"*x*", "axc", true},
		{"s*", "S", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"/"+tt.name, func(t *testing.T) {
			if got := catalog.MatchPattern(tt.pattern, tt.name); got != tt.want {
				t.Errorf("MatchPattern(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
			}
		})
	}
}

func TestKey_Allows(t *testing.T) {
	k := newKey("k", "web-*", "api")
	for name, want := range map[string]bool{"web-a": true, "api": true, "apis": false, "db": false, "": false} {
		if got := k.Allows(name); got != want {
			t.Errorf("Allows(%q) = %v, want %v", name, got, want)
		}
	}
	if (&catalog.Key{}).Allows("x") {
		t.Error("key without patterns allows a service")
	}
}

func TestValidServiceName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"a", true},
		{"fetch_url", true},
		{"web-1", true},
		{"0", true},
		{strings.Repeat("a", catalog.MaxNameLen), true},
		{strings.Repeat("a", catalog.MaxNameLen+1), false},
		{"", false},
		{"Web", false},
		{"web.a", false},
		{"web a", false},
		{"web*", false},
		{"wéb", false},
		{"web/a", false},
		{"web\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := catalog.ValidServiceName(tt.name); got != tt.want {
				t.Errorf("ValidServiceName(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestValidPattern(t *testing.T) {
	tests := []struct {
		pattern string
		want    bool
	}{
		{"web", true},
		{"*", true},
		{"web-*", true},
		{"*-db*", true},
		{strings.Repeat("*", catalog.MaxNameLen), true},
		{strings.Repeat("a", catalog.MaxNameLen+1), false},
		{"", false},
		{"Web-*", false},
		{"web.*", false},
		{"web?", false},
		{"web *", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			if got := catalog.ValidPattern(tt.pattern); got != tt.want {
				t.Errorf("ValidPattern(%q) = %v, want %v", tt.pattern, got, tt.want)
			}
		})
	}
}

// commands returns one complete command of every op.
func commands() []catalog.Command {
	return []catalog.Command{
		register(newInstance("i1", "web-a", "10.0.0.1", 80)),
		{Op: catalog.OpDeregister, ID: "i1", IfStatus: catalog.StatusCritical, Reason: "expired"},
		{Op: catalog.OpSetStatus, ID: "i1", Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing},
		createKey(newKey("k1", "web-*", "api")),
		{Op: catalog.OpRevokeKey, ID: "k1"},
		createToken(withCallbackTLS(withExpiry(newToken("t1", catalog.RoleRegister, "web-*"), t0.Add(time.Hour)), catalog.CallbackTLSAny)),
		{},
	}
}

func TestInstance_TokenMatches(t *testing.T) {
	inst := newInstance("i1", "a", "10.0.0.1", 80)
	for tok, want := range map[string]bool{"token-i1": true, "token-i2": false, "": false, "token-i1 ": false} {
		if got := inst.TokenMatches(tok); got != want {
			t.Errorf("TokenMatches(%q) = %v, want %v", tok, got, want)
		}
	}
	if (&catalog.Instance{}).TokenMatches("") {
		t.Error("instance without a token hash matches the empty token")
	}
}

func TestInstance_HasTags(t *testing.T) {
	inst := newInstance("i1", "a", "10.0.0.1", 80) // tags v1, blue
	tests := []struct {
		want []string
		ok   bool
	}{
		{nil, true},
		{[]string{"v1"}, true},
		{[]string{"blue", "v1"}, true},
		{[]string{"v2"}, false},
		{[]string{"v1", "v2"}, false},
	}
	for _, tt := range tests {
		if got := inst.HasTags(tt.want); got != tt.ok {
			t.Errorf("HasTags(%q) = %v, want %v", tt.want, got, tt.ok)
		}
	}
}

func TestInstance_HasMeta(t *testing.T) {
	inst := newInstance("i1", "a", "10.0.0.1", 80)
	inst.Meta = map[string]string{"zone": "a", "empty": "", "url": "http://x:1"}
	tests := []struct {
		want []string
		ok   bool
	}{
		{nil, true},
		{[]string{"zone:a"}, true},
		{[]string{"zone:b"}, false},
		{[]string{"zone"}, false}, // no colon: value "" differs from "a"
		{[]string{"empty:"}, true},
		{[]string{"empty"}, true},
		{[]string{"missing:"}, false},
		{[]string{"url:http://x:1"}, true}, // only the first colon splits
		{[]string{"zone:a", "url:http://x:1"}, true},
		{[]string{"zone:a", "zone:b"}, false},
	}
	for _, tt := range tests {
		if got := inst.HasMeta(tt.want); got != tt.ok {
			t.Errorf("HasMeta(%q) = %v, want %v", tt.want, got, tt.ok)
		}
	}
}

func TestHashSecret(t *testing.T) {
	// SHA-256("abc"), FIPS 180-2 test vector.
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := hex.EncodeToString(catalog.HashSecret("abc")); got != want {
		t.Errorf("HashSecret(abc) = %s, want %s", got, want)
	}
}

// TestCatalog_Restore_legacyDraining: a snapshot written when draining was
// a status restores as a passing instance with the drain flag.
func TestCatalog_Restore_legacyDraining(t *testing.T) {
	const snap = `{"version":1,"index":5,"instances":[{"id":"i1","service":"web","address":"10.0.0.1","port":80,"scheme":"http","ttl":1000000000,"deregister_after":10000000000,"token_hash":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","key_id":"k1","proof":"address+port","status":"draining","registered_at":"2026-01-01T00:00:00Z","create_index":2,"modify_index":3}],"keys":[],"services":{"web":3}}`
	c := catalog.New()
	if err := c.Restore(strings.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	inst, ok := c.Instance("i1")
	if !ok || !inst.Draining || inst.Status != catalog.StatusPassing {
		t.Fatalf("restored %+v", inst)
	}
}

// TestCatalog_Apply_protocolMix: instances of the tutorial protocol's key
// and of ordinary keys never share a service, in either order, though an
// endpoint may move from one to the other by re-registering.
func TestCatalog_Apply_protocolMix(t *testing.T) {
	c := catalog.New()
	idx := uint64(0)
	apply := func(cmd catalog.Command) error { idx++; return c.Apply(idx, cmd).Err }
	for _, id := range []string{"k1", catalog.SeedKeyID} {
		k := &catalog.Key{ID: id, SecretHash: make([]byte, 32), Services: []string{"*"}}
		k.SecretHash[0] = byte(len(id))
		if err := apply(catalog.Command{Op: catalog.OpCreateKey, Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	reg := func(id, service, key string, port int) error {
		return apply(catalog.Command{Op: catalog.OpRegister, Rules: catalog.RulesCurrent, Instance: &catalog.Instance{
			ID: id, Service: service, Address: "10.0.0.1", Port: port, Scheme: "http", TTL: time.Second,
			DeregisterAfter: time.Minute, TokenHash: make([]byte, 32), KeyID: key, Status: catalog.StatusPassing,
			Proof: catalog.ProofAddressPort}})
	}
	if err := reg("a", "payments", "k1", 80); err != nil {
		t.Fatal(err)
	}
	if err := reg("b", "payments", catalog.SeedKeyID, 81); !errors.Is(err, catalog.ErrProtocolMix) {
		t.Fatalf("seed joining a /v1 service: %v", err)
	}
	if err := reg("c", "legacy", catalog.SeedKeyID, 80); err != nil {
		t.Fatal(err)
	}
	if err := reg("d", "legacy", "k1", 81); !errors.Is(err, catalog.ErrProtocolMix) {
		t.Fatalf("/v1 joining a seed service: %v", err)
	}
	if err := reg("e", "legacy", "k1", 80); err != nil {
		t.Fatalf("the same endpoint moving to /v1: %v", err)
	}

	// Entries written before the rule replay as they were applied.
	if err := apply(catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
		ID: "f", Service: "payments", Address: "10.0.0.1", Port: 90, Scheme: "http", TTL: time.Second,
		DeregisterAfter: time.Minute, TokenHash: make([]byte, 32), KeyID: catalog.SeedKeyID, Status: catalog.StatusPassing}}); err != nil {
		t.Fatalf("a legacy entry without Rules: %v", err)
	}
	// In a service mixed before the rule, both kinds may still re-register.
	if err := reg("g", "payments", "k1", 80); err != nil {
		t.Fatalf("re-registering in a mixed service: %v", err)
	}
}

// TestCatalog_Apply_legacyDrainingConditions: conditional commands written
// when draining was a status still match a drained passing instance.
func TestCatalog_Apply_legacyDrainingConditions(t *testing.T) {
	c := catalog.New()
	k := &catalog.Key{ID: "k1", SecretHash: make([]byte, 32), Services: []string{"*"}}
	cmds := []catalog.Command{
		{Op: catalog.OpCreateKey, Key: k},
		{Op: catalog.OpRegister, Instance: &catalog.Instance{ID: "i", Service: "web", Address: "10.0.0.1", Port: 80, Scheme: "http",
			TTL: time.Second, DeregisterAfter: time.Minute, TokenHash: make([]byte, 32), KeyID: "k1", Status: catalog.StatusPassing}},
		{Op: catalog.OpSetStatus, ID: "i", Status: catalog.StatusDraining},                                   // legacy drain
		{Op: catalog.OpSetStatus, ID: "i", Status: catalog.StatusCritical, IfStatus: catalog.StatusDraining}, // legacy sweep
		{Op: catalog.OpDeregister, ID: "i", IfStatus: catalog.StatusCritical},
	}
	for i, cmd := range cmds {
		if res := c.Apply(uint64(i+1), cmd); res.Err != nil {
			t.Fatalf("command %d (%s): %v", i, cmd.Op, res.Err)
		}
	}
	if _, ok := c.Instance("i"); ok {
		t.Fatal("the legacy drain → expire → deregister sequence left the instance in the catalog")
	}
}

// TestCatalog_Apply_rules2 pins the rules of version 2: replacing another
// key's instance needs proof of its port; a service that has had /v1
// instances is never taken by the tutorial protocol, even after they are
// all gone, and that memory survives a snapshot; entries of rules 1
// replay as before.
func TestCatalog_Apply_rules2(t *testing.T) {
	c := catalog.New()
	idx := uint64(0)
	apply := func(cmd catalog.Command) error { idx++; return c.Apply(idx, cmd).Err }
	for _, id := range []string{"k1", "k2", catalog.SeedKeyID} {
		k := &catalog.Key{ID: id, SecretHash: make([]byte, 32), Services: []string{"*"}}
		k.SecretHash[0] = byte(len(id) + int(id[len(id)-1]))
		if err := apply(catalog.Command{Op: catalog.OpCreateKey, Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	reg := func(rules int, id, service, key string, port int, proof string) error {
		return apply(catalog.Command{Op: catalog.OpRegister, Rules: rules, Instance: &catalog.Instance{
			ID: id, Service: service, Address: "10.0.0.1", Port: port, Scheme: "http", TTL: time.Second,
			DeregisterAfter: time.Minute, TokenHash: make([]byte, 32), KeyID: key, Status: catalog.StatusPassing, Proof: proof}})
	}
	const host, both = "address", catalog.ProofAddressPort
	if err := reg(2, "a", "billing", "k1", 80, both); err != nil {
		t.Fatal(err)
	}
	// Another key proving only the host cannot take the endpoint over.
	if err := reg(2, "b", "billing", "k2", 80, host); !errors.Is(err, catalog.ErrReplaceDenied) {
		t.Fatalf("another key replacing with proof of the host only: %v", err)
	}
	if _, ok := c.Instance("a"); !ok {
		t.Fatal("the refused replacement removed the instance")
	}
	// The same key may, and so may another key proving the port.
	if err := reg(2, "c", "billing", "k1", 80, host); err != nil {
		t.Fatalf("the same key replacing with proof of the host: %v", err)
	}
	if err := reg(2, "d", "billing", "k2", 80, both); err != nil {
		t.Fatalf("another key replacing with proof of the port: %v", err)
	}
	// Rules 1 replays the old way.
	if err := reg(1, "e", "billing", "k1", 80, host); err != nil {
		t.Fatalf("a rules-1 replacement: %v", err)
	}
	if n, m, o := c.Held("k1", "10.0.0.1"); n != 1 || m != 1 || o != 1 {
		t.Fatalf("Held = %d, %d, %d; want 1, 1, 1", n, m, o)
	}
	if n, m, o := c.Held("k2", "10.0.0.1"); n != 0 || m != 1 || o != 0 {
		t.Fatalf("Held(k2) = %d, %d, %d; want 0, 1, 0", n, m, o)
	}

	// Once every /v1 instance of billing is gone, the tutorial protocol
	// still cannot take the name.
	if err := apply(catalog.Command{Op: catalog.OpDeregister, ID: "e"}); err != nil {
		t.Fatal(err)
	}
	if n, m, o := c.Held("k1", "10.0.0.1"); n != 0 || m != 0 || o != 0 {
		t.Fatalf("Held after deregistering = %d, %d, %d", n, m, o)
	}
	if err := reg(2, "f", "billing", catalog.SeedKeyID, 81, both); !errors.Is(err, catalog.ErrProtocolMix) {
		t.Fatalf("the tutorial protocol taking a name /v1 held: %v", err)
	}
	// A name /v1 never held is free for it.
	if err := reg(2, "g", "fetch_url", catalog.SeedKeyID, 82, both); err != nil {
		t.Fatal(err)
	}
	// The memory survives a snapshot.
	var buf bytes.Buffer
	if _, err := c.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	c2 := catalog.New()
	if err := c2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if !c2.Keyed("billing") || c2.Keyed("fetch_url") {
		t.Fatalf("restored Keyed: billing %v, fetch_url %v", c2.Keyed("billing"), c2.Keyed("fetch_url"))
	}
	if n, m, o := c2.Held(catalog.SeedKeyID, "10.0.0.1"); n != 1 || m != 1 || o != 1 {
		t.Fatalf("restored Held = %d, %d, %d", n, m, o)
	}
}

// TestCatalog_Held_matchesInstances: after any sequence of commands
// (registrations, replacements, status changes, drains, deregistrations,
// and a snapshot round trip), Held counts exactly the instances the
// catalog holds, per key, per address and per key at an address. A
// count that drifts would refuse registrations for ever (quotas).
func TestCatalog_Held_matchesInstances(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := catalog.New()
	idx := uint64(0)
	apply := func(cmd catalog.Command) { idx++; c.Apply(idx, cmd) }
	keys := []string{"k0", "k1", "k2"}
	for i, id := range keys {
		h := make([]byte, 32)
		h[0] = byte(i + 1)
		apply(catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: id, SecretHash: h, Services: []string{"*"}}})
	}
	hosts := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}
	check := func(c *catalog.Catalog, step int) {
		t.Helper()
		byKey, byHost, byBoth := map[string]int{}, map[string]int{}, map[string]int{}
		for _, inst := range c.Instances() {
			byKey[inst.KeyID]++
			byHost[inst.Address]++
			byBoth[inst.KeyID+"|"+inst.Address]++
		}
		for _, k := range keys {
			for _, h := range hosts {
				gk, gh, gb := c.Held(k, h)
				if gk != byKey[k] || gh != byHost[h] || gb != byBoth[k+"|"+h] {
					t.Fatalf("step %d: Held(%s, %s) = %d, %d, %d; the catalog holds %d, %d, %d",
						step, k, h, gk, gh, gb, byKey[k], byHost[h], byBoth[k+"|"+h])
				}
			}
		}
	}
	var ids []string
	for step := range 3000 {
		switch r := rng.IntN(10); {
		case r < 4 || len(ids) == 0:
			id := fmt.Sprintf("i%d", step)
			apply(catalog.Command{Op: catalog.OpRegister, Rules: catalog.RulesCurrent, Instance: &catalog.Instance{
				ID: id, Service: []string{"a", "b"}[rng.IntN(2)], Address: hosts[rng.IntN(len(hosts))], Port: 80 + rng.IntN(4),
				Scheme: "http", TTL: time.Second, DeregisterAfter: time.Minute, TokenHash: make([]byte, 32),
				KeyID: keys[rng.IntN(len(keys))], Status: catalog.StatusPassing, Proof: catalog.ProofAddressPort}})
			ids = append(ids, id)
		case r < 6:
			st := []catalog.Status{catalog.StatusPassing, catalog.StatusCritical}[rng.IntN(2)]
			apply(catalog.Command{Op: catalog.OpSetStatus, ID: ids[rng.IntN(len(ids))], Status: st})
		case r < 8:
			apply(catalog.Command{Op: catalog.OpDrain, ID: ids[rng.IntN(len(ids))]})
		default:
			apply(catalog.Command{Op: catalog.OpDeregister, ID: ids[rng.IntN(len(ids))]})
		}
		check(c, step)
	}
	var buf bytes.Buffer
	if _, err := c.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	restored := catalog.New()
	if err := restored.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	check(restored, -1)
}

// TestCatalog_Apply_evict: an eviction removes the instance and bars its
// endpoint until Until, judged by each registration's own time; the bar
// is kept in snapshots, ends by itself, and entries of older rules replay
// as they were applied.
func TestCatalog_Apply_evict(t *testing.T) {
	c := catalog.New()
	idx := uint64(0)
	apply := func(cmd catalog.Command) error { idx++; return c.Apply(idx, cmd).Err }
	h := make([]byte, 32)
	if err := apply(catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: h, Services: []string{"*"}}}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	reg := func(rules int, id string, at time.Time) error {
		return apply(catalog.Command{Op: catalog.OpRegister, Rules: rules, Instance: &catalog.Instance{
			ID: id, Service: "web", Address: "10.0.0.1", Port: 80, Scheme: "http", TTL: time.Second,
			DeregisterAfter: time.Minute, TokenHash: make([]byte, 32), KeyID: "k1", Status: catalog.StatusPassing,
			Proof: catalog.ProofAddressPort, RegisteredAt: at}})
	}
	if err := reg(catalog.RulesCurrent, "a", t0); err != nil {
		t.Fatal(err)
	}
	until := t0.Add(10 * time.Minute)
	if err := apply(catalog.Command{Op: catalog.OpEvict, ID: "a", Until: until, Reason: "bad build"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Instance("a"); ok {
		t.Fatal("the evicted instance is still there")
	}
	if b, ok := c.BarByInstance("a"); !ok || !b.Until.Equal(until) || b.Reason != "bad build" {
		t.Fatalf("BarByInstance = %+v, %v", b, ok)
	}
	if err := reg(catalog.RulesCurrent, "b", t0.Add(time.Minute)); !errors.Is(err, catalog.ErrBarred) {
		t.Fatalf("registering the endpoint during its bar: %v", err)
	}
	if err := reg(2, "c", t0.Add(time.Minute)); err != nil { // written before bars existed
		t.Fatalf("a rules-2 registration: %v", err)
	}
	if err := apply(catalog.Command{Op: catalog.OpEvict, ID: "c", Until: until}); err != nil {
		t.Fatal(err)
	}
	// The bar survives a snapshot.
	var buf bytes.Buffer
	if _, err := c.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	c2 := catalog.New()
	if err := c2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if b, ok := c2.Bar("web", "10.0.0.1", 80); !ok || b.Instance != "c" || len(c2.Bars()) != 1 {
		t.Fatalf("restored bar = %+v, %v", b, ok)
	}
	// After the bar, the endpoint registers, and the bar is gone.
	if err := reg(catalog.RulesCurrent, "d", until); err != nil {
		t.Fatalf("registering when the bar ends: %v", err)
	}
	if _, ok := c.Bar("web", "10.0.0.1", 80); ok {
		t.Fatal("the ended bar was kept")
	}
	if err := apply(catalog.Command{Op: catalog.OpEvict, ID: "nope", Until: until}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("evicting an unknown instance: %v", err)
	}
}

// TestCatalog_Watch: a service's watch channel closes at the next change
// of that service only; the list's at the next change of any service;
// a Restore closes them all.
func TestCatalog_Watch(t *testing.T) {
	c := catalog.New()
	idx := uint64(0)
	apply := func(cmd catalog.Command) { idx++; c.Apply(idx, cmd) }
	apply(catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: make([]byte, 32), Services: []string{"*"}}})
	reg := func(id, service string) {
		apply(catalog.Command{Op: catalog.OpRegister, Rules: catalog.RulesCurrent, Instance: &catalog.Instance{
			ID: id, Service: service, Address: "10.0.0.1", Port: 80 + len(id), Scheme: "http", TTL: time.Second,
			DeregisterAfter: time.Minute, TokenHash: make([]byte, 32), KeyID: "k1", Status: catalog.StatusPassing,
			Proof: catalog.ProofAddressPort}})
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	viewA, a := c.Watch("a")
	_, b := c.Watch("b")
	_, list := c.WatchList()
	if viewA != nil || closed(a) || closed(b) || closed(list) {
		t.Fatal("channels closed before any change")
	}
	reg("i1", "a")
	if !closed(a) || closed(b) || !closed(list) {
		t.Fatalf("after a change to a: a %v, b %v, list %v; want true, false, true", closed(a), closed(b), closed(list))
	}
	viewA, a2 := c.Watch("a")
	if viewA == nil || len(viewA.Instances) != 1 || closed(a2) {
		t.Fatal("a new watch of a: the view or the channel is wrong")
	}
	var buf bytes.Buffer
	c.Snapshot().WriteTo(&buf)
	if err := c.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if !closed(a2) || !closed(b) {
		t.Fatal("a Restore left watches open")
	}
}

// TestApply_RegisterLimits: a registration that carries limits is refused
// with ErrQuota once its key, or its host, holds that many instances,
// whoever admitted it; replacing an instance of the same key at the same
// host does not count it twice; a registration without limits (every
// entry written before limits were carried) has none; the limits survive
// the log's encoding.
func TestApply_RegisterLimits(t *testing.T) {
	r := newReplica()
	r.apply(createKey(newKey("k1", "*")))
	limited := func(inst *catalog.Instance, key, host int) catalog.Command {
		cmd := register(inst)
		cmd.KeyLimit, cmd.HostLimit = key, host
		return cmd
	}
	for i := range 2 {
		if res := r.apply(limited(newInstance(fmt.Sprintf("i%d", i), "web", "10.0.0.1", 80+i), 2, 10)); res.Err != nil {
			t.Fatalf("registration %d within the limit: %v", i, res.Err)
		}
	}
	if res := r.apply(limited(newInstance("i2", "web", "10.0.0.2", 80), 2, 10)); !errors.Is(res.Err, catalog.ErrQuota) {
		t.Fatalf("a third instance of a key limited to 2: %v, want ErrQuota", res.Err)
	}
	if res := r.apply(limited(newInstance("i3", "web", "10.0.0.1", 90), 10, 2)); !errors.Is(res.Err, catalog.ErrQuota) {
		t.Fatalf("a third instance at a host limited to 2: %v, want ErrQuota", res.Err)
	}
	if res := r.apply(limited(newInstance("i0b", "web", "10.0.0.1", 80), 2, 2)); res.Err != nil || res.Replaced != "i0" {
		t.Fatalf("replacing i0 at its own endpoint, at both limits: %+v", res)
	}
	if res := r.apply(register(newInstance("i4", "web", "10.0.0.1", 91))); res.Err != nil {
		t.Fatalf("a registration without limits: %v", res.Err)
	}
	cmd := limited(newInstance("i5", "web", "10.0.0.3", 80), 7, 9)
	b, err := catalog.EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	got, err := catalog.DecodeCommand(b)
	if err != nil || got.KeyLimit != 7 || got.HostLimit != 9 {
		t.Fatalf("decoded %+v, %v: the limits were lost", got, err)
	}
}
