package dnsapi_test

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/musterhq/muster/internal/server"
)

// TestDNS_ServicesLimit: with --dns-services, DNS answers for the
// services the patterns name and for nothing else, by service or by
// instance name: another is NXDOMAIN, as a name with no instance is, so
// that DNS shows nothing of it. This is how a registry whose reads need a
// token still serves DNS, which cannot ask for one.
func TestDNS_ServicesLimit(t *testing.T) {
	r := newRig(t, func(c *server.Config) {
		c.Registry.PrivateReads = true
		c.DNS.Services = []string{"web", "api-*"}
	})
	web := r.register(t, "web", "127.0.0.2", "", 8080, "1h")
	r.register(t, "api-v2", "127.0.0.3", "", 8080, "1h")
	db := r.register(t, "db", "127.0.0.4", "", 8080, "1h")
	for name, want := range map[string]int{
		"web.service.muster.":     dns.RcodeSuccess,
		"api-v2.service.muster.":  dns.RcodeSuccess,
		web + ".instance.muster.": dns.RcodeSuccess,
		"db.service.muster.":      dns.RcodeNameError,
		db + ".instance.muster.":  dns.RcodeNameError,
		"nosuch.service.muster.":  dns.RcodeNameError,
	} {
		m := r.query(t, "udp", name, dns.TypeA, 0)
		if m.Rcode != want || (want == dns.RcodeSuccess) != (len(m.Answer) == 1) {
			t.Errorf("%s: %s with %d answers, want %s", name, dns.RcodeToString[m.Rcode], len(m.Answer), dns.RcodeToString[want])
		}
	}
}

// TestDNS_PrivateReadsNeedServices: a registry whose reads need a token
// does not start DNS that would answer for every service to anyone; it
// asks for --dns-services.
func TestDNS_PrivateReadsNeedServices(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.DNS.Addr = "127.0.0.1:0"
	cfg.Registry.PrivateReads = true
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "--dns-services") {
		t.Fatalf("Validate: %v, want an error naming --dns-services", err)
	}
	cfg.DNS.Services = []string{"*"}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with --dns-services *: %v", err)
	}
	cfg.DNS.Services = []string{"Bad Pattern"}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a bad DNS service pattern is accepted")
	}
}
