package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/client"
)

// muster runs the CLI in-process with no environment and returns its
// output and error.
func muster(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
	return out.String() + errOut.String(), err
}

// readCert reads the one certificate in a PEM file.
func readCert(tb testing.TB, path string) *x509.Certificate {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		tb.Fatalf("%s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func fileMode(tb testing.TB, path string) os.FileMode {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestTLS_CACreate: `muster tls ca create` writes a CA certificate (0644)
// and its key (0600) that belong together, valid for --days, and refuses
// to overwrite either file, leaving them as they were.
func TestTLS_CACreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := muster(t, "tls", "ca", "create", "--dir", dir, "--days", "30")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	certPath, keyPath := filepath.Join(dir, "muster-ca.pem"), filepath.Join(dir, "muster-ca-key.pem")
	if m := fileMode(t, keyPath); m != 0o600 {
		t.Fatalf("the CA key is mode %04o, want 0600", m)
	}
	if m := fileMode(t, certPath); m != 0o644 {
		t.Fatalf("the CA certificate is mode %04o, want 0644", m)
	}
	if m := fileMode(t, dir); m != 0o700 {
		t.Fatalf("the new --dir is mode %04o, want 0700", m)
	}
	ca := readCert(t, certPath)
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 || !ca.MaxPathLenZero {
		t.Fatalf("not a CA that signs servers only: IsCA %v, key usage %v, MaxPathLenZero %v", ca.IsCA, ca.KeyUsage, ca.MaxPathLenZero)
	}
	if d := time.Until(ca.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Fatalf("the CA expires in %v, want 30 days", d)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Fatalf("the CA does not sign itself: %v", err)
	}
	if !strings.Contains(out, certPath) || !strings.Contains(out, keyPath) {
		t.Fatalf("the output does not name the files:\n%s", out)
	}

	before, _ := os.ReadFile(keyPath)
	out, err = muster(t, "tls", "ca", "create", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), "already exists") || exitCode(err) != 1 {
		t.Fatalf("a second ca create in the same dir: %v (exit %d)\n%s", err, exitCode(err), out)
	}
	if after, _ := os.ReadFile(keyPath); !bytes.Equal(before, after) {
		t.Fatal("the CA key was overwritten")
	}
	// Only the certificate left: still refused, and no key written.
	os.Remove(keyPath)
	if _, err := muster(t, "tls", "ca", "create", "--dir", dir); err == nil {
		t.Fatal("ca create overwrote the CA certificate")
	}
	if _, err := os.Stat(keyPath); err == nil {
		t.Fatal("a refused ca create wrote a key")
	}
	if _, err := muster(t, "tls", "ca", "create", "--dir", t.TempDir(), "--days", "0"); exitCode(err) != 2 {
		t.Fatalf("--days 0: %v, want a usage error", err)
	}
}

// TestTLS_CertCreate: `muster tls cert create --node NAME` writes NAME.pem
// and NAME-key.pem (0600), signed by the CA, for server and client
// authentication, naming NAME and the addresses asked; it verifies
// against the CA for those names. It refuses to overwrite, a CA key that
// others can read or that is not the CA's, a certificate outliving its
// CA, and malformed flags.
func TestTLS_CertCreate(t *testing.T) {
	dir := t.TempDir()
	if out, err := muster(t, "tls", "ca", "create", "--dir", dir, "--days", "100"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := muster(t, "tls", "cert", "create", "--node", "n1", "--dir", dir,
		"--ip", "127.0.0.2", "--ip", "::1,10.0.0.1", "--dns", "n1.example.com", "--dns", "Registry.Internal", "--days", "10")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	certPath, keyPath := filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem")
	if m := fileMode(t, keyPath); m != 0o600 {
		t.Fatalf("the key is mode %04o, want 0600", m)
	}
	if m := fileMode(t, certPath); m != 0o644 {
		t.Fatalf("the certificate is mode %04o, want 0644", m)
	}
	ca, cert := readCert(t, filepath.Join(dir, "muster-ca.pem")), readCert(t, certPath)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, name := range []string{"n1.example.com", "registry.internal", "127.0.0.2", "::1", "10.0.0.1"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("the certificate does not verify against the CA for %s (usage %v): %v", name, usage, err)
			}
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example.com"}); err == nil {
		t.Error("the certificate verifies for a name it was not made for")
	}
	if cert.Subject.CommonName != "n1" || cert.IsCA || cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("subject %q, IsCA %v, key usage %v", cert.Subject.CommonName, cert.IsCA, cert.KeyUsage)
	}
	if d := time.Until(cert.NotAfter); d < 9*24*time.Hour || d > 11*24*time.Hour {
		t.Errorf("the certificate expires in %v, want 10 days", d)
	}
	keyPEM, _ := os.ReadFile(keyPath)
	block, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if ek, ok := key.(*ecdsa.PrivateKey); !ok || ek.Curve != elliptic.P256() || !ek.PublicKey.Equal(cert.PublicKey) {
		t.Fatalf("the key file holds %T, not the P-256 key of the certificate", key)
	}

	other := t.TempDir()
	if _, err := muster(t, "tls", "ca", "create", "--dir", other); err != nil {
		t.Fatal(err)
	}
	looseKey := filepath.Join(t.TempDir(), "ca-key.pem")
	b, _ := os.ReadFile(filepath.Join(dir, "muster-ca-key.pem"))
	os.WriteFile(looseKey, b, 0o644)
	os.Chmod(looseKey, 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want string
		code int
	}{
		{"existing files", []string{"--node", "n1", "--dir", dir}, "already exists", 1},
		{"no node", []string{"--dir", dir}, "needs --node", 2},
		{"node that is a path", []string{"--node", "../n2", "--dir", dir}, "--node", 2},
		{"bad IP", []string{"--node", "n2", "--dir", dir, "--ip", "10.0.0.300"}, `--ip "10.0.0.300"`, 2},
		{"bad DNS name", []string{"--node", "n2", "--dir", dir, "--dns", "a b"}, `--dns "a b"`, 2},
		{"outliving the CA", []string{"--node", "n2", "--dir", dir, "--days", "365"}, "give --days 99 or fewer", 2},
		{"another CA's key", []string{"--node", "n2", "--dir", dir, "--ca-key", filepath.Join(other, "muster-ca-key.pem")}, "is not the key of the certificate", 1},
		{"CA key readable by others", []string{"--node", "n2", "--dir", dir, "--ca-key", looseKey}, "chmod 600 " + looseKey, 1},
		{"no CA", []string{"--node", "n2", "--dir", t.TempDir()}, "muster tls ca create", 1},
		{"a server certificate as the CA", []string{"--node", "n2", "--dir", dir, "--ca", certPath, "--ca-key", keyPath}, "not a CA certificate", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := muster(t, append([]string{"tls", "cert", "create"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != tc.code {
				t.Fatalf("got %v (exit %d), want exit %d and %q\n%s", err, exitCode(err), tc.code, tc.want, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "n2-key.pem")); err == nil {
				t.Fatal("a refused cert create left a key")
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatal("the error holds a key")
			}
		})
	}
}

// TestServerFlags_TLS: --tls-ca, --tls-cert and --tls-key (or
// MUSTER_TLS_CA, MUSTER_TLS_CERT, MUSTER_TLS_KEY) fill the cluster's
// configuration; they go together, exclude --cluster-secret-file, and let
// a server join or form a cluster.
func TestServerFlags_TLS(t *testing.T) {
	files := []string{"--tls-ca", "ca.pem", "--tls-cert", "n1.pem", "--tls-key", "n1-key.pem"}
	cfg, err := serverConfigOf(t, map[string]string{"MUSTER_TLS_CA": "ca.pem", "MUSTER_TLS_CERT": "n1.pem", "MUSTER_TLS_KEY": "n1-key.pem"},
		"--bootstrap-expect", "3", "--join", "127.0.0.3:9000")
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Cluster; c.TLSCAFile != "ca.pem" || c.TLSCertFile != "n1.pem" || c.TLSKeyFile != "n1-key.pem" || c.SecretFile != "" {
		t.Fatalf("from the environment: %+v", c)
	}
	cfg, err = serverConfigOf(t, nil, files...)
	if err != nil || cfg.Cluster.TLSKeyFile != "n1-key.pem" {
		t.Fatalf("from flags: %v, %+v", err, cfg.Cluster)
	}
	conf := writeFile(t, "tls-ca = \"ca.pem\"\ntls-cert = \"n1.pem\"\ntls-key = \"n1-key.pem\"\n")
	cfg, err = serverConfigOf(t, nil, "--config", conf)
	if err != nil || cfg.Cluster.TLSCAFile != "ca.pem" || cfg.Cluster.TLSKeyFile != "n1-key.pem" {
		t.Fatalf("from the config file: %v, %+v", err, cfg.Cluster)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"key missing", files[:4], "the TLS key file (--tls-key) is missing"},
		{"with a secret", append([]string{"--cluster-secret-file", "secret"}, files...), "not both"},
		{"joining with neither", []string{"--join", "127.0.0.3:9000"}, "--tls-ca, --tls-cert and --tls-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := serverConfigOf(t, nil, tc.args...)
			if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (exit %d), want a usage error saying %q", err, exitCode(err), tc.want)
			}
		})
	}
}

// makeCerts makes a CA in dir and a certificate for each of nodes with
// the real commands.
func makeCerts(tb testing.TB, dir string, nodes ...string) {
	tb.Helper()
	if out, err := muster(tb, "tls", "ca", "create", "--dir", dir); err != nil {
		tb.Fatalf("%v\n%s", err, out)
	}
	for _, n := range nodes {
		if out, err := muster(tb, "tls", "cert", "create", "--node", n, "--dir", dir); err != nil {
			tb.Fatalf("%v\n%s", err, out)
		}
	}
}

// tlsArgs are the flags of a server holding node's certificate from dir.
func tlsArgs(dir, node string) []string {
	return []string{"--tls-ca", filepath.Join(dir, "muster-ca.pem"),
		"--tls-cert", filepath.Join(dir, node+".pem"), "--tls-key", filepath.Join(dir, node+"-key.pem")}
}

// startCertClusterProcs is startClusterProcs with each server holding a
// certificate of its own from one CA in certs, made with `muster tls`,
// instead of the shared secret.
func startCertClusterProcs(tb testing.TB, n int, certs string) []*member {
	tb.Helper()
	dir := tb.TempDir()
	ms := make([]*member, n)
	raft := make([]string, n)
	for i := range ms {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		ms[i] = &member{id: fmt.Sprintf("n%d", i+1), httpAddr: freeAddrOn(tb, ip)}
		raft[i] = freeAddrOn(tb, ip)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.id)
	}
	makeCerts(tb, certs, ids...)
	for i, m := range ms {
		var join []string
		for j, o := range ms {
			if j != i {
				join = append(join, o.httpAddr)
			}
		}
		m.args = append([]string{"server", "--node-id", m.id, "--http-addr", m.httpAddr, "--raft-addr", raft[i],
			"--data-dir", filepath.Join(dir, m.id), "--bootstrap-expect", fmt.Sprint(n), "--join", strings.Join(join, ","),
			"--log-format", "json"}, tlsArgs(certs, m.id)...)
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); m.start(tb) }()
	}
	wg.Wait()
	for _, m := range ms {
		m.p.waitReady(tb, 30*time.Second)
	}
	return ms
}

// TestClusterProcess_Certificates: three `muster server` processes on
// 127.0.0.2–4, each with its own certificate from one CA made by `muster
// tls` and no cluster secret, form one cluster and forward a write from
// a follower; a fourth server with a certificate from another CA is
// refused in the handshake (the members log why) and never joins.
func TestClusterProcess_Certificates(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	certs := t.TempDir()
	ms := startCertClusterProcs(t, 3, certs)
	lead := leaderOf(t, ms)
	follower, _ := client.New(client.Config{Addr: "http://" + ms[(lead+1)%3].httpAddr, Token: clusterAdmin})
	if _, err := follower.CreateKey(context.Background(), []string{"web"}, "through a follower"); err != nil {
		t.Fatalf("a write through a follower: %v", err)
	}
	res, err := follower.Members(context.Background())
	if err != nil || len(res.Members) != 3 {
		t.Fatalf("members: %+v, %v", res, err)
	}
	for _, m := range ms {
		if !strings.Contains(m.p.log.String(), "accepts only peers that prove they hold a certificate from the cluster CA") {
			t.Fatalf("%s did not listen in certificate mode:\n%s", m.id, m.p.log.String())
		}
	}

	otherCA := t.TempDir()
	makeCerts(t, otherCA, "n4")
	ip := "127.0.0.5"
	stranger := &member{id: "n4", httpAddr: freeAddrOn(t, ip)}
	stranger.args = append([]string{"server", "--node-id", "n4", "--http-addr", stranger.httpAddr,
		"--raft-addr", freeAddrOn(t, ip), "--data-dir", filepath.Join(t.TempDir(), "n4"),
		"--join", ms[lead].httpAddr, "--log-format", "json"}, tlsArgs(otherCA, "n4")...)
	stranger.start(t)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stranger.p.log.String(), "not signed by the cluster CA") {
		if time.Now().After(deadline) {
			t.Fatalf("the stranger was not told why it was refused:\n%s", stranger.p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The member writes its line as it refuses, which may come after the
	// stranger's own line: it is waited for.
	for deadline := time.Now().Add(5 * time.Second); !slices.ContainsFunc(ms, func(m *member) bool {
		return strings.Contains(m.p.log.String(), "refused a connection that did not prove it holds a certificate from the cluster CA")
	}); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no member logged the refusal")
		}
	}
	res, err = follower.Members(context.Background())
	if err != nil || len(res.Members) != 3 {
		t.Fatalf("members after the stranger knocked: %+v, %v", res, err)
	}
	if resp, err := http.Get(stranger.p.url + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("the stranger is ready: it joined a cluster")
		}
	}
}

// TestDocs_ClusterCertificates: docs/cluster.md's three servers with
// certificates from a cluster CA run as written.
func TestDocs_ClusterCertificates(t *testing.T) {
	runClusterDoc(t, "docs/cluster.md", "## Certificates from a cluster CA")
}
