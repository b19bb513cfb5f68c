package main

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
)

// TestCLI_CA: muster ca show prints the bundle as PEM (and the
// fingerprints with -o id), muster ca rotate adds a CA with the admin
// token, and refuses without it.
func TestCLI_CA(t *testing.T) {
	dir := t.TempDir()
	s := testserver.Start(t, func(c *server.Config) { c.DataDir = dir })
	env := map[string]string{"MUSTER_ADDR": s.URL(), "MUSTER_TOKEN": adminToken(t, dir)}

	out, err := cli(t, env, "ca", "show")
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode([]byte(out))
	if b == nil || strings.TrimSpace(string(rest)) != "" || strings.Contains(out, "PRIVATE") {
		t.Fatalf("ca show: %q", out)
	}
	if c, err := x509.ParseCertificate(b.Bytes); err != nil || !c.IsCA {
		t.Fatalf("ca show printed no CA certificate: %v", err)
	}
	first := s.Catalog().CAs()[0].ID
	if out, err := cli(t, env, "ca", "show", "-o", "id"); err != nil || strings.TrimSpace(out) != first {
		t.Errorf("ca show -o id: %q, %v; want %s", out, err, first)
	}
	if _, code, _, _ := runCLIStatus(t, map[string]string{"MUSTER_ADDR": s.URL()}, "ca", "rotate"); code != 1 {
		t.Errorf("ca rotate without the admin token: exit %d, want 1", code)
	}
	out, err = cli(t, env, "ca", "rotate")
	if err != nil {
		t.Fatal(err)
	}
	cas := s.Catalog().CAs()
	if len(cas) != 2 || strings.TrimSpace(out) != cas[1].ID {
		t.Errorf("ca rotate printed %q; the catalog holds %d CAs", out, len(cas))
	}
	if out, err := cli(t, env, "ca", "show", "-o", "table"); err != nil || !strings.Contains(out, cas[0].ID) || !strings.Contains(out, cas[1].ID) ||
		!strings.Contains(out, "muster.local") {
		t.Errorf("ca show -o table: %q, %v", out, err)
	}
}

// runCLIStatus is runCLI with the exit code second.
func runCLIStatus(tb testing.TB, env map[string]string, args ...string) (string, int, string, error) {
	out, errOut, code, err := runCLI(tb, env, args...)
	return out, code, errOut, err
}

// TestServerConfig_CA: --trust-domain and --cert-ttl come from the
// command line, their MUSTER_ variable or the config file, in that
// order, and default to muster.local and 1h.
func TestServerConfig_CA(t *testing.T) {
	file := writeFile(t, `
trust-domain = "prod.example"
cert-ttl = "30m"
`)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		domain string
		ttl    time.Duration
	}{
		{"default", nil, nil, "muster.local", time.Hour},
		{"flags", nil, []string{"--trust-domain", "a.b", "--cert-ttl", "10m"}, "a.b", 10 * time.Minute},
		{"env", map[string]string{"MUSTER_TRUST_DOMAIN": "env.example", "MUSTER_CERT_TTL": "2h"}, nil, "env.example", 2 * time.Hour},
		{"file", nil, []string{"--config", file}, "prod.example", 30 * time.Minute},
		{"env over file, flag over env", map[string]string{"MUSTER_TRUST_DOMAIN": "env.example", "MUSTER_CERT_TTL": "2h"},
			[]string{"--config", file, "--cert-ttl", "6m"}, "env.example", 6 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := serverConfigOf(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if ca := cfg.Registry.CA; ca.TrustDomain != tc.domain || ca.CertTTL != tc.ttl {
				t.Fatalf("CA config %+v, want %s and %s", ca, tc.domain, tc.ttl)
			}
		})
	}
}
