package dnsapi

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// Sizes of answers.
const (
	// minUDPSize is what a UDP answer may fill when the query offers no
	// larger size (RFC 1035).
	minUDPSize = dns.MinMsgSize
	// MaxUDPSize caps a UDP answer whatever size the query offers: the
	// DNS flag day's 1,232 bytes, which no path fragments, and which keeps
	// what a spoofed query can reflect to about 30 times its size. Larger
	// answers are truncated (TC), and clients ask again over TCP.
	MaxUDPSize = 1232
	// maxTCPSize is the most a TCP answer can hold (its length prefix is
	// 16 bits).
	maxTCPSize = dns.MaxMsgSize
	// minRR is the smallest record an answer may hold (an A record whose
	// owner is a compression pointer): how many records can fit in a
	// size is at most size/minRR.
	minRR = 16
)

// Backend is what DNS needs of the registry; *registry.Registry
// satisfies it. Its methods must be safe for concurrent use, and cheap:
// they run once per query.
type Backend interface {
	// Read reports whether this server may answer a read in mode now
	// (ErrNotReady, ErrStale otherwise): DNS reads in ReadDefault, as a
	// lookup without ?stale or ?consistent does.
	Read(ctx context.Context, mode registry.ReadMode) (registry.ReplicaInfo, error)
	// Service returns the service as read now, its instances judged by
	// the one status rule (ServiceRead.Each).
	Service(name string) (registry.ServiceRead, error)
	// Instance returns one instance with its effective status, or
	// ErrInstanceNotFound (an *EvictedError is one too).
	Instance(id string) (registry.Entry, error)
}

// pick is one instance chosen for an answer.
type pick struct {
	inst    *catalog.Instance
	addr    netip.Addr // invalid for an instance registered by host name
	quality float64
}

// responder answers queries, one at a time: each UDP worker and each TCP
// connection has one, and reuses its scratch space from query to query,
// so that an answer allocates little beyond what packing it needs.
type responder struct {
	s     *Server
	req   dns.Msg
	resp  dns.Msg
	buf   []byte // the packed answer
	picks []pick
	// held is the set of the addresses in picks, for A and AAAA
	// answers, whose records are one per address.
	held map[netip.Addr]struct{}
	// rcode is the code of the last answer, and qtype the type of its
	// question once decoded (0 when it was not), for the metrics.
	rcode  int
	qtype  uint16
	srv    []dns.SRV
	a      []dns.A
	aaaa   []dns.AAAA
	ip4    [][4]byte
	ip6    [][16]byte
	labels []string // the query's name, relative to the zone
	ans    []dns.RR // the answer section, before it is fitted
	extra  []dns.RR // the additional section, before it is fitted (no OPT)
	opt    dns.OPT
	soa    dns.SOA
	// targets are the SRV targets of the instances answered lately
	// (catalog instances are immutable: a pointer's target never changes).
	targets map[*catalog.Instance]string
}

func newResponder(s *Server) *responder {
	r := &responder{s: s, soa: s.soa, targets: map[*catalog.Instance]string{}}
	r.opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}
	return r
}

// respond answers the message q (a query as read from the wire), over TCP
// or UDP, and returns the answer's bytes in the responder's buffer, valid
// until the next call; nil means no answer is sent (q is not a query, or
// too short to answer). It never panics on any input (FuzzRespond).
func (r *responder) respond(q []byte, tcp bool) []byte {
	r.qtype = 0
	if len(q) < 12 || q[2]&0x80 != 0 {
		// Too short to hold a header, or a response: answering
		// responses would let two servers echo each other for ever.
		return nil
	}
	opcode := int(q[2]>>3) & 0xF
	qd, an, ns, ar := binary.BigEndian.Uint16(q[4:]), binary.BigEndian.Uint16(q[6:]), binary.BigEndian.Uint16(q[8:]), binary.BigEndian.Uint16(q[10:])
	if opcode != dns.OpcodeQuery {
		// Updates, notifies and every other opcode: muster's DNS is
		// read-only, and its zone changes only through the registry.
		rcode := dns.RcodeNotImplemented
		if opcode == dns.OpcodeUpdate || opcode == dns.OpcodeNotify {
			rcode = dns.RcodeRefused
		}
		return r.headerOnly(q, rcode)
	}
	// A query holds one question, nothing in the answer section, at most
	// one record in the authority section (an IXFR's SOA), and at most an
	// OPT and a TSIG record beside them: larger counts are refused before
	// anything is decoded.
	if qd != 1 || an != 0 || ns > 1 || ar > 2 {
		return r.headerOnly(q, dns.RcodeFormatError)
	}
	if err := r.req.Unpack(q); err != nil || len(r.req.Question) != 1 {
		return r.headerOnly(q, dns.RcodeFormatError)
	}
	r.qtype = r.req.Question[0].Qtype
	return r.answer(tcp)
}

// headerOnly returns an answer of the header alone: q's ID and opcode,
// its RD bit, and rcode.
func (r *responder) headerOnly(q []byte, rcode int) []byte {
	r.rcode = rcode
	b := append(r.buf[:0], q[0], q[1], 0x80|q[2]&0x79, byte(rcode&0xF), 0, 0, 0, 0, 0, 0, 0, 0)
	r.buf = b
	return b
}

// answer answers r.req, a query with one question.
func (r *responder) answer(tcp bool) []byte {
	req, m := &r.req, &r.resp
	q := req.Question[0]
	m.MsgHdr = dns.MsgHdr{Id: req.Id, Response: true, Opcode: dns.OpcodeQuery, Authoritative: true,
		RecursionDesired: req.RecursionDesired}
	m.Compress = true
	m.Question = append(m.Question[:0], q)
	m.Answer, m.Ns, m.Extra = m.Answer[:0], m.Ns[:0], m.Extra[:0]
	r.ans, r.extra = r.ans[:0], r.extra[:0]

	limit := maxTCPSize
	var opt *dns.OPT
	nopt := 0
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			opt = o
			nopt++
		}
	}
	if nopt > 1 {
		return r.fail(dns.RcodeFormatError, nil)
	}
	if opt != nil {
		r.opt.Hdr.Ttl = 0 // version 0, no flags
		r.opt.Option = nil
		r.opt.SetUDPSize(MaxUDPSize)
		if opt.Version() != 0 {
			m.Authoritative = false
			return r.fail(dns.RcodeBadVers, &r.opt)
		}
	}
	if !tcp {
		limit = minUDPSize
		if opt != nil {
			limit = min(max(int(opt.UDPSize()), minUDPSize), MaxUDPSize)
		}
	}
	if opt != nil {
		opt = &r.opt
	}

	name := lower(q.Name)
	rel, ok := r.s.within(name)
	if !ok || q.Qclass != dns.ClassINET {
		// Not ours: muster is no recursive resolver and never forwards.
		m.Authoritative = false
		return r.fail(dns.RcodeRefused, opt)
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeANY, dns.TypeOPT, dns.TypeMAILA, dns.TypeMAILB, dns.TypeTSIG, dns.TypeTKEY:
		// No zone transfers, no ANY (RFC 8482), no meta types.
		return r.fail(dns.RcodeRefused, opt)
	}
	if _, err := r.s.backend.Read(context.Background(), registry.ReadDefault); err != nil {
		// A replica still loading, or a follower cut off from its
		// leader: no answer rather than a stale or partial one.
		return r.fail(dns.RcodeServerFailure, opt)
	}

	r.labels = splitLabels(r.labels[:0], rel)
	labels := r.labels
	var rcode int
	switch {
	case len(labels) == 0:
		if q.Qtype == dns.TypeSOA {
			r.ans = append(r.ans, &r.soa)
		}
	case len(labels) == 1 && (labels[0] == "service" || labels[0] == "instance"):
		// Names with names below them: NODATA, never NXDOMAIN (RFC 8020).
	case len(labels) == 2 && labels[1] == "service":
		rcode = r.service(q, labels[0], "", limit)
	case len(labels) == 3 && labels[2] == "service":
		rcode = r.service(q, labels[1], labels[0], limit)
	case len(labels) == 2 && labels[1] == "instance":
		rcode = r.instance(q, labels[0])
	default:
		rcode = dns.RcodeNameError
	}
	if rcode == dns.RcodeServerFailure {
		return r.fail(rcode, opt)
	}
	m.Rcode = rcode
	if len(r.ans) == 0 {
		// NXDOMAIN or NODATA: the zone's SOA tells resolvers how long
		// they may cache the absence (the TTL).
		m.Ns = append(m.Ns, &r.soa)
	}
	return r.pack(limit, opt)
}

// fail answers with rcode and no records.
func (r *responder) fail(rcode int, opt *dns.OPT) []byte {
	r.resp.Rcode = rcode
	r.ans, r.extra = r.ans[:0], r.extra[:0]
	return r.pack(maxTCPSize, opt)
}

// service adds the records of service name (filtered by tag, when not
// "") that answer q, and returns the rcode: NXDOMAIN when the name does
// not exist (the service has no instance, or none carries the tag),
// SERVFAIL when the registry cannot answer. limit is the size the answer
// must fit in.
func (r *responder) service(q dns.Question, name, tag string, limit int) int {
	if !catalog.ValidServiceName(name) || !r.s.cfg.serves(name) {
		return dns.RcodeNameError
	}
	sr, err := r.s.backend.Service(name)
	if err != nil {
		return dns.RcodeServerFailure
	}
	if sr.View == nil || len(sr.View.Instances) == 0 {
		return dns.RcodeNameError
	}
	if tag != "" {
		tag = unescape(tag)
		if !slices.ContainsFunc(sr.View.Instances, func(in *catalog.Instance) bool { return hasTagFold(in.Tags, tag) }) {
			return dns.RcodeNameError
		}
	}
	if q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA && q.Qtype != dns.TypeSRV {
		return dns.RcodeSuccess // the name exists: NODATA
	}
	// Every passing instance is a candidate; a reservoir of as many as
	// could fit in the answer keeps a uniform random choice of them
	// whatever the service's size, so that memory per query is bounded
	// and a large service is not copied.
	//
	// Instances that share an address are one A or AAAA record: for
	// those the reservoir holds addresses, an instance whose address it
	// holds already is not a new candidate, and so a service on fewer
	// hosts than fit is answered whole, however many instances share
	// them (a host evicted from a full reservoir and met again counts
	// twice, which only matters once the hosts do not fit anyway).
	k := limit/minRR + 1
	r.picks = r.picks[:0]
	byAddr := q.Qtype != dns.TypeSRV
	if byAddr {
		if r.held == nil {
			r.held = map[netip.Addr]struct{}{}
		}
		clear(r.held)
	}
	seen := 0
	sr.Each(registry.Filter{Status: catalog.StatusPassing}, func(_ int, e registry.Entry) bool {
		if tag != "" && !hasTagFold(e.Instance.Tags, tag) {
			return true
		}
		p := pick{inst: e.Instance, quality: e.Quality}
		p.addr, _ = netip.ParseAddr(e.Instance.Address)
		if !wants(q.Qtype, p.addr) {
			return true
		}
		if byAddr {
			if _, ok := r.held[p.addr]; ok {
				return true
			}
		}
		seen++
		j := len(r.picks)
		if j < k {
			r.picks = append(r.picks, p)
		} else if j = rand.IntN(seen); j < k {
			if byAddr {
				delete(r.held, r.picks[j].addr)
			}
			r.picks[j] = p
		} else {
			return true
		}
		if byAddr {
			r.held[p.addr] = struct{}{}
		}
		return true
	})
	if seen > len(r.picks) {
		// Some were left out of the reservoir: a client that wants them
		// all must ask over TCP (or, there, for a smaller service).
		r.resp.Truncated = true
	}
	rand.Shuffle(len(r.picks), func(i, j int) { r.picks[i], r.picks[j] = r.picks[j], r.picks[i] })
	r.records(q)
	return dns.RcodeSuccess
}

// instance adds the records of instance id that answer q, and returns
// the rcode: NXDOMAIN when no instance has the ID.
func (r *responder) instance(q dns.Question, id string) int {
	e, err := r.s.backend.Instance(id)
	switch {
	case errors.Is(err, registry.ErrInstanceNotFound):
		return dns.RcodeNameError
	case err != nil:
		return dns.RcodeServerFailure
	case !r.s.cfg.serves(e.Instance.Service):
		return dns.RcodeNameError
	}
	r.picks = r.picks[:0]
	p := pick{inst: e.Instance, quality: e.Quality}
	p.addr, _ = netip.ParseAddr(e.Instance.Address)
	if e.Status == catalog.StatusPassing && wants(q.Qtype, p.addr) {
		r.picks = append(r.picks, p)
	}
	r.records(q)
	return dns.RcodeSuccess
}

// wants reports whether an instance at addr answers a query of type t:
// A for IPv4 addresses, AAAA for IPv6, SRV for every instance (those
// registered by host name too).
func wants(t uint16, addr netip.Addr) bool {
	switch t {
	case dns.TypeA:
		return addr.Is4() || addr.Is4In6()
	case dns.TypeAAAA:
		return addr.Is6() && !addr.Is4In6()
	case dns.TypeSRV:
		return true
	}
	return false
}

// records fills r.ans (and, for SRV, r.extra) from r.picks, in their
// order.
func (r *responder) records(q dns.Question) {
	n := len(r.picks)
	ttl := r.s.ttl
	r.grow(n)
	for i, p := range r.picks {
		switch q.Qtype {
		case dns.TypeSRV:
			srv := &r.srv[i]
			*srv = dns.SRV{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
				Priority: 1, Weight: weight(p.quality), Port: uint16(p.inst.Port), Target: r.target(p)}
			if p.addr.IsValid() {
				r.extra = append(r.extra, r.address(i, srv.Target, p.addr))
			}
			r.ans = append(r.ans, srv)
		default:
			r.ans = append(r.ans, r.address(i, q.Name, p.addr))
		}
	}
}

// maxTargets bounds a responder's cache of SRV targets.
const maxTargets = 1024

// target returns the SRV target of p: the name of its instance
// (ID.instance.<domain>) when it has an IP address, else its host name.
// The names are kept per instance, so that a steady service's answers
// build no string; the cache starts over when it holds maxTargets.
func (r *responder) target(p pick) string {
	if t, ok := r.targets[p.inst]; ok {
		return t
	}
	t := p.inst.Address + "."
	if p.addr.IsValid() {
		t = r.s.target(p.inst.ID)
	}
	if len(r.targets) >= maxTargets {
		clear(r.targets)
	}
	r.targets[p.inst] = t
	return t
}

// address returns the A or AAAA record of addr owned by name, in slot i
// of the scratch records.
func (r *responder) address(i int, name string, addr netip.Addr) dns.RR {
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: r.s.ttl}
	if addr.Is4() || addr.Is4In6() {
		r.ip4[i] = addr.Unmap().As4()
		hdr.Rrtype = dns.TypeA
		r.a[i] = dns.A{Hdr: hdr, A: r.ip4[i][:]}
		return &r.a[i]
	}
	r.ip6[i] = addr.As16()
	hdr.Rrtype = dns.TypeAAAA
	r.aaaa[i] = dns.AAAA{Hdr: hdr, AAAA: r.ip6[i][:]}
	return &r.aaaa[i]
}

// grow makes room for n records of each kind in the scratch space.
func (r *responder) grow(n int) {
	if len(r.srv) < n {
		r.srv = make([]dns.SRV, n)
		r.a = make([]dns.A, n)
		r.aaaa = make([]dns.AAAA, n)
		r.ip4 = make([][4]byte, n)
		r.ip6 = make([][16]byte, n)
	}
}

// weight is an SRV record's weight for an instance of quality q: 1 to
// 100, so that clients that follow RFC 2782 send more to the instances
// whose liveness is best known, and some to every one.
func weight(q float64) uint16 {
	return uint16(1 + math.Round(99*min(max(q, 0), 1)))
}

// pack writes the answer (the header and question in r.resp, the records
// in r.ans and r.extra) within limit bytes, and returns its bytes.
//
// When it does not fit, additional records are left out first, without
// TC (RFC 2181, section 9: they are not required); when the answer
// section alone does not fit, it keeps as many answers as fit (they are
// in random order) and sets TC, so that a client asks again over TCP.
func (r *responder) pack(limit int, opt *dns.OPT) []byte {
	r.rcode = r.resp.Rcode
	m := &r.resp
	set := func(na, ne int) {
		m.Answer = append(m.Answer[:0], r.ans[:na]...)
		m.Extra = append(m.Extra[:0], r.extra[:ne]...)
		if opt != nil {
			m.Extra = append(m.Extra, opt)
		}
	}
	set(len(r.ans), len(r.extra))
	b, err := m.PackBuffer(r.buf[:cap(r.buf)])
	if err == nil && len(b) > limit && len(r.ans) > 0 {
		// Too large: what fits is found with Len, which computes the
		// packed size without packing.
		if set(len(r.ans), 0); m.Len() <= limit {
			ne := largestFitting(len(r.extra), func(i int) bool { set(len(r.ans), i); return m.Len() <= limit })
			set(len(r.ans), ne)
		} else {
			na := largestFitting(len(r.ans), func(i int) bool { set(i, 0); return m.Len() <= limit })
			set(na, 0)
			m.Truncated = true
		}
		b, err = m.PackBuffer(r.buf[:cap(r.buf)])
	}
	if err != nil {
		// Nothing muster builds fails to pack; should it, the client
		// hears SERVFAIL rather than silence.
		m.Answer, m.Ns, m.Extra, m.Rcode, m.Truncated = m.Answer[:0], m.Ns[:0], m.Extra[:0], dns.RcodeServerFailure, false
		if b, err = m.PackBuffer(r.buf[:cap(r.buf)]); err != nil {
			return nil
		}
	}
	if cap(b) > cap(r.buf) {
		r.buf = b[:0]
	}
	return b
}

// largestFitting returns the largest i in [0, n] for which fits(i)
// holds, given that fits(0) holds and that fits is monotone: a binary
// search.
func largestFitting(n int, fits func(int) bool) int {
	lo, hi := 0, n // fits(lo) holds; every i > hi fails
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// splitLabels appends to out the labels of a relative name ("a.b.", or
// "" for the apex), keeping escaped dots ("\.") inside a label.
func splitLabels(out []string, rel string) []string {
	start := 0
	for i := 0; i < len(rel); i++ {
		switch rel[i] {
		case '\\':
			i++ // the escaped character, or the first of \DDD
		case '.':
			out = append(out, rel[start:i])
			start = i + 1
		}
	}
	if start < len(rel) {
		out = append(out, rel[start:])
	}
	return out
}

// unescape decodes a label in presentation form (\. and \DDD, as miekg/dns
// writes bytes that are not plain characters) to its bytes.
func unescape(label string) string {
	if !strings.Contains(label, `\`) {
		return label
	}
	var b strings.Builder
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c != '\\' || i+1 >= len(label) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(label) && isDigit(label[i+1]) && isDigit(label[i+2]) && isDigit(label[i+3]) {
			if v := int(label[i+1]-'0')*100 + int(label[i+2]-'0')*10 + int(label[i+3]-'0'); v <= 255 {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(label[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// lower returns s with ASCII letters in lower case (DNS compares names
// so, RFC 4343), without allocating when it has none in upper case.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// hasTagFold reports whether tags holds tag, ASCII letters compared
// without case, as DNS compares labels.
func hasTagFold(tags []string, tag string) bool {
	for _, t := range tags {
		if len(t) == len(tag) && foldEqual(t, tag) {
			return true
		}
	}
	return false
}

// foldEqual compares two strings of the same length, ASCII letters
// without case.
func foldEqual(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
