package registry_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// csrPEM makes a PEM certificate request signed by key, asking for the
// names given (which the registry ignores).
func csrPEM(tb testing.TB, key crypto.Signer, dns []string, uris []string) []byte {
	tb.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin"}, DNSNames: dns, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			tb.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func ecKey(tb testing.TB, c elliptic.Curve) crypto.Signer {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func rsaKey(tb testing.TB, bits int) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// csrCases are requests ParseCSR must accept or refuse, shared by the
// table test and the fuzz target's seeds.
func csrCases(tb testing.TB) map[string]struct {
	pem []byte
	ok  bool
} {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	good := csrPEM(tb, ecKey(tb, elliptic.P256()), nil, nil)
	block, _ := pem.Decode(good)
	badSig := bytes.Clone(block.Bytes)
	badSig[len(badSig)-3] ^= 0xff // in the signature, at the end
	return map[string]struct {
		pem []byte
		ok  bool
	}{
		"P-256":   {good, true},
		"P-384":   {csrPEM(tb, ecKey(tb, elliptic.P384()), nil, nil), true},
		"Ed25519": {csrPEM(tb, edKey, nil, nil), true},
		"RSA-2048 asking for names it will not get": {csrPEM(tb, rsaKey(tb, 2048),
			[]string{"evil.example", "*.muster.local"}, []string{"spiffe://muster.local/svc/admin", "spiffe://other.domain/svc/x"}), true},
		"P-224":           {csrPEM(tb, ecKey(tb, elliptic.P224()), nil, nil), false},
		"RSA-1024":        {csrPEM(tb, rsaKey(tb, 1024), nil, nil), false},
		"bad signature":   {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: badSig}), false},
		"oversized":       {append(bytes.Repeat([]byte(" "), registry.MaxCSRSize), good...), false},
		"garbage":         {[]byte("-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n"), false},
		"not PEM":         {[]byte("hello"), false},
		"empty":           {nil, false},
		"a certificate":   {bytes.Replace(good, []byte("CERTIFICATE REQUEST"), []byte("CERTIFICATE"), 2), false},
		"trailing data":   {append(bytes.Clone(good), "and more"...), false},
		"two requests":    {append(bytes.Clone(good), good...), false},
		"DER in PEM junk": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x01}}), false},
	}
}

func TestParseCSR(t *testing.T) {
	for name, tc := range csrCases(t) {
		t.Run(name, func(t *testing.T) {
			csr, err := registry.ParseCSR(tc.pem)
			if tc.ok {
				if err != nil || csr == nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ce *registry.CSRError
			if !errors.As(err, &ce) || ce.Message == "" || csr != nil {
				t.Fatalf("ParseCSR = %v, %v; want a *CSRError with a message", csr, err)
			}
		})
	}
}

// FuzzParseCSR: whatever the input, ParseCSR never panics, and either
// accepts a request whose signature verifies and whose key is of an
// accepted kind, or refuses with a *CSRError that says why.
func FuzzParseCSR(f *testing.F) {
	for _, tc := range csrCases(f) {
		f.Add(tc.pem)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := registry.ParseCSR(b)
		if err != nil {
			var ce *registry.CSRError
			if !errors.As(err, &ce) || ce.Message == "" || csr != nil {
				t.Fatalf("ParseCSR = %v, %v; want a *CSRError with a message", csr, err)
			}
			if strings.Contains(err.Error(), "\n") && len(err.Error()) > 400 {
				t.Fatalf("an unbounded message: %q", err)
			}
			return
		}
		if len(b) > registry.MaxCSRSize || csr.CheckSignature() != nil {
			t.Fatalf("accepted an oversized request or one with a bad signature")
		}
		switch k := csr.PublicKey.(type) {
		case *ecdsa.PublicKey, ed25519.PublicKey:
		case *rsa.PublicKey:
			if k.N.BitLen() < 2048 || k.N.BitLen() > 4096 {
				t.Fatalf("accepted an RSA key of %d bits", k.N.BitLen())
			}
		default:
			t.Fatalf("accepted a key of type %T", k)
		}
	})
}

func TestValidTrustDomain(t *testing.T) {
	for s, want := range map[string]bool{
		"muster.local": true, "example.com": true, "prod-1.example.org": true, "local": true,
		"": false, "Muster.local": false, "muster.local.": false, "-a.b": false, "a..b": false, "a_b.c": false,
		"1.2.3.4": false, "spiffe://x": false, strings.Repeat("a", 64) + ".b": false,
	} {
		if got := registry.ValidTrustDomain(s); got != want {
			t.Errorf("ValidTrustDomain(%q) = %v, want %v", s, got, want)
		}
	}
	if err := (registry.CAConfig{TrustDomain: "x.y", CertTTL: registry.MinCertTTL - 1}).Validate(); err == nil {
		t.Error("a certificate TTL under the minimum is valid")
	}
	if err := (registry.CAConfig{}).Validate(); err != nil {
		t.Errorf("the zero CAConfig (the defaults): %v", err)
	}
}

// operatorCA makes a CA certificate with edit applied, and its key.
func operatorCA(tb testing.TB, edit func(*x509.Certificate)) ([]byte, *ecdsa.PrivateKey) {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "operator CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key
}

func pkcs8PEM(tb testing.TB, key any) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestImportCA: an operator's CA is taken with its key in PKCS#8 or SEC 1
// form, and refused, with an error that never quotes the key, when the
// certificate is not a CA's, expires within a day, does not parse, or
// the key is not its own or not a key.
func TestImportCA(t *testing.T) {
	now := time.Now()
	certPEM, key := operatorCA(t, nil)
	ca, err := registry.ImportCA(certPEM, pkcs8PEM(t, key), now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	if !bytes.Equal(ca.CertDER, b.Bytes) || ca.ID != catalog.CAID(b.Bytes) || !ca.AddedAt.Equal(now.UTC()) {
		t.Errorf("imported as %s added %s", ca.ID, ca.AddedAt)
	}
	sec1, _ := x509.MarshalECPrivateKey(key)
	if _, err := registry.ImportCA(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), now); err != nil {
		t.Errorf("a SEC 1 key: %v", err)
	}
	leafPEM, leafKey := operatorCA(t, func(c *x509.Certificate) { c.IsCA, c.KeyUsage = false, x509.KeyUsageDigitalSignature })
	shortPEM, shortKey := operatorCA(t, func(c *x509.Certificate) { c.NotAfter = time.Now().Add(time.Hour) })
	_, other := operatorCA(t, nil)
	garbageKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret-bytes-of-a-broken-key")})
	for name, tc := range map[string]struct{ cert, key []byte }{
		"not a CA":         {leafPEM, pkcs8PEM(t, leafKey)},
		"expires too soon": {shortPEM, pkcs8PEM(t, shortKey)},
		"another key":      {certPEM, pkcs8PEM(t, other)},
		"a broken key":     {certPEM, garbageKey},
		"no certificate":   {[]byte("nope"), pkcs8PEM(t, key)},
		"a key as cert":    {pkcs8PEM(t, key), pkcs8PEM(t, key)},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := registry.ImportCA(tc.cert, tc.key, now)
			if err == nil {
				t.Fatal("imported")
			}
			if strings.Contains(err.Error(), "secret-bytes") || strings.Contains(err.Error(), "PRIVATE KEY-----") {
				t.Errorf("the error quotes the key: %v", err)
			}
		})
	}
}
