package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/testutil"
)

// A cluster CA made for a test is testutil's, as `muster tls ca create`
// makes one; its certificates are as `muster tls cert create` makes them
// (with the loopback addresses, which Raft does not check).
func newTestCA(tb testing.TB, name string) *testutil.TestCA { return testutil.NewTestCA(tb, name) }

// selfSigned returns a certificate for name signed by its own key, with
// every usage a member's has: a stranger's imitation of a member.
func selfSigned(tb testing.TB, name string) (certPEM, keyPEM []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// writeTLSFiles writes a CA file, a certificate and its key (0600) into
// a fresh directory and returns their paths.
func writeTLSFiles(tb testing.TB, caPEM, certPEM, keyPEM []byte) (caFile, certFile, keyFile string) {
	tb.Helper()
	dir := tb.TempDir()
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{caFile, caPEM, 0o644}, {certFile, certPEM, 0o644}, {keyFile, keyPEM, 0o600}} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			tb.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// files writes ca's certificate and a new certificate for name with its
// key, and returns their paths.
func caFiles(tb testing.TB, ca *testutil.TestCA, name string) (caFile, certFile, keyFile string) {
	tb.Helper()
	certPEM, keyPEM := ca.IssueWith(tb, name, nil)
	return writeTLSFiles(tb, ca.CertPEM, certPEM, keyPEM)
}

// identity is a member's TLSIdentity from ca, loaded from files.
func caIdentity(tb testing.TB, ca *testutil.TestCA, name string) *TLSIdentity {
	tb.Helper()
	id, err := LoadTLS(caFiles(tb, ca, name))
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// useCertificates makes cfg a member of ca's cluster by certificate,
// with files for its node ID, instead of by secret.
func useCertificates(tb testing.TB, cfg *Config, ca *testutil.TestCA) {
	tb.Helper()
	cfg.Secret, cfg.SecretFile = nil, ""
	cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile = caFiles(tb, ca, cfg.NodeID)
}

// startCertCluster is startCluster with every member holding its own
// certificate from ca instead of the shared secret.
func startCertCluster(tb testing.TB, size int, ca *testutil.TestCA) []*tnode {
	tb.Helper()
	return startClusterWith(tb, size, nil, func(c *Config) { useCertificates(tb, c, ca) })
}

// newCertPeer is a Raft NetworkTransport on a secure stream in
// certificate mode, as a node has one.
func newCertPeer(tb testing.TB, id *TLSIdentity, log *slog.Logger) *peer {
	tb.Helper()
	s, err := listenSecureWith("127.0.0.1:0", id, log, 500*time.Millisecond, 8, 0)
	if err != nil {
		tb.Fatal(err)
	}
	t := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: s, MaxPool: 2, Timeout: 2 * time.Second, Logger: hclog.NewNullLogger(),
	})
	tb.Cleanup(func() { t.Close() })
	return &peer{stream: s, trans: t}
}

// tlsCert is a certificate and key in PEM as crypto/tls holds them.
func tlsCert(tb testing.TB, certPEM, keyPEM []byte) tls.Certificate {
	tb.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestSecureStream_CertificatesRefuseStrangers: in certificate mode the
// Raft port drops, in the handshake and before Raft reads a byte, every
// peer that does not present a valid certificate from the cluster CA:
// one from another CA, a self-signed one naming a member, one of the
// cluster CA's that has expired or is not valid yet, one for server
// authentication only, none at all, a peer holding a cluster secret, and
// plain TCP carrying Raft's RPCs. Each refusal is logged at warn with its
// reason, and the consumer of the transport receives nothing; a member
// with a certificate from the CA is then let in.
func TestSecureStream_CertificatesRefuseStrangers(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	other := newTestCA(t, "another CA")
	log, logs := logCapture(t)
	srv := newCertPeer(t, caIdentity(t, ca, "n1"), log)
	got := consume(t, srv.trans)
	target := srv.trans.LocalAddr()

	// The stranger dials with cert, checking nothing of the server: what
	// stops it is the server's check.
	presenting := func(cert *tls.Certificate) func(t *testing.T) raft.Transport {
		return func(t *testing.T) raft.Transport {
			conf := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{protoRaft}}
			if cert != nil {
				conf.Certificates = []tls.Certificate{*cert}
			}
			return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
				Stream: newDialStream(func(addr string, timeout time.Duration) (net.Conn, error) {
					return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", addr, conf)
				}), MaxPool: 1, Timeout: time.Second, Logger: hclog.NewNullLogger()})
		}
	}
	cert := func(certPEM, keyPEM []byte) *tls.Certificate { c := tlsCert(t, certPEM, keyPEM); return &c }
	for _, tc := range []struct {
		name  string
		trans func(t *testing.T) raft.Transport
		want  string // in the warning
	}{
		{"certificate from another CA", presenting(cert(other.IssueWith(t, "n2", nil))), "not signed by the cluster CA"},
		{"self-signed certificate naming a member", presenting(cert(selfSigned(t, "n2"))), "not signed by the cluster CA"},
		{"expired certificate from the cluster CA", presenting(cert(ca.IssueWith(t, "n2", func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
		}))), "not valid now"},
		{"certificate from the cluster CA not valid yet", presenting(cert(ca.IssueWith(t, "n2", func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour)
		}))), "not valid now"},
		{"certificate from the cluster CA for server authentication only", presenting(cert(ca.IssueWith(t, "n2", func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}))), "not for both server and client authentication"},
		{"certificate from the cluster CA that may not sign", presenting(cert(ca.IssueWith(t, "n2", func(c *x509.Certificate) {
			c.KeyUsage = x509.KeyUsageKeyEncipherment
		}))), "does not allow digital signatures"},
		{"no certificate", presenting(nil), "certificate"},
		{"the cluster secret instead of a certificate", func(t *testing.T) raft.Transport {
			// It refuses the server's certificate, which is not its key.
			return newPeer(t, testSecret("cluster-secret-"), nil, time.Second, 8).trans
		}, "bad certificate"},
		{"plain TCP raft transport", func(t *testing.T) raft.Transport {
			tr, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 1, time.Second, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			return tr
		}, "tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(logs.String(), "refused a connection")
			tr := tc.trans(t)
			defer tr.(io.Closer).Close()
			voteErr, appendErr := attack(tr, target)
			if voteErr == nil || appendErr == nil {
				t.Fatalf("the stranger's RPCs were answered: vote %v, append %v", voteErr, appendErr)
			}
			waitFor(t, func() bool { return strings.Count(logs.String(), "refused a connection") > before },
				"a warning about the refused connection")
			if warn := logs.String()[strings.LastIndex(logs.String(), "refused a connection"):]; !strings.Contains(warn, tc.want) {
				t.Fatalf("the warning does not say %q: %s", tc.want, warn)
			}
		})
	}
	select {
	case rpc := <-got:
		t.Fatalf("Raft received an RPC from a stranger: %T", rpc.Command)
	case <-time.After(200 * time.Millisecond):
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "did not prove it holds a certificate from the cluster CA") {
		t.Fatal("refusals were not logged at warn, naming the certificate")
	}

	member := newCertPeer(t, caIdentity(t, ca, "n2"), testutil.Logger(t))
	if voteErr, appendErr := attack(member.trans, target); voteErr != nil || appendErr != nil {
		t.Fatalf("a member with a certificate from the CA was refused: vote %v, append %v", voteErr, appendErr)
	}
	if rpc := <-got; rpc.Command.(*raft.RequestVoteRequest).Term != 1000 {
		t.Fatalf("received %+v", rpc.Command)
	}
}

// TestSecureStream_CertificatesCheckTheServer: a member dialing a peer
// checks the peer's certificate as the peer checks its own: a listener
// with a certificate from another CA, a self-signed one, or an expired
// one from the cluster CA gets the handshake refused and never a byte of
// Raft.
func TestSecureStream_CertificatesCheckTheServer(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	member := newCertPeer(t, caIdentity(t, ca, "n1"), testutil.Logger(t))
	for _, tc := range []struct {
		name            string
		certPEM, keyPEM []byte
		want            string
	}{
		{name: "another CA", want: "not signed by the cluster CA"},
		{name: "self-signed", want: "not signed by the cluster CA"},
		{name: "expired, from the cluster CA", want: "not valid now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			switch tc.name {
			case "another CA":
				tc.certPEM, tc.keyPEM = newTestCA(t, "another CA").IssueWith(t, "n2", nil)
			case "self-signed":
				tc.certPEM, tc.keyPEM = selfSigned(t, "n2")
			default:
				tc.certPEM, tc.keyPEM = ca.IssueWith(t, "n2", func(c *x509.Certificate) {
					c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
				})
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
				Certificates: []tls.Certificate{tlsCert(t, tc.certPEM, tc.keyPEM)},
				ClientAuth:   tls.RequestClientCert, NextProtos: []string{protoRaft},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			received := make(chan int, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					received <- -1
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(3 * time.Second))
				n, _ := c.Read(make([]byte, 1024))
				received <- n
			}()
			_, err = member.stream.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial = %v, want a refusal saying %q", err, tc.want)
			}
			if n := <-received; n > 0 {
				t.Fatalf("the listener received %d bytes from the member", n)
			}
		})
	}
}

// TestLoadTLS: the files of certificate mode are checked when they are
// read, with errors that name the file and the fix: the key file must be
// its owner's alone, the CA file must hold a CA, and the node's
// certificate must pass the check its peers will make. The identity
// prints without its key.
func TestLoadTLS(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	certPEM, keyPEM := ca.IssueWith(t, "n1", nil)
	otherCert, otherKey := newTestCA(t, "another CA").IssueWith(t, "n1", nil)
	expiredCert, expiredKey := ca.IssueWith(t, "n1", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	})
	serverOnly, serverOnlyKey := ca.IssueWith(t, "n1", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })
	noEKU, noEKUKey := ca.IssueWith(t, "n1", func(c *x509.Certificate) { c.ExtKeyUsage = nil })
	anyEKU, anyEKUKey := ca.IssueWith(t, "n1", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} })
	for _, tc := range []struct {
		name             string
		caPEM, cert, key []byte
		keyMode          os.FileMode
		want             string // "" means it loads
		names            string // which path the error names: ca, cert or key
	}{
		{"member", ca.CertPEM, certPEM, keyPEM, 0o600, "", ""},
		{"key read-only by its owner", ca.CertPEM, certPEM, keyPEM, 0o400, "", ""},
		{"key readable by the group", ca.CertPEM, certPEM, keyPEM, 0o640, "chmod 600", "key"},
		{"key readable by everyone", ca.CertPEM, certPEM, keyPEM, 0o644, "chmod 600", "key"},
		{"key of another certificate", ca.CertPEM, certPEM, otherKey, 0o600, "muster tls cert create", "key"},
		{"certificate from another CA", ca.CertPEM, otherCert, otherKey, 0o600, "not signed by the cluster CA", "cert"},
		{"expired certificate", ca.CertPEM, expiredCert, expiredKey, 0o600, "not valid now", "cert"},
		{"certificate for server authentication only", ca.CertPEM, serverOnly, serverOnlyKey, 0o600, "not for both server and client", "cert"},
		{"certificate without extended key usage", ca.CertPEM, noEKU, noEKUKey, 0o600, "not for both server and client", "cert"},
		{"certificate for any usage", ca.CertPEM, anyEKU, anyEKUKey, 0o600, "not for both server and client", "cert"},
		{"CA file holding a server certificate", certPEM, certPEM, keyPEM, 0o600, "not a CA certificate", "ca"},
		{"empty CA file", nil, certPEM, keyPEM, 0o600, "muster tls ca create", "ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caFile, certFile, keyFile := writeTLSFiles(t, tc.caPEM, tc.cert, tc.key)
			if err := os.Chmod(keyFile, tc.keyMode); err != nil {
				t.Fatal(err)
			}
			id, err := LoadTLS(caFile, certFile, keyFile)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				raw, err := id.cert.PrivateKey.(*ecdsa.PrivateKey).Bytes()
				if err != nil {
					t.Fatal(err)
				}
				d := fmt.Sprintf("%x", raw)
				var logged strings.Builder
				slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "tls", id)
				for _, shown := range []string{fmt.Sprint(id), fmt.Sprintf("%#v", id), fmt.Sprintf("%+v", Config{TLS: id}), logged.String()} {
					if !strings.Contains(shown, "n1") || strings.Contains(shown, "PRIVATE") || strings.Contains(shown, d) {
						t.Fatalf("the identity prints as %s", shown)
					}
				}
				return
			}
			path := map[string]string{"ca": caFile, "cert": certFile, "key": keyFile}[tc.names]
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadTLS = %v, want an error naming %s and saying %q", err, path, tc.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatal("the error holds the key")
			}
		})
	}
	if _, err := LoadTLS(filepath.Join(t.TempDir(), "missing.pem"), "c", "k"); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("a missing CA file: %v", err)
	}
}

// TestConfig_ValidateCertificates: certificate mode takes its three files
// together, excludes the cluster secret, needs a Raft address, and is
// enough to join or form a cluster.
func TestConfig_ValidateCertificates(t *testing.T) {
	files := func(c *Config) { c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = "ca.pem", "n1.pem", "n1-key.pem" }
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string // "" means valid
	}{
		{"files", files, ""},
		{"files, forming a cluster", func(c *Config) { files(c); c.BootstrapExpect, c.Join = 3, []string{"10.0.0.2:9001"} }, ""},
		{"loaded identity, joining", func(c *Config) { c.TLS, c.Join = &TLSIdentity{}, []string{"10.0.0.2:9001"} }, ""},
		{"no key file", func(c *Config) { files(c); c.TLSKeyFile = "" }, "the TLS key file (--tls-key) is missing"},
		{"CA file alone", func(c *Config) { c.TLSCAFile = "ca.pem" }, "the TLS certificate file (--tls-cert) and the TLS key file (--tls-key) are missing"},
		{"files and identity", func(c *Config) { files(c); c.TLS = &TLSIdentity{} }, "not both"},
		{"files and secret", func(c *Config) { files(c); c.Secret = testSecret("a") }, "a cluster secret or TLS certificates from a cluster CA, not both"},
		{"identity and secret file", func(c *Config) { c.TLS, c.SecretFile = &TLSIdentity{}, "/some/file" }, "not both"},
		{"files without a raft address", func(c *Config) { files(c); c.RaftAddr = "" }, "raft address is required with TLS certificates"},
		{"forming a cluster with neither", func(c *Config) { c.BootstrapExpect = 3 }, "needs a cluster secret or TLS certificates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestNode_TLSKeyFileIsChecked: Open reads the certificate mode's files
// and refuses a key file others can read, before anything listens; the
// same files, once the key is the owner's alone, open a node that
// listens on RaftAddr.
func TestNode_TLSKeyFileIsChecked(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	cfg := testConfig(t, t.TempDir())
	cfg.RaftAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg.NodeID = "n1"
	useCertificates(t, &cfg, ca)
	if err := os.Chmod(cfg.TLSKeyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg, catalog.New()); err == nil || !strings.Contains(err.Error(), "chmod 600 "+cfg.TLSKeyFile) {
		t.Fatalf("Open with a world-readable key file = %v", err)
	}
	if c, err := net.DialTimeout("tcp", cfg.RaftAddr, time.Second); err == nil {
		c.Close()
		t.Fatalf("something listens on %s after a refused start", cfg.RaftAddr)
	}
	os.Chmod(cfg.TLSKeyFile, 0o600)
	n, _ := openReady(t, cfg)
	defer n.Close()
	if n.RaftAddr() != cfg.RaftAddr || !n.HasPeers() {
		t.Fatalf("RaftAddr() = %q, HasPeers() = %v; want a listener on %s", n.RaftAddr(), n.HasPeers(), cfg.RaftAddr)
	}
}

// TestCluster_FormsWithCertificates: three members, each with its own
// certificate from the cluster CA and no secret, started at the same
// moment, form one cluster of three voters; writes sent to followers are
// forwarded to the leader over the servers' RPC and replicated to all.
func TestCluster_FormsWithCertificates(t *testing.T) {
	nodes := startCertCluster(t, 3, newTestCA(t, "cluster CA"))
	lead := leaderOf(t, nodes)
	for _, tn := range nodes {
		waitFor(t, func() bool { return len(voters(t, tn.n)) == 3 }, "three voters in every member's configuration")
		if !strings.Contains(tn.logs.String(), "accepts only peers that prove they hold a certificate from the cluster CA") {
			t.Fatalf("%s did not listen in certificate mode", tn.cfg.NodeID)
		}
	}
	for i, tn := range nodes {
		if i == lead {
			continue
		}
		if res := mustApply(t, tn.n, registerCmd(fmt.Sprintf("via-%d", i), "web", 8000+i)); res.Index == 0 {
			t.Fatalf("forwarded write from n%d came back without an index", i+1)
		}
	}
	for _, tn := range nodes {
		waitFor(t, func() bool { return len(tn.cat.Instances()) == 2 }, "both forwarded writes on every member")
	}
}

// TestCluster_CertificateStrangersRefused: a server that tries to join a
// cluster in certificate mode with a certificate from another CA, with a
// certificate of the cluster CA that has expired, or with a cluster
// secret, is refused in the handshake and told why; it never receives
// the cluster's state, and the members log the refusal.
func TestCluster_CertificateStrangersRefused(t *testing.T) {
	ca := newTestCA(t, "cluster CA")
	nodes := startCertCluster(t, 3, ca)
	lead := leaderOf(t, nodes)
	mustApply(t, nodes[lead].n, registerCmd("i1", "api", 9001))
	for _, tc := range []struct {
		name string
		auth func(t *testing.T, cfg *Config)
		want string // in the stranger's log
	}{
		{"certificate from another CA", func(t *testing.T, cfg *Config) { useCertificates(t, cfg, newTestCA(t, "another CA")) },
			"not signed by the cluster CA"},
		{"expired certificate from the cluster CA", func(t *testing.T, cfg *Config) {
			// LoadTLS refuses an expired certificate at start; this is
			// one that expired while its server ran.
			certPEM, keyPEM := ca.IssueWith(t, cfg.NodeID, func(c *x509.Certificate) {
				c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
			})
			roots := x509.NewCertPool()
			roots.AddCert(ca.Cert)
			pair := tlsCert(t, certPEM, keyPEM)
			cfg.Secret, cfg.TLS = nil, &TLSIdentity{roots: roots, cert: pair, leaf: pair.Leaf}
		}, "bad certificate"},
		// It refuses the members' certificates, which are not its key.
		{"cluster secret", func(t *testing.T, cfg *Config) { cfg.Secret = testSecret("cluster") }, "the peer does not hold the cluster secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clusterConfig(t, nil, "admin")
			cfg.NodeID = "stranger"
			cfg.Join = []string{nodes[lead].n.RaftAddr()}
			tc.auth(t, &cfg)
			x := openNode(t, cfg)
			waitFor(t, func() bool { return strings.Contains(x.logs.String(), tc.want) }, "the stranger to be told why")
			time.Sleep(300 * time.Millisecond)
			if x.n.hasState() || len(x.cat.Instances()) != 0 {
				t.Fatal("a stranger received the cluster's state")
			}
			if got := len(voters(t, nodes[lead].n)); got != 3 {
				t.Fatalf("the cluster has %d servers after a stranger knocked", got)
			}
		})
	}
	refused := false
	for _, tn := range nodes {
		refused = refused || strings.Contains(tn.logs.String(), "refused a connection that did not prove it holds a certificate from the cluster CA")
	}
	if !refused {
		t.Fatal("no member logged a refusal")
	}
}
