package dnsapi_test

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/musterhq/muster/internal/dnsapi"
)

// FuzzRespond: whatever bytes arrive, the code that reads them and
// answers (over a real registry holding IPv4, IPv6, host-name and
// drained instances) never panics, answers every message that is a
// query (at least a header long, QR clear), and answers with a message
// that parses, carries the query's ID and opcode, fits its transport
// (512 bytes over UDP, or 1,232 with EDNS0), and holds no record outside
// the zone. The seeds run in every go test; go test -fuzz FuzzRespond
// ./internal/dnsapi explores further.
func FuzzRespond(f *testing.F) {
	r := newRig(f, nil)
	ids := []string{
		r.register(f, "web", "127.0.0.2", "", 8080, "1h", "v2"),
		r.register(f, "web", "::1", "", 8080, "1h", "v2"),
		r.register(f, "web", "localhost", "127.0.0.1", 8081, "1h"),
		r.register(f, "web", "127.0.0.4", "", 8080, "1h", "old"),
	}
	if _, err := r.h.Admin.Drain(f.Context(), ids[3], ""); err != nil {
		f.Fatal(err)
	}
	s, err := dnsapi.New(dnsapi.DefaultConfig(), r.h.Srv.Registry(), nil)
	if err != nil {
		f.Fatal(err)
	}
	respond := dnsapi.NewResponder(s)

	names := []string{"web.service.muster.", "v2.web.service.muster.", "old.web.service.muster.", "nosuch.service.muster.",
		ids[0] + ".instance.muster.", ids[2] + ".instance.muster.", "muster.", "service.muster.", "example.com.", `a\.b.web.service.muster.`}
	for i, name := range names {
		for _, t16 := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeSOA, dns.TypeTXT, dns.TypeANY, dns.TypeAXFR} {
			m := new(dns.Msg)
			m.SetQuestion(name, t16)
			if i%2 == 0 {
				m.SetEdns0(uint16(512*i), false)
			}
			b, _ := m.Pack()
			f.Add(b, i%3 == 0)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 18 {
		f.Add(malformed(rng, i), i%2 == 0)
	}

	f.Fuzz(func(t *testing.T, q []byte, tcp bool) {
		out := respond(q, tcp)
		if len(q) < 12 || q[2]&0x80 != 0 {
			if out != nil {
				t.Fatalf("answered %d bytes that are no query", len(q))
			}
			return
		}
		if out == nil {
			t.Fatal("a query got no answer")
		}
		var m dns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatalf("the answer does not parse: %v\n%x", err, out)
		}
		if m.Id != binary.BigEndian.Uint16(q) || !m.Response || m.Opcode != int(q[2]>>3)&0xF {
			t.Fatalf("answer id %d opcode %d response %v, query id %d opcode %d", m.Id, m.Opcode, m.Response, binary.BigEndian.Uint16(q), int(q[2]>>3)&0xF)
		}
		switch limit := dnsapi.MaxUDPSize; {
		case tcp && len(out) > dns.MaxMsgSize:
			t.Fatalf("a TCP answer of %d bytes", len(out))
		case !tcp && m.IsEdns0() == nil && len(out) > 512:
			t.Fatalf("a UDP answer of %d bytes without EDNS0", len(out))
		case !tcp && len(out) > limit:
			t.Fatalf("a UDP answer of %d bytes", len(out))
		}
		for _, rr := range append(append(append([]dns.RR{}, m.Answer...), m.Ns...), m.Extra...) {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT && !strings.HasSuffix(strings.ToLower(h.Name), "muster.") {
				t.Fatalf("a record outside the zone: %v", rr)
			}
		}
	})
}
