package dnsapi_test

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"

	"github.com/musterhq/muster/internal/dnsapi"
)

// BenchmarkRespond_SRV: the answer code alone (no sockets) for an SRV
// query of a service of 10 instances, with EDNS0 1232, as one UDP worker
// answers it: CPU and allocations per query.
func BenchmarkRespond_SRV(b *testing.B) {
	r := newRig(b, nil)
	for i := range 10 {
		r.register(b, "web", fmt.Sprintf("127.0.0.%d", i+2), "", 8080, "1h")
	}
	s, err := dnsapi.New(dnsapi.DefaultConfig(), r.h.Srv.Registry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	respond := dnsapi.NewResponder(s)
	q := new(dns.Msg)
	q.SetQuestion("web.service.muster.", dns.TypeSRV)
	q.SetEdns0(1232, false)
	wire, _ := q.Pack()
	if out := respond(wire, false); len(out) < 500 {
		b.Fatalf("an answer of %d bytes", len(out))
	}
	b.ReportAllocs()
	for b.Loop() {
		respond(wire, false)
	}
}
