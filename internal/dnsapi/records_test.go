package dnsapi_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
)

// catalogRig registers the instances the record tests read, over the
// HTTP API with real callbacks:
//
//	web: a 127.0.0.2:8080 [v2 Blue], b 127.0.0.3:8080 [v1],
//	     c [::1]:8080 [v2], h localhost:8081 [v2] (a host name),
//	     s 127.0.0.2:8082 (sharing a's address),
//	     d 127.0.0.4:8080 [old] drained, e 127.0.0.5:8080 [old] critical
//	down: x 127.0.0.6:8080, critical
//
// It returns the rig and the IDs by letter.
func catalogRig(t testing.TB, mutate func(*server.Config)) (*rig, map[string]string) {
	t.Helper()
	r := newRig(t, mutate)
	ids := map[string]string{
		"a": r.register(t, "web", "127.0.0.2", "", 8080, "1h", "v2", "Blue"),
		"b": r.register(t, "web", "127.0.0.3", "", 8080, "1h", "v1"),
		"c": r.register(t, "web", "::1", "", 8080, "1h", "v2"),
		"h": r.register(t, "web", "localhost", "127.0.0.1", 8081, "1h", "v2"),
		"s": r.register(t, "web", "127.0.0.2", "", 8082, "1h"),
		"d": r.register(t, "web", "127.0.0.4", "", 8080, "1h", "old"),
		"e": r.register(t, "web", "127.0.0.5", "", 8080, "1s", "old"),
		"x": r.register(t, "down", "127.0.0.6", "", 8080, "1s"),
	}
	if _, err := r.h.Admin.Drain(context.Background(), ids["d"], ""); err != nil {
		t.Fatal(err)
	}
	// e and x never heartbeat: their TTL of 1 s runs out.
	testserver.Eventually(t, 10*time.Second, "e and x critical", func() bool {
		return len(r.lookup(t, "web", "old")) == 0 && len(r.lookup(t, "down", "")) == 0
	})
	return r, ids
}

// TestDNS_Records: every record type and every name form, over UDP and
// TCP, answers what an HTTP lookup of the same registry answers: passing
// instances only (never drained or critical ones), by address family,
// filtered by tag, SRV targets that resolve to each instance's address
// in the additional section, TTL 0, authoritative.
func TestDNS_Records(t *testing.T) {
	r, ids := catalogRig(t, nil)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			q := func(name string, t16 uint16) *dns.Msg {
				t.Helper()
				m := r.query(t, network, name, t16, 4096)
				if m.Rcode != dns.RcodeSuccess || !m.Authoritative || m.Truncated || !m.Response {
					t.Fatalf("%s %s: rcode %s, aa %v, tc %v", name, dns.TypeToString[t16], dns.RcodeToString[m.Rcode], m.Authoritative, m.Truncated)
				}
				for _, rr := range append(append([]dns.RR{}, m.Answer...), m.Extra...) {
					if rr.Header().Rrtype != dns.TypeOPT && rr.Header().Ttl != 0 {
						t.Errorf("%s: TTL %d, want 0: %v", name, rr.Header().Ttl, rr)
					}
				}
				return m
			}
			// A and AAAA: the addresses of the passing instances, once
			// each; drained (d), critical (e) and the host name (h) never.
			if got, want := addrs(q("web.service.muster.", dns.TypeA).Answer), []string{"127.0.0.2", "127.0.0.3"}; !slices.Equal(got, want) {
				t.Errorf("A web: %v, want %v", got, want)
			}
			if got, want := addrs(q("web.service.muster.", dns.TypeAAAA).Answer), []string{"::1"}; !slices.Equal(got, want) {
				t.Errorf("AAAA web: %v, want %v", got, want)
			}
			// SRV: every passing instance, as the HTTP lookup lists them.
			m := q("web.service.muster.", dns.TypeSRV)
			if got, want := endpoints(m), r.lookup(t, "web", ""); !slices.Equal(got, want) || len(got) != 5 {
				t.Errorf("SRV web: %v, HTTP lookup %v", got, want)
			}
			for _, rr := range m.Answer {
				srv := rr.(*dns.SRV)
				if srv.Priority != 1 || srv.Weight < 1 || srv.Weight > 100 {
					t.Errorf("SRV %v: priority %d weight %d, want priority 1 and weight 1 to 100", srv, srv.Priority, srv.Weight)
				}
				if srv.Target != "localhost." && !strings.HasSuffix(srv.Target, ".instance.muster.") {
					t.Errorf("SRV target %q", srv.Target)
				}
			}
			if got := types(m.Extra); !slices.Equal(got, []string{"A", "A", "A", "AAAA"}) {
				t.Errorf("SRV web: additional %v, want the addresses of a, b, s and c", got)
			}
			// A target resolves to its instance's address by itself.
			for _, rr := range m.Answer {
				srv := rr.(*dns.SRV)
				if srv.Target == "localhost." {
					continue
				}
				a := q(srv.Target, dns.TypeA)
				aaaa := q(srv.Target, dns.TypeAAAA)
				if got := addrs(append(a.Answer, aaaa.Answer...)); len(got) != 1 {
					t.Errorf("target %s resolves to %v", srv.Target, got)
				}
			}
			// Tags, compared without case as DNS compares names.
			if got, want := endpoints(q("v2.web.service.muster.", dns.TypeSRV)), r.lookup(t, "web", "v2"); !slices.Equal(got, want) || len(got) != 3 {
				t.Errorf("SRV v2.web: %v, HTTP lookup %v", got, want)
			}
			if got, want := addrs(q("V2.web.service.muster.", dns.TypeA).Answer), []string{"127.0.0.2"}; !slices.Equal(got, want) {
				t.Errorf("A V2.web: %v, want %v", got, want)
			}
			if got, want := addrs(q("blue.WEB.service.MUSTER.", dns.TypeA).Answer), []string{"127.0.0.2"}; !slices.Equal(got, want) {
				t.Errorf("A blue.WEB (tag Blue): %v, want %v", got, want)
			}
			// One instance.
			if got := addrs(q(ids["a"]+".instance.muster.", dns.TypeA).Answer); !slices.Equal(got, []string{"127.0.0.2"}) {
				t.Errorf("A of instance a: %v", got)
			}
			if got := addrs(q(ids["c"]+".instance.muster.", dns.TypeAAAA).Answer); !slices.Equal(got, []string{"::1"}) {
				t.Errorf("AAAA of instance c: %v", got)
			}
			if got := endpoints(q(strings.ToUpper(ids["b"])+".instance.muster.", dns.TypeSRV)); !slices.Equal(got, []string{"127.0.0.3:8080"}) {
				t.Errorf("SRV of instance b: %v", got)
			}
			if got := endpoints(q(ids["h"]+".instance.muster.", dns.TypeSRV)); !slices.Equal(got, []string{"localhost:8081"}) {
				t.Errorf("SRV of instance h: %v", got)
			}
			// The apex's SOA.
			if m := q("muster.", dns.TypeSOA); len(m.Answer) != 1 || m.Answer[0].Header().Rrtype != dns.TypeSOA {
				t.Errorf("SOA muster.: %v", m.Answer)
			}
		})
	}
}

// TestDNS_Negative: NXDOMAIN for names that do not exist, NOERROR without
// answers (NODATA) for names that exist without a record of the type
// asked or without a passing instance, both with the zone's SOA in the
// authority section; REFUSED for names outside the zone and for other
// classes; SERVFAIL never.
func TestDNS_Negative(t *testing.T) {
	r, ids := catalogRig(t, nil)
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"nosuch.service.muster.", dns.TypeA, dns.RcodeNameError},
		{"nosuch.service.muster.", dns.TypeSRV, dns.RcodeNameError},
		{"gpu.web.service.muster.", dns.TypeA, dns.RcodeNameError}, // no instance carries gpu
		{"x.v2.web.service.muster.", dns.TypeA, dns.RcodeNameError},
		{"Bad%Name.service.muster.", dns.TypeA, dns.RcodeNameError},
		{"0123456789abcdef0123456789abcdef.instance.muster.", dns.TypeA, dns.RcodeNameError},
		{"x." + ids["a"] + ".instance.muster.", dns.TypeA, dns.RcodeNameError},
		{"www.muster.", dns.TypeA, dns.RcodeNameError},
		{"web.muster.", dns.TypeA, dns.RcodeNameError},

		{"down.service.muster.", dns.TypeA, dns.RcodeSuccess},         // exists, its one instance critical
		{"down.service.muster.", dns.TypeSRV, dns.RcodeSuccess},       // likewise
		{"old.web.service.muster.", dns.TypeSRV, dns.RcodeSuccess},    // the tag's instances drained or critical
		{"v1.web.service.muster.", dns.TypeAAAA, dns.RcodeSuccess},    // b has no IPv6 address
		{"web.service.muster.", dns.TypeTXT, dns.RcodeSuccess},        // no record of the type
		{"web.service.muster.", dns.TypeMX, dns.RcodeSuccess},         //
		{ids["d"] + ".instance.muster.", dns.TypeA, dns.RcodeSuccess}, // drained
		{ids["e"] + ".instance.muster.", dns.TypeA, dns.RcodeSuccess}, // critical
		{ids["a"] + ".instance.muster.", dns.TypeAAAA, dns.RcodeSuccess},
		{ids["h"] + ".instance.muster.", dns.TypeA, dns.RcodeSuccess}, // a host name: SRV only
		{"service.muster.", dns.TypeA, dns.RcodeSuccess},
		{"instance.muster.", dns.TypeA, dns.RcodeSuccess},
		{"muster.", dns.TypeA, dns.RcodeSuccess},
		{"muster.", dns.TypeNS, dns.RcodeSuccess},
	} {
		for _, network := range []string{"udp", "tcp"} {
			m := r.query(t, network, tc.name, tc.qtype, 0)
			what := network + " " + tc.name + " " + dns.TypeToString[tc.qtype]
			if m.Rcode != tc.rcode || len(m.Answer) != 0 || !m.Authoritative {
				t.Errorf("%s: %s with %d answers (aa %v), want %s and none", what, dns.RcodeToString[m.Rcode], len(m.Answer), m.Authoritative, dns.RcodeToString[tc.rcode])
				continue
			}
			if len(m.Ns) != 1 {
				t.Errorf("%s: authority %v, want the SOA", what, m.Ns)
				continue
			}
			soa, ok := m.Ns[0].(*dns.SOA)
			if !ok || soa.Hdr.Name != "muster." || soa.Minttl != 0 || soa.Hdr.Ttl != 0 {
				t.Errorf("%s: authority %v, want muster.'s SOA with TTL and minimum 0", what, m.Ns[0])
			}
		}
	}
	// Outside the zone, and other classes: REFUSED, nothing else.
	for _, name := range []string{"example.com.", "xmuster.", "muster.example.", "service.", "."} {
		for _, network := range []string{"udp", "tcp"} {
			m := r.query(t, network, name, dns.TypeA, 0)
			if m.Rcode != dns.RcodeRefused || len(m.Answer)+len(m.Ns)+len(m.Extra) != 0 || m.Authoritative {
				t.Errorf("%s %s: %s, %d records, aa %v; want REFUSED and nothing", network, name, dns.RcodeToString[m.Rcode], len(m.Answer)+len(m.Ns)+len(m.Extra), m.Authoritative)
			}
		}
	}
	m := new(dns.Msg)
	m.SetQuestion("version.bind.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	if in := r.exchange(t, "udp", m); in.Rcode != dns.RcodeRefused || len(in.Answer) != 0 {
		t.Errorf("CH TXT version.bind: %s %v", dns.RcodeToString[in.Rcode], in.Answer)
	}
}

// TestDNS_AgreesWithHTTP: as instances are drained, expire, heartbeat
// back and are deregistered, DNS answers the instances an HTTP lookup
// answers at every step: both read the one status rule.
func TestDNS_AgreesWithHTTP(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	one := r.register(t, "api", "127.0.0.2", "", 9000, "1h")
	two := r.register(t, "api", "127.0.0.3", "", 9000, "1s")
	check := func(step string, want int) {
		t.Helper()
		http := r.lookup(t, "api", "")
		for _, network := range []string{"udp", "tcp"} {
			got := endpoints(r.query(t, network, "api.service.muster.", dns.TypeSRV, 0))
			if !slices.Equal(got, http) || len(got) != want {
				t.Errorf("%s, %s: DNS %v, HTTP %v, want %d", step, network, got, http, want)
			}
		}
	}
	check("both passing", 2)
	testserver.Eventually(t, 10*time.Second, "two's TTL runs out", func() bool { return len(r.lookup(t, "api", "")) == 1 })
	check("two critical", 1)
	r.mu.Lock()
	tok := r.tokens[two]
	r.mu.Unlock()
	if _, err := r.h.Anon.Heartbeat(ctx, two, tok); err != nil {
		t.Fatal(err)
	}
	check("two back", 2)
	if _, err := r.h.Admin.Drain(ctx, one, ""); err != nil {
		t.Fatal(err)
	}
	check("one drained", 1)
	if err := r.h.Admin.Deregister(ctx, two, ""); err != nil {
		t.Fatal(err)
	}
	check("two deregistered", 0)
	// The service still has an instance (drained): NODATA, not NXDOMAIN.
	if m := r.query(t, "udp", "api.service.muster.", dns.TypeA, 0); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
		t.Errorf("a service with only a drained instance: %s %v", dns.RcodeToString[m.Rcode], m.Answer)
	}
	if err := r.h.Admin.Deregister(ctx, one, ""); err != nil {
		t.Fatal(err)
	}
	if m := r.query(t, "udp", "api.service.muster.", dns.TypeA, 0); m.Rcode != dns.RcodeNameError {
		t.Errorf("a service without instances: %s, want NXDOMAIN", dns.RcodeToString[m.Rcode])
	}
}

// TestDNS_DomainAndTTL: --dns-domain and --dns-ttl: records in the
// configured zone carry the configured TTL, and so does the SOA of a
// negative answer (its minimum too, the negative-caching time); the
// default zone is then outside and refused.
func TestDNS_DomainAndTTL(t *testing.T) {
	r := newRig(t, func(c *server.Config) { c.DNS.Domain, c.DNS.TTL = "Disco.Example", 5*time.Second })
	r.register(t, "web", "127.0.0.2", "", 8080, "1h")
	m := r.query(t, "udp", "web.service.disco.example.", dns.TypeSRV, 1232)
	if len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 5 || len(m.Extra) < 2 || m.Extra[0].Header().Ttl != 5 {
		t.Fatalf("SRV in disco.example.: %v / %v", m.Answer, m.Extra)
	}
	if srv := m.Answer[0].(*dns.SRV); !strings.HasSuffix(srv.Target, ".instance.disco.example.") {
		t.Errorf("target %q is not in the zone", srv.Target)
	}
	m = r.query(t, "udp", "nosuch.service.disco.example.", dns.TypeA, 0)
	if soa, ok := m.Ns[0].(*dns.SOA); m.Rcode != dns.RcodeNameError || !ok || soa.Hdr.Ttl != 5 || soa.Minttl != 5 || soa.Hdr.Name != "disco.example." {
		t.Errorf("NXDOMAIN in disco.example.: %s %v", dns.RcodeToString[m.Rcode], m.Ns)
	}
	if m := r.query(t, "udp", "web.service.muster.", dns.TypeA, 0); m.Rcode != dns.RcodeRefused {
		t.Errorf("the default zone under another domain: %s, want REFUSED", dns.RcodeToString[m.Rcode])
	}
}

// TestDNS_Off: DNS is off unless an address is given: no socket, no
// address, and the server otherwise the same.
func TestDNS_Off(t *testing.T) {
	s := testserver.Start(t, nil)
	if a := s.DNSAddr(); a != "" {
		t.Fatalf("DNS is on by default at %s", a)
	}
	if server.DefaultConfig().DNS.Enabled() {
		t.Fatal("the default config turns DNS on")
	}
}

// TestDNS_PortInUse: a DNS address taken (for UDP alone) fails Start
// before the data dir is written, and the server's own DNS port is free
// again once it is closed.
func TestDNS_PortInUse(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := testserver.Config(t)
	cfg.DataDir = t.TempDir() + "/data"
	cfg.DNS.Addr = pc.LocalAddr().String()
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "udp") {
		s.Close()
		t.Fatalf("start with the DNS port taken: %v", err)
	}
	if entries, _ := readDir(cfg.DataDir); len(entries) != 0 {
		t.Errorf("a failed start wrote %v", entries)
	}

	r := newRig(t, nil)
	addr := r.dns
	r.h.Srv.Close()
	for _, network := range []string{"udp", "tcp"} {
		var err error
		if network == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp", addr); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp", addr); err == nil {
				l.Close()
			}
		}
		if err != nil {
			t.Errorf("%s %s still taken after Close: %v", network, addr, err)
		}
	}
}
