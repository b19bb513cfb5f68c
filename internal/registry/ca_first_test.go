package registry_test

import (
	"crypto/elliptic"
	"errors"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// TestParseCSR_TextBeforeTheBlock: pem.Decode skips whatever precedes a
// block; a request is its PEM block alone (white space aside).
func TestParseCSR_TextBeforeTheBlock(t *testing.T) {
	good := csrPEM(t, ecKey(t, elliptic.P256()), nil, nil)
	if _, err := registry.ParseCSR(append([]byte(" \n\t"), good...)); err != nil {
		t.Errorf("white space before the block: %v", err)
	}
	in := append([]byte("anything at all, even -----BEGIN FOO----- without an end\n"), good...)
	var ce *registry.CSRError
	if _, err := registry.ParseCSR(in); !errors.As(err, &ce) {
		t.Errorf("ParseCSR with text before its block = %v, want a *CSRError", err)
	}
}

// certFor asks for a certificate for an instance put with token = ID.
func (r *rig) certFor(t *testing.T, id string) (registry.Certificate, error) {
	csr := csrPEM(t, ecKey(t, elliptic.P256()), nil, nil)
	return r.reg.Certificate(t.Context(), id, id, func() ([]byte, error) { return csr, nil })
}

// TestCA_AnonymousBundleReadWritesNothing: GET /v1/ca is open to anyone,
// even under private reads, so it never proposes: a registry that held
// state before it had a CA answers ErrNoCA (a server of an older version
// stops at a ca_add, so a stranger must not be able to cause one). The
// first certificate request makes the CA, and the bundle is then there.
func TestCA_AnonymousBundleReadWritesNothing(t *testing.T) {
	r := newRig(t)
	r.put(t, catalog.Instance{ID: "i-1", Service: "web"}) // a catalog that holds state
	r.prop.reset()
	for range 20 {
		if _, _, err := r.reg.CABundle(t.Context()); !errors.Is(err, registry.ErrNoCA) {
			t.Fatalf("CABundle before any CA = %v, want ErrNoCA", err)
		}
	}
	if n := r.prop.count(catalog.OpAddCA); n != 0 {
		t.Fatalf("anonymous bundle reads proposed %d ca_add", n)
	}
	if _, err := r.certFor(t, "i-1"); err != nil {
		t.Fatalf("first certificate: %v", err)
	}
	if n := r.prop.count(catalog.OpAddCA); n != 1 {
		t.Errorf("the first certificate request proposed %d ca_add, want 1", n)
	}
	if _, fps, err := r.reg.CABundle(t.Context()); err != nil || len(fps) != 1 {
		t.Errorf("CABundle after the first certificate = %v, %v; want one CA", fps, err)
	}
}

// TestCA_BundleWaitsForTheCatalog: like every read, the bundle is
// ErrNotReady until the catalog is loaded, and proposes nothing.
func TestCA_BundleWaitsForTheCatalog(t *testing.T) {
	r := newRig(t)
	r.notReady()
	r.prop.reset()
	if _, _, err := r.reg.CABundle(t.Context()); !errors.Is(err, registry.ErrNotReady) {
		t.Errorf("CABundle on a node that is not ready = %v, want ErrNotReady", err)
	}
	if n := r.prop.count(catalog.OpAddCA); n != 0 {
		t.Errorf("CABundle on a node that is not ready proposed %d CAs", n)
	}
}

// TestCA_FirstCAAttemptsAreBounded: while proposals fail (a full disk,
// no quorum), making the first CA is tried at most once a second, however
// many callers ask: the others get ErrNoCA at once, without a key made.
func TestCA_FirstCAAttemptsAreBounded(t *testing.T) {
	r := newRig(t)
	for i := range 10 {
		r.put(t, catalog.Instance{ID: "i-" + string(rune('a'+i)), Service: "web"})
	}
	r.prop.fail(errDiskFull)
	r.prop.reset()
	for i := range 10 {
		if _, err := r.certFor(t, "i-"+string(rune('a'+i))); !errors.Is(err, registry.ErrNoCA) {
			t.Fatalf("certificate while proposals fail = %v, want ErrNoCA", err)
		}
	}
	if _, err := r.reg.RotateCA(t.Context(), adminToken); !errors.Is(err, registry.ErrNoCA) {
		t.Fatalf("rotate while proposals fail = %v, want ErrNoCA", err)
	}
	if n := r.prop.count(catalog.OpAddCA); n != 1 {
		t.Errorf("11 requests within a second proposed %d first CAs, want 1", n)
	}
	r.prop.fail(nil)
	r.clock.Advance(time.Second)
	if _, err := r.certFor(t, "i-a"); err != nil {
		t.Errorf("a second later, with proposals working: %v", err)
	}
	if n := r.prop.count(catalog.OpAddCA); n != 2 {
		t.Errorf("proposals of a first CA after the retry = %d, want 2", n)
	}
}

// TestCA_RotateWithNoCAMakesTheFirst: an admin's rotation on a registry
// with no CA yet makes one CA, not two.
func TestCA_RotateWithNoCAMakesTheFirst(t *testing.T) {
	r := newRig(t)
	r.put(t, catalog.Instance{ID: "i-1", Service: "web"})
	id, err := r.reg.RotateCA(t.Context(), adminToken)
	if err != nil {
		t.Fatal(err)
	}
	cas := r.cat.CAs()
	if len(cas) != 1 || cas[0].ID != id {
		t.Errorf("after a rotation with no CA: %d CAs, want the one returned (%.16s)", len(cas), id)
	}
}

// TestCA_NoCertificateFromAnExpiredCA: once the signing CA has expired
// (or has less than MinCertLife left), the registry refuses with
// ErrCAExpired instead of capping NotAfter before NotBefore; a rotation
// makes it issue again.
func TestCA_NoCertificateFromAnExpiredCA(t *testing.T) {
	r := newRig(t)
	r.put(t, catalog.Instance{ID: "i-1", Service: "web", TTL: time.Hour, DeregisterAfter: 100 * time.Hour})
	if _, err := r.certFor(t, "i-1"); err != nil {
		t.Fatalf("first certificate: %v", err)
	}
	r.clock.Advance(registry.CALifetime + time.Hour)
	if _, _, err := r.reg.Heartbeat(t.Context(), "i-1", "i-1"); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if c, err := r.certFor(t, "i-1"); !errors.Is(err, registry.ErrCAExpired) {
		t.Fatalf("certificate from an expired CA = %+v, %v; want ErrCAExpired", c.ExpiresAt, err)
	}
	if _, err := r.reg.RotateCA(t.Context(), adminToken); err != nil {
		t.Fatal(err)
	}
	c, err := r.certFor(t, "i-1")
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if !c.ExpiresAt.After(r.clock.Now()) {
		t.Errorf("certificate after rotation expires %s, now %s", c.ExpiresAt, r.clock.Now())
	}
}
