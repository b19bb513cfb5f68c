package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestCluster_OneCA: the leader creates the CA once and every server of
// a cluster holds it, the same, through Raft: an instance gets its
// certificate from a follower, and it chains to the bundle every server
// answers; a rotation through a follower reaches every server too.
func TestCluster_OneCA(t *testing.T) {
	servers := testserver.StartCluster(t, 3, nil)
	lead := testserver.WaitCluster(t, servers)
	f1, f2 := servers[(lead+1)%3], servers[(lead+2)%3]
	ctx := context.Background()
	sameBundle := func(want int) []byte {
		t.Helper()
		var first []byte
		testserver.Eventually(t, 10*time.Second, "every server holds the same CAs", func() bool {
			first = nil
			for _, s := range servers {
				b, err := clientOf(t, s, "").CA(ctx)
				if err != nil || bytes.Count(b, []byte("BEGIN CERTIFICATE")) != want || (first != nil && !bytes.Equal(b, first)) {
					return false
				}
				first = b
			}
			return true
		})
		return first
	}
	pemBundle := sameBundle(1)
	for _, s := range servers {
		if cas := s.Catalog().CAs(); len(cas) != 1 || cas[0].ID != servers[lead].Catalog().CAs()[0].ID {
			t.Fatalf("server %s holds CAs %d", s.Node().NodeID(), len(cas))
		}
	}

	k, err := clientOf(t, f1, testserver.ClusterAdminToken).CreateKey(ctx, []string{"api"}, "")
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := clientOf(t, f1, "").Register(ctx, "api", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "30s"})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	var ans api.CertificateResponse
	testserver.Eventually(t, 10*time.Second, "a follower signs", func() bool {
		ans, err = clientOf(t, f2, "").Certificate(ctx, reg.ID, inst.TokenOf(reg.ID), csr)
		return err == nil
	})
	b, _ := pem.Decode([]byte(ans.Certificate))
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBundle)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("a follower's certificate does not chain to the cluster's CA: %v", err)
	}

	if _, err := clientOf(t, f2, testserver.ClusterAdminToken).RotateCA(ctx); err != nil {
		t.Fatal(err)
	}
	sameBundle(2)
}
