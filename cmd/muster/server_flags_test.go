package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestServerProcess_DiskReserve: with --disk-reserve-mib above the free
// space of the data dir's disk, the server starts, reads work, writes get
// a retryable 503 naming the disk, and /readyz says degraded: disk.
func TestServerProcess_DiskReserve(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	ctx := context.Background()
	dir := t.TempDir()
	p := startProc(t, dir, "--disk-reserve-mib", "1000000000") // a petabyte: never free
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	if _, err := admin.CreateKey(ctx, []string{"web"}, ""); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("a write on a disk below the reserve: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, p.url+"/v1/keys", strings.NewReader(`{"services":["web"]}`))
	req.Header.Set("Authorization", "Bearer "+adminToken(t, dir))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var eb api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != 503 || eb.Error.Code != api.CodeUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(eb.Error.Message, "disk") {
		t.Fatalf("a write below the reserve: %d %+v, Retry-After %q", resp.StatusCode, eb, resp.Header.Get("Retry-After"))
	}
	if _, err := admin.Services(ctx); err != nil {
		t.Fatalf("a read on a disk below the reserve: %v", err)
	}
	resp, err = http.Get(p.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var h api.Health
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != 200 || h.Degraded != "disk" {
		t.Fatalf("/readyz = %d %+v, want 200 degraded: disk", resp.StatusCode, h)
	}

	// With the guard off (0) on the same data dir, writes work.
	p.kill9(t)
	p = startProc(t, dir, "--disk-reserve-mib", "0")
	registerWeb(t, p, dir)
}

// registerWeb registers an instance of service web at 127.0.0.1 with a
// new enrolment key, on the server p over the data dir dir, and returns
// its port.
func registerWeb(t *testing.T, p *proc, dir string) int {
	t.Helper()
	ctx := context.Background()
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	k, err := admin.CreateKey(ctx, []string{"web"}, "")
	if err != nil {
		t.Fatal(err)
	}
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := admin.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()}); err != nil {
		t.Fatal(err)
	}
	return in.Port()
}

// TestServer_SeedCompatNeedsNames: --seed-compat without --seed-services,
// or with wildcards alone, refuses to start, before it creates anything.
func TestServer_SeedCompatNeedsNames(t *testing.T) {
	for _, extra := range [][]string{nil, {"--seed-services", "*"}, {"--seed-services", "fetch_url,**"}} {
		dir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"server", "--http-addr", "127.0.0.1:0", "--data-dir", dir, "--seed-compat"}, extra...)
		_, err := cli(t, nil, args...)
		if err == nil || !strings.Contains(err.Error(), "seed") {
			t.Fatalf("%v: %v", extra, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v: the refused start created the data dir (%v)", extra, err)
		}
	}
}

// TestServer_BadFlagValuesAreUsageErrors: a flag value a component
// refuses exits 2, like any command-line mistake, before anything is
// created.
func TestServer_BadFlagValuesAreUsageErrors(t *testing.T) {
	for _, bad := range [][]string{
		{"--expiry-grace", "-5s"}, {"--verify-timeout", "0s"}, {"--max-instances-per-key", "-1"},
		{"--verify-allow", "notacidr"}, {"--register-rate", "-1"},
		{"--expiry-protection", "maybe"}, {"--expiry-protection-threshold", "30"}, {"--expiry-protection-min-instances", "0"},
		{"--expiry-protection-overdue-factor", "1"}, {"--expiry-protection-max-hold", "0s"},
		{"--expiry-protection-cooldown", "-1s"},
		{"--dns-ttl", "1500ms"}, {"--dns-ttl", "-1s"}, {"--dns-domain", "."}, {"--dns-domain", "bad_domain"},
		{"--dns-addr", "8600"},
		{"--trust-domain", "Muster.Local"}, {"--trust-domain", "a..b"}, {"--cert-ttl", "1m"}, {"--cert-ttl", "48h"},
		{"--ca-cert", "ca.pem"}, {"--ca-key", "ca-key.pem"},
	} {
		dir := filepath.Join(t.TempDir(), "data")
		args := append([]string{"server", "--http-addr", "127.0.0.1:0", "--data-dir", dir}, bad...)
		_, errOut, code, err := runCLI(t, nil, args...)
		if code != 2 || err == nil || !strings.Contains(errOut, "-h") {
			t.Errorf("%v: exit %d, %v\n%s", bad, code, err, errOut)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v: the refused start created the data dir", bad)
		}
	}
}

// TestServerConfig_ExpiryProtection: mass-expiry protection is on by
// default with the component's defaults; --expiry-protection=off turns it
// off, and each tuning flag comes from the command line, its MUSTER_
// variable or the config file, in that order.
func TestServerConfig_ExpiryProtection(t *testing.T) {
	def := server.DefaultConfig().Liveness.Protection
	file := writeFile(t, `
expiry-protection = "off"
expiry-protection-threshold = 0.5
expiry-protection-min-instances = 50
expiry-protection-overdue-factor = 2
expiry-protection-max-hold = "5m"
expiry-protection-cooldown = "10m"
`)
	type prot struct {
		on        bool
		threshold float64
		min       int
		factor    float64
		maxHold   time.Duration
		cooldown  time.Duration
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want prot
	}{
		{"default", nil, nil, prot{true, def.Threshold, def.MinInstances, def.OverdueFactor, def.MaxHold, def.Cooldown}},
		{"off", nil, []string{"--expiry-protection=off"}, prot{false, def.Threshold, def.MinInstances, def.OverdueFactor, def.MaxHold, def.Cooldown}},
		{"flags", nil, []string{"--expiry-protection", "on", "--expiry-protection-threshold", "0.4", "--expiry-protection-min-instances", "100",
			"--expiry-protection-overdue-factor", "1.8", "--expiry-protection-max-hold", "90s", "--expiry-protection-cooldown", "3m"}, prot{true, 0.4, 100, 1.8, 90 * time.Second, 3 * time.Minute}},
		{"env", map[string]string{"MUSTER_EXPIRY_PROTECTION": "off", "MUSTER_EXPIRY_PROTECTION_THRESHOLD": "0.25",
			"MUSTER_EXPIRY_PROTECTION_MIN_INSTANCES": "30", "MUSTER_EXPIRY_PROTECTION_OVERDUE_FACTOR": "1.25",
			"MUSTER_EXPIRY_PROTECTION_MAX_HOLD": "1m", "MUSTER_EXPIRY_PROTECTION_COOLDOWN": "4m"}, nil, prot{false, 0.25, 30, 1.25, time.Minute, 4 * time.Minute}},
		{"file", nil, []string{"--config", file}, prot{false, 0.5, 50, 2, 5 * time.Minute, 10 * time.Minute}},
		{"env over file, flag over env", map[string]string{"MUSTER_EXPIRY_PROTECTION": "on", "MUSTER_EXPIRY_PROTECTION_MAX_HOLD": "1m", "MUSTER_EXPIRY_PROTECTION_COOLDOWN": "1m"},
			[]string{"--config", file, "--expiry-protection-max-hold", "3m"}, prot{true, 0.5, 50, 2, 3 * time.Minute, time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := serverConfigOf(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Liveness.Protection
			if got := (prot{p.Enabled, p.Threshold, p.MinInstances, p.OverdueFactor, p.MaxHold, p.Cooldown}); got != tc.want {
				t.Fatalf("protection %+v, want %+v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ text, want string }{
		{"expiry-protection = true\n", "expiry-protection: want a string, got a boolean"},
		{"expiry-protection = \"maybe\"\n", "must be one of on, off"},
		{"expiry-protection-threshold = \"30%\"\n", "expiry-protection-threshold: want a number, got a string"},
		{"expiry-protection-cooldown = \"-1m\"\n", "cooldown must not be negative"},
	} {
		_, err := serverConfigOf(t, nil, "--config", writeFile(t, tc.text))
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a usage error with %q", tc.text, err, tc.want)
		}
	}
}

// TestServerConfig_DNS: DNS is off by default; --dns-addr, --dns-domain
// and --dns-ttl come from the command line, their MUSTER_ variables or
// the config file, in that order.
func TestServerConfig_DNS(t *testing.T) {
	file := writeFile(t, `
dns-addr = "127.0.0.1:8600"
dns-domain = "disco.internal"
dns-ttl = "5s"
`)
	type dnsCfg struct {
		addr, domain string
		ttl          time.Duration
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want dnsCfg
	}{
		{"default", nil, nil, dnsCfg{"", "muster.", 0}},
		{"flags", nil, []string{"--dns-addr", "[::1]:53", "--dns-domain", "consul", "--dns-ttl", "2s"}, dnsCfg{"[::1]:53", "consul", 2 * time.Second}},
		{"env", map[string]string{"MUSTER_DNS_ADDR": "127.0.0.1:5353", "MUSTER_DNS_DOMAIN": "x.y", "MUSTER_DNS_TTL": "1s"}, nil, dnsCfg{"127.0.0.1:5353", "x.y", time.Second}},
		{"file", nil, []string{"--config", file}, dnsCfg{"127.0.0.1:8600", "disco.internal", 5 * time.Second}},
		{"env over file, flag over env", map[string]string{"MUSTER_DNS_ADDR": "127.0.0.1:5353", "MUSTER_DNS_TTL": "3s"},
			[]string{"--config", file, "--dns-ttl", "4s"}, dnsCfg{"127.0.0.1:5353", "disco.internal", 4 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := serverConfigOf(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := (dnsCfg{cfg.DNS.Addr, cfg.DNS.Domain, cfg.DNS.TTL}); got != tc.want {
				t.Fatalf("dns %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestServerProcess_DNS: the binary with --dns-addr answers DNS on it, as
// it logs (dns_addr), with the instances an HTTP lookup shows.
func TestServerProcess_DNS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	dir := t.TempDir()
	p := startProc(t, dir, "--dns-addr", "127.0.0.1:0", "--dns-ttl", "1s")
	var dnsAddr string
	for _, line := range strings.Split(p.log.String(), "\n") {
		var rec struct {
			Msg     string
			DNSAddr string `json:"dns_addr"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "muster listening" {
			dnsAddr = rec.DNSAddr
		}
	}
	if dnsAddr == "" {
		t.Fatalf("the server logged no dns_addr:\n%s", p.log.String())
	}
	port := registerWeb(t, p, dir)
	q := new(dns.Msg)
	q.SetQuestion("web.service.muster.", dns.TypeSRV)
	for _, network := range []string{"udp", "tcp"} {
		m, _, err := (&dns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(q, dnsAddr)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Answer) != 1 || m.Answer[0].(*dns.SRV).Port != uint16(port) || m.Answer[0].Header().Ttl != 1 {
			t.Errorf("%s: %v", network, m.Answer)
		}
	}
}
