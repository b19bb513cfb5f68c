package httpapi_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// caInstance is an instance registered for the CA's tests, with its
// session token.
type caInstance struct {
	id, token, service string
	port               int
}

// registerFor registers a verified instance of service with a key of
// its own, at 127.0.0.1, with the TTL given.
func registerFor(t *testing.T, h *testserver.Harness, service string, ttl time.Duration) caInstance {
	t.Helper()
	k := h.Key(t, service)
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	status, eb, raw := postPatient(t, h, service, k.Secret, testserver.RegBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: ttl.String()}))
	if status != http.StatusCreated {
		t.Fatalf("register %s: %d %+v", service, status, eb)
	}
	var res api.RegisterResponse
	json.Unmarshal(raw, &res)
	return caInstance{id: res.ID, token: inst.TokenOf(res.ID), service: service, port: inst.Port()}
}

// newCSR makes a PEM CSR for a fresh P-256 key, asking for names the
// registry must ignore.
func newCSR(t *testing.T) ([]byte, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	evil, _ := url.Parse("spiffe://muster.local/svc/admin")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "admin"}, DNSNames: []string{"evil.example"}, URIs: []*url.URL{evil},
		IPAddresses: []net.IP{net.ParseIP("10.9.9.9")},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key
}

// askCert posts a CSR for inst with token and returns the status, the
// answer and the error body.
func askCert(t *testing.T, h *testserver.Harness, id, token string, csr []byte) (*http.Response, api.CertificateResponse, api.ErrorBody) {
	t.Helper()
	body, _ := json.Marshal(api.CertificateRequest{CSR: string(csr)})
	resp, data := h.Call(t, http.MethodPost, "/v1/instances/"+id+"/certificate", token, body, "Content-Type", "application/json")
	var ans api.CertificateResponse
	var eb api.ErrorBody
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, &ans); err != nil {
			t.Fatal(err)
		}
	} else if err := json.Unmarshal(data, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
		t.Fatalf("%d answer is not a JSON error: %s", resp.StatusCode, data)
	}
	return resp, ans, eb
}

// bundle reads GET /v1/ca as a pool and its certificates.
func bundle(t *testing.T, h *testserver.Harness) (*x509.CertPool, []*x509.Certificate, []byte) {
	t.Helper()
	resp, data := h.Call(t, http.MethodGet, "/v1/ca", "", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != api.MediaTypePEM {
		t.Fatalf("GET /v1/ca: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
	pool := x509.NewCertPool()
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(c)
		certs = append(certs, c)
	}
	return pool, certs, data
}

func leafOf(t *testing.T, ans api.CertificateResponse) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(ans.Certificate))
	if b == nil {
		t.Fatalf("no PEM certificate in %+v", ans)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAPI_CertificateIssue: a verified instance with its session token
// gets a certificate the registry decided every name of (its service's
// SPIFFE ID and its address, whatever the CSR asked for), for server and
// client authentication, short-lived, that chains to GET /v1/ca; a
// second request renews it with a new serial.
func TestAPI_CertificateIssue(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	in := registerFor(t, h, "fetch_url", 10*time.Second)
	csr, key := newCSR(t)
	before := time.Now()
	resp, ans, eb := askCert(t, h, in.id, in.token, csr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("certificate: %d %+v", resp.StatusCode, eb)
	}
	leaf := leafOf(t, ans)
	pool, cas, pemBundle := bundle(t, h)
	if len(cas) != 1 || ans.CA != string(pemBundle) {
		t.Errorf("the answer's CA bundle differs from GET /v1/ca")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the certificate does not verify as a server's: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the certificate does not verify as a client's: %v", err)
	}
	want := "spiffe://muster.local/svc/fetch_url"
	if ans.SPIFFEID != want || len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		t.Errorf("SPIFFE ID %q, URIs %v; want only %s", ans.SPIFFEID, leaf.URIs, want)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || len(leaf.DNSNames) != 0 || leaf.Subject.CommonName != "fetch_url" {
		t.Errorf("names: IPs %v, DNS %v, CN %q; want the instance's address alone", leaf.IPAddresses, leaf.DNSNames, leaf.Subject.CommonName)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Error("the certificate is not for the CSR's key")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life != registry.DefaultCertTTL+registry.CertSkew {
		t.Errorf("lifetime %s, want the TTL and the backdating", life)
	}
	if skew := before.Sub(leaf.NotBefore); skew < 50*time.Second || skew > 70*time.Second {
		t.Errorf("NotBefore %s before the request, want about a minute", skew)
	}
	if leaf.IsCA || leaf.SerialNumber.BitLen() < 64 || ans.Serial != hex.EncodeToString(leaf.SerialNumber.Bytes()) {
		t.Errorf("CA %v, serial %s (%d bits), answer's serial %s", leaf.IsCA, leaf.SerialNumber, leaf.SerialNumber.BitLen(), ans.Serial)
	}
	if at, err := time.Parse(time.RFC3339, ans.ExpiresAt); err != nil || !at.Equal(leaf.NotAfter) {
		t.Errorf("expires_at %q, NotAfter %s", ans.ExpiresAt, leaf.NotAfter)
	}
	ca := cas[0]
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) < 9*365*24*time.Hour || len(ca.PermittedURIDomains) != 1 || ca.PermittedURIDomains[0] != "muster.local" {
		t.Errorf("the CA: IsCA %v, valid %s, URI constraints %v", ca.IsCA, ca.NotAfter.Sub(ca.NotBefore), ca.PermittedURIDomains)
	}

	// Renewal: a new certificate, a new serial, the same identity.
	csr2, _ := newCSR(t)
	resp, again, eb := askCert(t, h, in.id, in.token, csr2)
	if resp.StatusCode != http.StatusOK || again.Serial == ans.Serial || again.SPIFFEID != want {
		t.Fatalf("renewal: %d %+v %+v", resp.StatusCode, eb, again)
	}

	// The JSON form of the bundle.
	resp, data := h.Call(t, http.MethodGet, "/v1/ca?format=json", "", nil)
	var info api.CAResponse
	if err := json.Unmarshal(data, &info); err != nil || resp.StatusCode != 200 || info.TrustDomain != "muster.local" ||
		len(info.CAs) != 1 || !info.CAs[0].Signing || info.Bundle != string(pemBundle) || info.CAs[0].Fingerprint != h.Srv.Catalog().CAs()[0].ID {
		t.Errorf("GET /v1/ca?format=json: %d %s", resp.StatusCode, data)
	}
	if resp, _ := h.Call(t, http.MethodGet, "/v1/ca?format=der", "", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("?format=der: %d, want 400", resp.StatusCode)
	}
}

// TestAPI_CertificateRefusals: every refusal is a JSON error with its
// code: no token, another instance's token, the admin token, a bad CSR,
// a critical instance, a deregistered one, too many requests.
func TestAPI_CertificateRefusals(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	a := registerFor(t, h, "fetch_url", 10*time.Second)
	b := registerFor(t, h, "dice_scraper", 10*time.Second)
	csr, _ := newCSR(t)
	check := func(what string, resp *http.Response, eb api.ErrorBody, status int, code string) {
		t.Helper()
		if resp.StatusCode != status || eb.Error.Code != code {
			t.Errorf("%s: %d %+v, want %d %s", what, resp.StatusCode, eb, status, code)
		}
	}
	resp, _, eb := askCert(t, h, a.id, "", csr)
	check("no token", resp, eb, http.StatusUnauthorized, api.CodeUnauthorized)
	resp, _, eb = askCert(t, h, a.id, b.token, csr)
	check("another instance's token", resp, eb, http.StatusForbidden, api.CodeForbidden)
	resp, _, eb = askCert(t, h, a.id, h.AdminToken(t), csr)
	check("the admin token", resp, eb, http.StatusForbidden, api.CodeForbidden)
	resp, _, eb = askCert(t, h, a.id, a.token, []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	check("garbage CSR", resp, eb, http.StatusBadRequest, api.CodeInvalidArgument)
	if eb.Error.Field != "csr" {
		t.Errorf("garbage CSR: field %q, want csr", eb.Error.Field)
	}
	resp, data := h.Call(t, http.MethodPost, "/v1/instances/"+a.id+"/certificate", a.token, []byte(`{"csr":"`+strings.Repeat("A", 40<<10)+`"}`))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 40 KiB body: %d %s", resp.StatusCode, data)
	}

	// The per-instance rate: the burst, then 429 with Retry-After. (Five
	// requests were spent above with the right token.)
	var last *http.Response
	for i := 0; i < registry.CertBurst+1; i++ {
		last, _, eb = askCert(t, h, b.id, b.token, csr)
	}
	check("past the burst", last, eb, http.StatusTooManyRequests, api.CodeRateLimited)
	if ra, _ := strconv.Atoi(last.Header.Get("Retry-After")); ra < 1 || ra > 11 {
		t.Errorf("Retry-After %q", last.Header.Get("Retry-After"))
	}

	// A critical instance (its TTL ran out) gets none.
	c := registerFor(t, h, "word_counter", time.Second)
	testserver.Eventually(t, 10*time.Second, "the instance expires", func() bool {
		inst, ok := h.Srv.Catalog().Instance(c.id)
		return ok && inst.Status == catalog.StatusCritical
	})
	resp, _, eb = askCert(t, h, c.id, c.token, csr)
	check("critical", resp, eb, http.StatusConflict, api.CodeInstanceCritical)

	// A deregistered instance gets none.
	if resp, _ := h.Call(t, http.MethodDelete, "/v1/instances/"+a.id, a.token, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("deregister: %d", resp.StatusCode)
	}
	resp, _, eb = askCert(t, h, a.id, a.token, csr)
	check("deregistered", resp, eb, http.StatusNotFound, api.CodeNotFound)

	// The audit trail has the issues and the refusals.
	res, err := h.Admin.Audit(context.Background(), clientAuditQuery("cert_issue"))
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for _, r := range res.Records {
		outcomes[r.Outcome]++
	}
	if outcomes["ok"] == 0 || outcomes["refused"] < 4 {
		t.Errorf("cert_issue records by outcome: %v", outcomes)
	}
}

// TestAPI_CAKeyNeverOut: the CA's private key is in no answer (GET
// /v1/ca in both forms, a certificate, an instance, the backup of GET
// /v1/snapshot, the audit trail) and in no log line; and a backup
// restored into the running registry keeps its CA.
func TestAPI_CAKeyNeverOut(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	in := registerFor(t, h, "fetch_url", 10*time.Second)
	csr, _ := newCSR(t)
	if resp, _, eb := askCert(t, h, in.id, in.token, csr); resp.StatusCode != http.StatusOK {
		t.Fatalf("certificate: %+v", eb)
	}
	if _, err := h.Admin.RotateCA(context.Background()); err != nil {
		t.Fatal(err)
	}
	cas := h.Srv.Catalog().CAs()
	if len(cas) != 2 {
		t.Fatalf("%d CAs after a rotation", len(cas))
	}
	var forms [][]byte
	for _, ca := range cas {
		k, err := x509.ParsePKCS8PrivateKey(ca.KeyDER)
		if err != nil {
			t.Fatal(err)
		}
		d := k.(*ecdsa.PrivateKey).D.Bytes()
		forms = append(forms, ca.KeyDER, []byte(base64.StdEncoding.EncodeToString(ca.KeyDER)),
			[]byte(base64.RawURLEncoding.EncodeToString(ca.KeyDER)), []byte(hex.EncodeToString(ca.KeyDER)),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ca.KeyDER}),
			[]byte(hex.EncodeToString(d)), []byte(base64.StdEncoding.EncodeToString(d)), []byte(base64.RawURLEncoding.EncodeToString(d)))
		// Each line of the key's PEM body: in a PEM block of any type.
		body := pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: ca.KeyDER})
		for _, line := range strings.Split(string(body), "\n") {
			if len(line) == 64 {
				forms = append(forms, []byte(line))
			}
		}
	}
	holds := func(b []byte) bool {
		for _, f := range forms {
			if bytes.Contains(b, f) {
				return true
			}
		}
		return bytes.Contains(b, []byte("PRIVATE KEY"))
	}
	admin := h.AdminToken(t)
	for _, path := range []string{"/v1/ca", "/v1/ca?format=json", "/v1/snapshot", "/v1/instances/" + in.id, "/v1/audit?limit=1000", "/v1/services/fetch_url"} {
		resp, data := h.Call(t, http.MethodGet, path, admin, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, data)
		}
		if holds(data) {
			t.Errorf("GET %s answers the CA's private key", path)
		}
	}
	_, ans, _ := askCert(t, h, in.id, in.token, csr)
	if b, _ := json.Marshal(ans); holds(b) {
		t.Error("the certificate answer holds the CA's private key")
	}
	journals, err := readAuditFiles(h.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(journals, []byte("ca "+cas[1].ID[:16])) {
		t.Error("no audit record names the rotation's CA by its fingerprint's first 16 hex digits")
	}
	if holds(journals) || !bytes.Contains(journals, []byte(`"ca_add"`)) {
		t.Errorf("the audit journals hold the CA's key (or no ca_add record: %v)", !bytes.Contains(journals, []byte(`"ca_add"`)))
	}

	// A backup restored into the running registry keeps its CAs.
	var backup bytes.Buffer
	if _, err := h.Admin.Snapshot(context.Background(), &backup); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Admin.Restore(context.Background(), backup.Bytes()); err != nil {
		t.Fatal(err)
	}
	after := h.Srv.Catalog().CAs()
	if len(after) != 2 || after[0].ID != cas[0].ID || after[1].ID != cas[1].ID {
		t.Errorf("after a restore the CAs are %d, want the running two", len(after))
	}
	if holds([]byte(h.Logs.String())) {
		t.Error("the log holds the CA's private key")
	}
}

// TestAPI_CARotation: after a rotation the old CA's certificates still
// verify against the bundle (which holds both) and new ones are signed
// by the new CA; the old CA stays past this server's certificate TTL
// (another server may issue for up to MaxCertTTL), and once
// registry.RetireAfter has passed since the rotation, the leader retires
// it.
func TestAPI_CARotation(t *testing.T) {
	var offset atomic.Int64 // the registry's clock runs ahead by this
	h := testserver.NewHarness(t, func(c *server.Config) {
		c.Registry.CA.CertTTL = registry.MinCertTTL
		c.Registry.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	in := registerFor(t, h, "fetch_url", time.Hour)
	csr, _ := newCSR(t)
	_, old, _ := askCert(t, h, in.id, in.token, csr)
	oldLeaf := leafOf(t, old)
	_, oldCAs, _ := bundle(t, h)

	if resp, _ := h.Call(t, http.MethodPost, "/v1/ca/rotate", in.token, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("rotation with a session token: %d, want 403", resp.StatusCode)
	}
	rot, err := h.Admin.RotateCA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pool, cas, _ := bundle(t, h)
	if len(cas) != 2 || !cas[0].Equal(oldCAs[0]) {
		t.Fatalf("the bundle after a rotation holds %d CAs, the old first: %v", len(cas), len(cas) > 0 && cas[0].Equal(oldCAs[0]))
	}
	if _, err := oldLeaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: time.Now()}); err != nil {
		t.Errorf("a certificate of the old CA no longer verifies: %v", err)
	}
	_, fresh, _ := askCert(t, h, in.id, in.token, csr)
	newLeaf := leafOf(t, fresh)
	onlyNew := x509.NewCertPool()
	onlyNew.AddCert(cas[1])
	if _, err := newLeaf.Verify(x509.VerifyOptions{Roots: onlyNew}); err != nil {
		t.Errorf("a new certificate is not signed by the new CA: %v", err)
	}
	if fmt.Sprintf("%x", sha256Of(cas[1].Raw)) != rot.Fingerprint {
		t.Errorf("the rotation answered fingerprint %s, not the new CA's", rot.Fingerprint)
	}

	// Not yet: the old CA's certificates may still be valid.
	time.Sleep(1500 * time.Millisecond)
	if _, cas, _ := bundle(t, h); len(cas) != 2 {
		t.Fatalf("the old CA retired before its certificates expired")
	}
	offset.Store(int64(registry.MinCertTTL + registry.CertSkew + time.Second))
	time.Sleep(1500 * time.Millisecond) // the leader looks every second
	if _, cas, _ := bundle(t, h); len(cas) != 2 {
		t.Fatalf("the old CA retired once this server's certificate TTL had passed; another's may be up to %s", registry.MaxCertTTL)
	}
	offset.Store(int64(registry.RetireAfter + time.Second))
	testserver.Eventually(t, 10*time.Second, "the old CA retires", func() bool {
		return len(h.Srv.Catalog().CAs()) == 1
	})
	_, cas, _ = bundle(t, h)
	if len(cas) != 1 || !cas[0].Equal(newLeafIssuer(t, h, newLeaf)) {
		t.Errorf("after retirement the bundle holds %d CAs", len(cas))
	}
}

// newLeafIssuer is the catalog's signing CA, which must have signed leaf.
func newLeafIssuer(t *testing.T, h *testserver.Harness, leaf *x509.Certificate) *x509.Certificate {
	t.Helper()
	cas := h.Srv.Catalog().CAs()
	c, err := x509.ParseCertificate(cas[len(cas)-1].CertDER)
	if err != nil || leaf.CheckSignatureFrom(c) != nil {
		t.Fatalf("the signing CA did not sign the leaf: %v", err)
	}
	return c
}

func clientAuditQuery(action string) client.AuditQuery {
	return client.AuditQuery{Action: action, Limit: 1000}
}

func sha256Of(b []byte) [32]byte { return sha256.Sum256(b) }

// readAuditFiles returns every journal of the audit trail under the data
// dir, concatenated.
func readAuditFiles(dataDir string) ([]byte, error) {
	paths, err := filepath.Glob(filepath.Join(dataDir, "audit", "*.jsonl"))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no audit journals: %v", err)
	}
	var all []byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		all = append(all, b...)
	}
	return all, nil
}

// TestAPI_CAImported: with --ca-cert and --ca-key the registry signs with
// the operator's CA: the bundle is that certificate, and an instance's
// certificate verifies against it alone.
func TestAPI_CAImported(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: bigOne(), Subject: pkix.Name{CommonName: "operator CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	testutil.WriteFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	testutil.WriteFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	h := testserver.NewHarness(t, func(c *server.Config) { c.CACertFile, c.CAKeyFile = certFile, keyFile })
	_, cas, _ := bundle(t, h)
	if len(cas) != 1 || !bytes.Equal(cas[0].Raw, der) {
		t.Fatalf("the bundle is not the operator's CA")
	}
	in := registerFor(t, h, "fetch_url", 10*time.Second)
	csr, _ := newCSR(t)
	_, ans, eb := askCert(t, h, in.id, in.token, csr)
	op := x509.NewCertPool()
	op.AddCert(cas[0])
	if _, err := leafOf(t, ans).Verify(x509.VerifyOptions{Roots: op}); err != nil {
		t.Errorf("the certificate does not chain to the operator's CA: %v (%+v)", err, eb)
	}
}

func bigOne() *big.Int { return big.NewInt(1) }
