package dnsapi_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// bigService registers n instances of service "big", each at an address
// of its own (127.0.1.1, 127.0.1.2, ...) on port 8080.
func bigService(t *testing.T, r *rig, n int) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.register(t, "big", fmt.Sprintf("127.0.1.%d", i+1), "", 8080, "1h")
		}()
	}
	wg.Wait()
	if got := len(r.lookup(t, "big", "")); got != n {
		t.Fatalf("registered %d of %d", got, n)
	}
}

// TestDNS_TruncationThenTCP: a service of 100 instances does not fit in a
// UDP answer: over UDP the answer holds as many records as fit in 512
// bytes (or the EDNS0 size the query offers, at most 1,232) and sets TC;
// over TCP the same query answers every instance. Go's own resolver,
// which asks again over TCP when it sees TC, gets all 100. The order of
// the records is random from query to query, and so is the choice a
// truncated answer holds.
func TestDNS_TruncationThenTCP(t *testing.T) {
	r := newRig(t, nil)
	const n = 100
	bigService(t, r, n)
	all := r.lookup(t, "big", "")
	var allAddrs []string
	for _, ep := range all {
		h, _, _ := net.SplitHostPort(ep)
		allAddrs = append(allAddrs, h)
	}
	sort.Strings(allAddrs)

	for _, tc := range []struct {
		qtype   uint16
		bufsize uint16 // 0: no EDNS0
		limit   int
	}{
		{dns.TypeSRV, 0, 512},
		{dns.TypeSRV, 1232, 1232},
		{dns.TypeSRV, 4096, 1232}, // capped: a larger offer is not taken
		{dns.TypeA, 0, 512},
		{dns.TypeA, 1232, 1232},
	} {
		what := fmt.Sprintf("%s offering %d", dns.TypeToString[tc.qtype], tc.bufsize)
		m := r.query(t, "udp", "big.service.muster.", tc.qtype, tc.bufsize)
		packed := wire(m)
		if !m.Truncated || m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 || len(m.Answer) >= n || len(packed) > tc.limit {
			t.Errorf("UDP %s: tc %v, %s, %d answers in %d bytes; want TC and some answers within %d bytes",
				what, m.Truncated, dns.RcodeToString[m.Rcode], len(m.Answer), len(packed), tc.limit)
		}
		if tc.qtype == dns.TypeSRV {
			for _, ep := range endpoints(m) {
				if h, _, _ := net.SplitHostPort(ep); !strings.HasSuffix(h, ".instance.muster") && !slices.Contains(all, ep) {
					t.Errorf("UDP %s: %s is not an instance", what, ep)
				}
			}
		}
		if tc.bufsize > 0 && m.IsEdns0() == nil {
			t.Errorf("UDP %s: no OPT record in the answer", what)
		}
		// The same over TCP: every instance, not truncated.
		m = r.query(t, "tcp", "big.service.muster.", tc.qtype, tc.bufsize)
		if m.Truncated || len(m.Answer) != n {
			t.Errorf("TCP %s: tc %v, %d answers, want %d", what, m.Truncated, len(m.Answer), n)
		}
		switch tc.qtype {
		case dns.TypeSRV:
			if got := endpoints(m); !slices.Equal(got, all) {
				t.Errorf("TCP %s: %d endpoints resolved, want the %d of the HTTP lookup", what, len(got), len(all))
			}
		case dns.TypeA:
			if got := addrs(m.Answer); !slices.Equal(got, allAddrs) {
				t.Errorf("TCP %s: %v", what, got)
			}
		}
	}

	// Go's resolver: UDP first, then TCP on TC.
	var tcp sync.Map
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		tcp.Store(network, true)
		var d net.Dialer
		return d.DialContext(ctx, network, r.dns)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, srvs, err := res.LookupSRV(ctx, "", "", "big.service.muster.")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tcp.Load("tcp"); len(srvs) != n || !ok {
		t.Errorf("Go's resolver: %d SRV records (asked over tcp: %v), want %d after asking again over TCP", len(srvs), ok, n)
	}
	hosts, err := res.LookupHost(ctx, "big.service.muster.")
	if err != nil {
		t.Fatal(err)
	}
	if sort.Strings(hosts); !slices.Equal(hosts, allAddrs) {
		t.Errorf("Go's resolver: %d addresses, want %d", len(hosts), n)
	}

	// Random order, and random choices when truncated.
	orders := map[string]bool{}
	chosen := map[string]bool{}
	for range 5 {
		m := r.query(t, "tcp", "big.service.muster.", dns.TypeSRV, 0)
		var order []string
		for _, rr := range m.Answer {
			order = append(order, rr.(*dns.SRV).Target)
		}
		orders[strings.Join(order, ",")] = true
		u := r.query(t, "udp", "big.service.muster.", dns.TypeA, 0)
		for _, rr := range u.Answer {
			chosen[rr.(*dns.A).A.String()] = true
		}
	}
	if len(orders) < 2 {
		t.Errorf("5 answers over TCP came in %d order(s)", len(orders))
	}
	if one := len(r.query(t, "udp", "big.service.muster.", dns.TypeA, 0).Answer); len(chosen) <= one {
		t.Errorf("5 truncated answers of %d records chose %d addresses among them", one, len(chosen))
	}
}

// TestDNS_AdditionalLeftOutWithoutTC: when the SRV records fit and their
// addresses do not, the addresses are left out and TC stays clear (RFC
// 2181, section 9): the answer is complete.
func TestDNS_AdditionalLeftOutWithoutTC(t *testing.T) {
	r := newRig(t, nil)
	// 6 SRV records fit in 512 bytes (68 each: a target is never
	// compressed), with their A records they do not.
	bigService(t, r, 6)
	m := r.query(t, "udp", "big.service.muster.", dns.TypeSRV, 0)
	packed := wire(m)
	if m.Truncated || len(m.Answer) != 6 || len(m.Extra) >= 6 || len(packed) > 512 {
		t.Fatalf("tc %v, %d answers, %d additional, %d bytes", m.Truncated, len(m.Answer), len(m.Extra), len(packed))
	}
	if m := r.query(t, "udp", "big.service.muster.", dns.TypeSRV, 1232); m.Truncated || len(m.Answer) != 6 || len(m.Extra) != 7 {
		t.Fatalf("offering 1232: tc %v, %d answers, %d additional (OPT included), want 6 and 7", m.Truncated, len(m.Answer), len(m.Extra))
	}
}

// wire is m as the server packs it: compressed.
func wire(m *dns.Msg) []byte {
	m.Compress = true
	b, _ := m.Pack()
	return b
}

// TestDNS_SharedHostsAnsweredWhole: 60 instances on one address and one
// on another (instances packed onto two hosts) are two A records, which
// fit: a UDP answer holds both addresses every time, without TC, however
// many instances share them (found by an outside review: the reservoir
// of instances left addresses out and set TC).
func TestDNS_SharedHostsAnsweredWhole(t *testing.T) {
	r := newRig(t, nil)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range 60 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.register(t, "packed", "127.0.3.1", "", 9000+i, "1h")
		}()
	}
	wg.Wait()
	r.register(t, "packed", "127.0.3.2", "", 9000, "1h")
	for range 20 {
		m := r.query(t, "udp", "packed.service.muster.", dns.TypeA, 0)
		got := map[string]bool{}
		for _, rr := range m.Answer {
			if a, ok := rr.(*dns.A); ok {
				got[a.A.String()] = true
			}
		}
		if m.Truncated || len(got) != 2 || !got["127.0.3.1"] || !got["127.0.3.2"] {
			t.Fatalf("A over UDP: tc %v, addresses %v; want both hosts, no TC", m.Truncated, got)
		}
	}
}
