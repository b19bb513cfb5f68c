package registry_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// errDiskFull is what a proposer whose disk is full reports, as
// cluster.ErrDiskFull does.
const errDiskFull = unavailableError("test: the data dir's disk is full")

// diskProposer is the in-process proposer with the storage report that
// *cluster.Node gives: Writable and Degraded.
type diskProposer struct {
	*proposer
	full atomic.Bool
}

func (p *diskProposer) Writable() error {
	if p.full.Load() {
		return errDiskFull
	}
	return nil
}

func (p *diskProposer) Degraded() string {
	if p.full.Load() {
		return "disk"
	}
	return ""
}

// TestRegistry_Register_diskFull: while the replication layer reports a
// full disk, a registration is refused with ErrUnavailable (wrapping the
// layer's reason) before the instance is called back or anything is
// proposed, and Health reports degraded: disk. Once space is back, it
// registers.
func TestRegistry_Register_diskFull(t *testing.T) {
	cat := catalog.New()
	p := &diskProposer{proposer: &proposer{cat: cat, leader: "127.0.0.1:7000"}}
	lead := &leadership{leading: true, since: time.Now().Add(-time.Hour)}
	live := health.NewLiveness(health.LivenessConfig{}, health.NewTracker(), lead, nil)
	v, err := verify.New(verify.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := registry.DefaultConfig()
	cfg.AdminTokenHash, cfg.Logger = catalog.HashSecret(adminToken), testutil.Logger(t)
	reg, err := registry.New(cfg, cat, p, live, v)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := reg.CreateKey(t.Context(), adminToken, registry.KeySpec{Services: []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, secret, verify.Proof)
	req := api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()}

	p.full.Store(true)
	if h := reg.Health(); !h.Ready || h.Degraded != "disk" {
		t.Fatalf("Health() = %+v, want ready and degraded: disk", h)
	}
	adm, err := reg.AdmitKey(context.Background(), secret, "web")
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.Register(t.Context(), adm, req)
	if !errors.Is(err, registry.ErrUnavailable) || !errors.Is(err, errDiskFull) {
		t.Fatalf("Register on a full disk = %v, want ErrUnavailable wrapping the disk's error", err)
	}
	if n := inst.CallCount(); n != 0 {
		t.Fatalf("the instance was called back %d times for a registration a full disk refused", n)
	}
	if n := p.count(catalog.OpRegister); n != 0 {
		t.Fatalf("%d registrations were proposed on a full disk", n)
	}

	p.full.Store(false)
	if h := reg.Health(); h.Degraded != "" {
		t.Fatalf("Health() = %+v after space was freed", h)
	}
	if _, err := reg.Register(t.Context(), adm, req); err != nil {
		t.Fatalf("Register after space was freed: %v", err)
	}
}

// TestRegistry_ProposesValidCommands: every command the registry's
// workflows propose passes catalog.Command.Validate, which the cluster
// applies before proposing and on replay (where a version-1 entry that
// fails it halts the node as corrupt).
func TestRegistry_ProposesValidCommands(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	keyID, secret := r.key(t, "web", "api-*")
	inst := newInstance(t, secret)
	a := r.register(t, secret, "web", inst, api.RegisterRequest{
		Address: "127.0.0.1", Port: inst.Port(), Scheme: "https", VerifyScheme: "http", TTL: "1s", DeregisterAfter: "168h",
		Tags: []string{"v1", "blue"}, Meta: map[string]string{"zone": "a", "site.name": "x y"},
	})
	b := r.register(t, secret, "api-1", inst, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	other := newInstance(t, secret)
	r.register(t, secret, "web", other, api.RegisterRequest{Address: "127.0.0.1", Port: 1, VerifyPort: other.Port()})
	if _, _, err := r.reg.Drain(ctx, a.ID, a.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := r.reg.Deregister(ctx, b.ID, b.Token); err != nil {
		t.Fatal(err)
	}
	if err := r.reg.RevokeKey(ctx, adminToken, keyID); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range r.prop.proposed() {
		if err := cmd.Validate(); err != nil {
			t.Errorf("the registry proposed %+v, which fails Validate: %v", cmd, err)
		}
	}
	if len(r.prop.proposed()) < 6 {
		t.Fatalf("only %d commands proposed", len(r.prop.proposed()))
	}
}

// TestCanonicalHost_validInCatalog: every address the registry accepts, in
// the canonical form it stores, is one catalog.ValidHost accepts.
func TestCanonicalHost_validInCatalog(t *testing.T) {
	for _, h := range []string{
		"127.0.0.1", "10.0.0.7", "::1", "2001:DB8::1", "::ffff:10.0.0.1", "fe80::1", "api.internal", "API.Internal.",
		"a", "x-1.y-2.example", "xn--bcher-kva.example", "0.0.0.0",
	} {
		c, ok := registry.CanonicalHost(h)
		if !ok {
			t.Errorf("CanonicalHost(%q) refused", h)
			continue
		}
		if !catalog.ValidHost(c) {
			t.Errorf("CanonicalHost(%q) = %q, which catalog.ValidHost refuses", h, c)
		}
	}
}

// FuzzCanonicalHost_validInCatalog: whatever host the registry accepts,
// the catalog accepts in its canonical form.
func FuzzCanonicalHost_validInCatalog(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "::1", "API.internal.", "a-b.c", "1.2.3", "[::1]", "fe80::1%eth0", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if c, ok := registry.CanonicalHost(h); ok && !catalog.ValidHost(c) {
			t.Errorf("CanonicalHost(%q) = %q, which catalog.ValidHost refuses", h, c)
		}
	})
}
