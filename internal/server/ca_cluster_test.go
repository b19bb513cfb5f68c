package server_test

// The CA across servers whose --trust-domain or --cert-ttl differ.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestCluster_CertificatesInTheCAsTrustDomain: servers of one cluster
// with different --trust-domain and --cert-ttl all sign with the one CA
// the leader made: every follower issues certificates in that CA's trust
// domain, which verify against the cluster's bundle, and none outlives
// the wait before a rotated-out CA retires (registry.RetireAfter),
// whatever the server's own --cert-ttl.
func TestCluster_CertificatesInTheCAsTrustDomain(t *testing.T) {
	ttls := []time.Duration{5 * time.Minute, 24 * time.Hour, 24 * time.Hour}
	servers := testserver.StartCluster(t, 3, func(i int, c *server.Config) {
		c.Registry.CA.TrustDomain = fmt.Sprintf("td%d.example", i)
		c.Registry.CA.CertTTL = ttls[i]
	})
	lead := testserver.WaitCluster(t, servers)
	ctx := context.Background()
	testserver.Eventually(t, 10*time.Second, "the CA", func() bool {
		for _, s := range servers {
			if len(s.Catalog().CAs()) == 0 {
				return false
			}
		}
		return true
	})
	k, err := clientOf(t, servers[lead], testserver.ClusterAdminToken).CreateKey(ctx, []string{"api"}, "")
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := clientOf(t, servers[lead], "").Register(ctx, "api", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "30s"})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := clientOf(t, servers[lead], "").CA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	cb, _ := pem.Decode(bundle)
	caCert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil || len(caCert.PermittedURIDomains) != 1 {
		t.Fatalf("the CA: %v, URI constraints %v", err, caCert.PermittedURIDomains)
	}
	for i, s := range servers {
		if i == lead {
			continue
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		var ans api.CertificateResponse
		testserver.Eventually(t, 10*time.Second, "a follower signs", func() bool {
			ans, err = clientOf(t, s, "").Certificate(ctx, reg.ID, inst.TokenOf(reg.ID), csr)
			return err == nil
		})
		b, _ := pem.Decode([]byte(ans.Certificate))
		leaf, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("follower %d (leader %d) issued %s, which does not verify against the cluster's bundle: %v", i, lead, ans.SPIFFEID, err)
		}
		if life := time.Until(leaf.NotAfter); life > registry.RetireAfter {
			t.Errorf("follower %d issued a certificate valid for %v more, but a rotation now retires its CA after %v",
				i, life.Round(time.Minute), registry.RetireAfter)
		}
		if want := "spiffe://" + caCert.PermittedURIDomains[0] + "/svc/api"; ans.SPIFFEID != want {
			t.Errorf("follower %d issued %s, want the CA's trust domain: %s", i, ans.SPIFFEID, want)
		}
	}
}
