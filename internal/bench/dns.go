package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"
)

// dnsQueries: SRV queries of a service of 10 instances over UDP, at
// concurrency 16 and 64. Each worker holds its own socket and one query
// in flight; it checks each answer's header alone (its ID, NOERROR, no
// TC, 10 answers), so that the load generator does little besides the
// two system calls.
func (r *runner) dnsQueries(ctx context.Context) []Result {
	if r.dns == "" {
		return []Result{{Workload: "dns", Status: "not available",
			Notes: "the server given by --addr has no DNS address: start it with --dns-addr and give that to --dns-addr"}}
	}
	const instances = 10
	ms := r.members("bench-dns", instances, instances)
	if _, _, err := r.registerAll(ctx, ms, "1h", instances, nil); err != nil {
		return []Result{failed("dns", err)}
	}
	q := new(dns.Msg)
	q.SetQuestion("bench-dns-0000.service.muster.", dns.TypeSRV)
	q.SetEdns0(1232, false)
	query, err := q.Pack()
	if err != nil {
		return []Result{failed("dns", err)}
	}
	var out []Result
	for _, conc := range []int{16, 64} {
		name := fmt.Sprintf("dns-c%d", conc)
		conns := make([]*dnsWorker, conc)
		for w := range conns {
			c, err := net.Dial("udp", r.dns)
			if err != nil {
				return append(out, failed(name, err))
			}
			conns[w] = &dnsWorker{c: c, query: append([]byte(nil), query...), buf: make([]byte, 4096)}
		}
		rec := newRecorder()
		m := startMeter(r.serverPID())
		ok, bad, err := hammer(ctx, conc, r.cfg.Duration, func(ctx context.Context, w, _ int) error {
			start := time.Now()
			if err := conns[w].ask(instances); err != nil {
				return err
			}
			rec.add(time.Since(start))
			return nil
		})
		for _, c := range conns {
			c.c.Close()
		}
		res := Result{Workload: name, Ops: ok, Errors: bad,
			Notes: fmt.Sprintf("SRV of a service of %d instances over UDP, EDNS0 1232 (about 900 bytes an answer, with the targets' A records); one query in flight per worker; errors count answers lost (1 s) or wrong", instances)}
		r.fill(&res, m.stop())
		latencies(&res, rec)
		r.rss(&res)
		if err != nil {
			res.Notes += "; first error: " + err.Error()
		}
		out = append(out, res)
	}
	return out
}

// dnsWorker is one worker's socket and buffers; only its worker uses it.
type dnsWorker struct {
	c     net.Conn
	id    uint16
	query []byte
	buf   []byte
}

// ask sends the query with a new ID and reads until the answer with that
// ID comes (an answer to a query that timed out before is skipped), or a
// second passes; the answer must be NOERROR, not truncated, with n
// answers.
func (d *dnsWorker) ask(n int) error {
	d.id++
	binary.BigEndian.PutUint16(d.query, d.id)
	if _, err := d.c.Write(d.query); err != nil {
		return err
	}
	d.c.SetReadDeadline(time.Now().Add(time.Second))
	for {
		k, err := d.c.Read(d.buf)
		if err != nil {
			return err
		}
		b := d.buf[:k]
		if k < 12 || binary.BigEndian.Uint16(b) != d.id {
			continue
		}
		rcode, tc, an := int(b[3]&0xF), b[2]&0x02 != 0, int(binary.BigEndian.Uint16(b[6:]))
		if rcode != dns.RcodeSuccess || tc || an != n {
			return fmt.Errorf("dns: answer %s, tc %v, %d answers; want NOERROR and %d", dns.RcodeToString[rcode], tc, an, n)
		}
		return nil
	}
}
