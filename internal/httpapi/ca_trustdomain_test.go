package httpapi_test

import (
	"context"
	"crypto/x509"
	"net/http"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
)

// TestCA_TrustDomainIsTheCAs: a registry whose CA was made for trust
// domain muster.local (name constraints that permit URI SANs in it
// alone), restarted with --trust-domain other.example, goes on issuing
// in muster.local, certificates that verify against its bundle (one
// naming other.example would violate the CA's constraints and verify
// nowhere); a rotation from it makes a CA for other.example, and the
// certificates it then signs name other.example and verify.
func TestCA_TrustDomainIsTheCAs(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	dir := h.Dir
	if _, cas, _ := bundle(t, h); len(cas) != 1 {
		t.Fatalf("%d CAs", len(cas))
	}
	h.Srv.Close()
	h2 := testserver.NewHarness(t, func(c *server.Config) {
		c.DataDir = dir
		c.Registry.CA.TrustDomain = "other.example"
	})
	in := registerFor(t, h2, "web", time.Minute)
	csr, _ := newCSR(t)
	check := func(when, wantID string) {
		t.Helper()
		pool, _, _ := bundle(t, h2)
		resp, ans, eb := askCert(t, h2, in.id, in.token, csr)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: certificate %d %+v", when, resp.StatusCode, eb)
		}
		if ans.SPIFFEID != wantID {
			t.Errorf("%s: issued %s, want %s", when, ans.SPIFFEID, wantID)
		}
		if _, err := leafOf(t, ans).Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %s does not verify against the registry's own bundle: %v", when, ans.SPIFFEID, err)
		}
	}
	check("restarted with another trust domain", "spiffe://muster.local/svc/web")
	if _, err := h2.Admin.RotateCA(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("after a rotation", "spiffe://other.example/svc/web")
}
