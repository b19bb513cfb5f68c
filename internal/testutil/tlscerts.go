package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCA is a certificate authority made for one test: it signs server
// and client certificates and writes them to files, as an operator's CA
// would.
type TestCA struct {
	Cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	CertPEM []byte
	// File holds CertPEM: a bundle for --http-tls-client-ca or
	// MUSTER_CACERT.
	File string
}

// NewTestCA makes a CA named name, as `muster tls ca create` makes one
// (ECDSA P-256, signing end certificates only), its certificate written
// to a file in a temp dir.
func NewTestCA(tb testing.TB, name string) *TestCA {
	tb.Helper()
	der, key := sign(tb, &x509.Certificate{
		Subject:   pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}, nil, nil)
	cert, _ := x509.ParseCertificate(der)
	ca := &TestCA{Cert: cert, key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.File = filepath.Join(tb.TempDir(), name+".pem")
	WriteFile(tb, ca.File, ca.CertPEM, 0o644)
	return ca
}

// sign makes a key and signs tmpl for it with parent and parentKey, or
// with the new key itself when parent is nil; the serial number is set.
func sign(tb testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	return der, key
}

// Issue signs a certificate for cn, valid for 127.0.0.1, ::1 and
// localhost, for server and client authentication, and writes it and its
// key (0600) as cn.pem and cn-key.pem in dir.
func (ca *TestCA) Issue(tb testing.TB, dir, cn string) (certFile, keyFile string) {
	tb.Helper()
	certPEM, keyPEM := ca.IssuePEM(tb, cn)
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	WriteFile(tb, certFile, certPEM, 0o644)
	WriteFile(tb, keyFile, keyPEM, 0o600)
	return certFile, keyFile
}

// IssuePEM is Issue without the files.
func (ca *TestCA) IssuePEM(tb testing.TB, cn string) (certPEM, keyPEM []byte) {
	tb.Helper()
	return ca.IssueWith(tb, cn, nil)
}

// IssueWith is IssuePEM with the certificate first changed by edit, if it
// is not nil (to make it expired, or for another usage).
func (ca *TestCA) IssueWith(tb testing.TB, cn string, edit func(*x509.Certificate)) (certPEM, keyPEM []byte) {
	tb.Helper()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(12 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		BasicConstraintsValid: true,
	}
	if edit != nil {
		edit(tmpl)
	}
	der, key := sign(tb, tmpl, ca.Cert, ca.key)
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// WriteFile writes b to path with perm, replacing it (by rename, as
// renewal tools do), or fails tb.
func WriteFile(tb testing.TB, path string, b []byte, perm os.FileMode) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, perm); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(tmp, perm); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// NewTLSInstance is NewInstance served over HTTPS, with a certificate
// ca signed for 127.0.0.1, ::1 and localhost.
func NewTLSInstance(tb testing.TB, secret string, proof ProofFunc, ca *TestCA) *Instance {
	tb.Helper()
	certPEM, keyPEM := ca.IssuePEM(tb, "instance")
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	in := &Instance{Secret: secret, Proof: proof}
	in.Server = httptest.NewUnstartedServer(http.HandlerFunc(in.serve))
	in.Server.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	in.Server.StartTLS()
	tb.Cleanup(in.Server.Close)
	return in
}
