package dnsapi_test

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestDNS_Refusals: DNS is read-only and answers queries alone. Dynamic
// updates and notifies are REFUSED and change nothing; zone transfers
// (AXFR, IXFR) and ANY are REFUSED; other opcodes are NOTIMP; a query
// with no question or several is FORMERR, one with two OPT records too,
// an EDNS version other than 0 is BADVERS; a message that is a response
// gets no answer at all. Over UDP and TCP alike.
func TestDNS_Refusals(t *testing.T) {
	r, _ := catalogRig(t, nil)
	before := r.lookup(t, "web", "")

	update := new(dns.Msg)
	update.SetUpdate("muster.")
	evil, _ := dns.NewRR("evil.service.muster. 0 IN A 192.0.2.1")
	update.Insert([]dns.RR{evil})
	remove := new(dns.Msg)
	remove.SetUpdate("muster.")
	remove.RemoveName([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: "web.service.muster.", Class: dns.ClassANY}}})
	notify := new(dns.Msg)
	notify.SetNotify("muster.")
	axfr := new(dns.Msg)
	axfr.SetAxfr("muster.")
	ixfr := new(dns.Msg)
	ixfr.SetIxfr("muster.", 0, "ns.muster.", "hostmaster.muster.")
	anyQ := new(dns.Msg)
	anyQ.SetQuestion("web.service.muster.", dns.TypeANY)
	opcode := func(op int) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("web.service.muster.", dns.TypeA)
		m.Opcode = op
		return m
	}
	noQuestion := new(dns.Msg)
	noQuestion.Id = dns.Id()
	twoQuestions := new(dns.Msg)
	twoQuestions.SetQuestion("web.service.muster.", dns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, dns.Question{Name: "down.service.muster.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	twoOPT := new(dns.Msg)
	twoOPT.SetQuestion("web.service.muster.", dns.TypeA)
	twoOPT.SetEdns0(1232, false)
	twoOPT.SetEdns0(1232, false)
	edns1 := new(dns.Msg)
	edns1.SetQuestion("web.service.muster.", dns.TypeA)
	edns1.SetEdns0(1232, false)
	edns1.Extra[0].(*dns.OPT).SetVersion(1)

	for _, tc := range []struct {
		what  string
		m     *dns.Msg
		rcode int
	}{
		{"UPDATE adding a record", update, dns.RcodeRefused},
		{"UPDATE deleting a name", remove, dns.RcodeRefused},
		{"NOTIFY", notify, dns.RcodeRefused},
		{"AXFR", axfr, dns.RcodeRefused},
		{"IXFR", ixfr, dns.RcodeRefused},
		{"ANY", anyQ, dns.RcodeRefused},
		{"IQUERY", opcode(dns.OpcodeIQuery), dns.RcodeNotImplemented},
		{"STATUS", opcode(dns.OpcodeStatus), dns.RcodeNotImplemented},
		{"opcode 3", opcode(3), dns.RcodeNotImplemented},
		{"opcode 15", opcode(15), dns.RcodeNotImplemented},
		{"no question", noQuestion, dns.RcodeFormatError},
		{"two questions", twoQuestions, dns.RcodeFormatError},
		{"two OPT records", twoOPT, dns.RcodeFormatError},
		{"EDNS version 1", edns1, dns.RcodeBadVers},
	} {
		for _, network := range []string{"udp", "tcp"} {
			in := r.exchange(t, network, tc.m)
			if in.Rcode != tc.rcode || len(in.Answer) != 0 || in.Id != tc.m.Id || !in.Response {
				t.Errorf("%s over %s: %s (id %d, %d answers), want %s", tc.what, network, dns.RcodeToString[in.Rcode], in.Id, len(in.Answer), dns.RcodeToString[tc.rcode])
			}
		}
	}
	// The updates changed nothing.
	if m := r.query(t, "udp", "evil.service.muster.", dns.TypeA, 0); m.Rcode != dns.RcodeNameError {
		t.Errorf("after an UPDATE: evil.service.muster. is %s", dns.RcodeToString[m.Rcode])
	}
	if after := r.lookup(t, "web", ""); !slices.Equal(after, before) {
		t.Errorf("after an UPDATE: web is %v, was %v", after, before)
	}
	svcs, err := r.h.Anon.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs.Services) != 2 {
		t.Errorf("after an UPDATE: services %+v", svcs.Services)
	}

	// A response is never answered (two servers would echo each other);
	// the server goes on answering queries.
	c, err := net.Dial("udp", r.dns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp := new(dns.Msg)
	resp.SetQuestion("web.service.muster.", dns.TypeA)
	resp.Response = true
	b, _ := resp.Pack()
	c.Write(b)
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 512)); err == nil {
		t.Errorf("a response was answered with %d bytes", n)
	}
	if m := r.query(t, "udp", "web.service.muster.", dns.TypeA, 0); m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
		t.Errorf("after the response: %s %v", dns.RcodeToString[m.Rcode], m.Answer)
	}
}
