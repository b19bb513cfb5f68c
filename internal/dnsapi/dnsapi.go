package dnsapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxQuery is the largest UDP query read whole; a longer datagram is cut
// short by the kernel, fails to decode and is answered FORMERR.
const maxQuery = 4096

// Server answers DNS queries from a Backend over a UDP socket and a TCP
// listener that its caller binds (Listen) and hands to Serve. It owns no
// state but its sockets and the goroutines that serve them: every answer
// is read from the backend at the moment of the query.
//
// Concurrency: Serve starts Config.UDPWorkers goroutines that share the
// UDP socket, an accept loop, and one goroutine per TCP connection; each
// has its own scratch space. Close stops them all and waits.
type Server struct {
	cfg            Config
	backend        Backend
	log            *slog.Logger
	domain         string // lower case, with the trailing dot
	instanceSuffix string // ".instance." + domain
	ttl            uint32
	soa            dns.SOA

	mu     sync.Mutex
	closed bool
	udp    *net.UDPConn
	tcp    net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	// panicked is when a query last made the answer code panic (logged at
	// most once a minute).
	panicked time.Time
}

// New checks cfg and returns a server that answers from backend; log
// receives its warnings (nil discards them).
func New(cfg Config, backend Backend, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if backend == nil {
		return nil, errors.New("dnsapi: no backend")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults(runtime.GOMAXPROCS(0))
	s := &Server{cfg: cfg, backend: backend, log: log, domain: cfg.Domain,
		instanceSuffix: ".instance." + cfg.Domain, ttl: uint32(cfg.TTL / time.Second), conns: map[net.Conn]struct{}{}}
	s.soa = dns.SOA{Hdr: dns.RR_Header{Name: s.domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
		Ns: "ns." + s.domain, Mbox: "hostmaster." + s.domain, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: s.ttl}
	return s, nil
}

// Config returns the server's configuration with its defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Listen binds addr for DNS: a TCP listener and a UDP socket on the same
// port (with port 0, one that is free for both).
func Listen(addr string) (*net.UDPConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnsapi: address %q: %w", addr, err)
	}
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, err // a *net.OpError, which names the address
		}
		_, bound, _ := net.SplitHostPort(ln.Addr().String())
		uaddr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, bound))
		if err == nil {
			var pc *net.UDPConn
			if pc, err = net.ListenUDP("udp", uaddr); err == nil {
				return pc, ln, nil
			}
		}
		ln.Close()
		if port != "0" || try == 10 {
			return nil, nil, err
		}
		// The free TCP port was taken for UDP: try another.
	}
}

// Serve answers queries on udp and tcp (either may be nil) until Close,
// which closes them; it returns at once.
func (s *Server) Serve(udp *net.UDPConn, tcp net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.udp, s.tcp = udp, tcp
	if udp != nil {
		for range s.cfg.UDPWorkers {
			s.wg.Add(1)
			go s.serveUDP(udp)
		}
	}
	if tcp != nil {
		s.wg.Add(1)
		go s.acceptTCP(tcp)
	}
}

// Close closes the sockets and every TCP connection, and waits for the
// goroutines that served them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	var errs []error
	if s.udp != nil {
		errs = append(errs, s.udp.Close())
	}
	if s.tcp != nil {
		errs = append(errs, s.tcp.Close())
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return errors.Join(errs...)
}

// serveUDP reads queries from c and answers each to its sender, until c
// is closed.
func (s *Server) serveUDP(c *net.UDPConn) {
	defer s.wg.Done()
	r := newResponder(s)
	buf := make([]byte, maxQuery)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a datagram's error is its own
		}
		var out []byte
		if out, r = s.respond(r, buf[:n], false); out != nil {
			c.WriteToUDPAddrPort(out, from) // a lost answer is retried by its client
		}
	}
}

// acceptTCP accepts connections until ln is closed, each served by a
// goroutine of its own.
func (s *Server) acceptTCP(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, or a connection reset before it
			// was accepted: wait a little rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveTCP(c)
	}
}

// serveTCP answers the queries of one connection (RFC 7766: each a
// 2-byte length and the message), one at a time, until the client closes
// it, sends something that is not a query, or keeps it idle or slow past
// the timeouts: the first query must come within TCPReadTimeout, each
// next one within TCPIdleTimeout of the last answer, and every query,
// once begun, within TCPReadTimeout.
func (s *Server) serveTCP(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	r := newResponder(s)
	var size [2]byte
	var msg, out []byte
	wait := s.cfg.TCPReadTimeout
	for {
		c.SetReadDeadline(time.Now().Add(wait))
		if _, err := io.ReadFull(c, size[:1]); err != nil {
			return
		}
		c.SetReadDeadline(time.Now().Add(s.cfg.TCPReadTimeout))
		if _, err := io.ReadFull(c, size[1:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(size[:]))
		if cap(msg) < n {
			msg = make([]byte, n)
		}
		msg = msg[:n]
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		var answer []byte
		if answer, r = s.respond(r, msg, true); answer == nil {
			return
		}
		out = binary.BigEndian.AppendUint16(out[:0], uint16(len(answer)))
		out = append(out, answer...)
		c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if _, err := c.Write(out); err != nil {
			return
		}
		wait = s.cfg.TCPIdleTimeout
	}
}

// respond answers q with r, and returns the answer and the responder to
// use next. Should the answer code panic, it is logged, the query gets
// no answer, and a fresh responder replaces r: bad input never stops the
// server.
func (s *Server) respond(r *responder, q []byte, tcp bool) (out []byte, next *responder) {
	defer func() {
		if v := recover(); v != nil {
			out, next = nil, newResponder(s)
			s.mu.Lock()
			now := time.Now()
			logIt := now.Sub(s.panicked) >= time.Minute
			if logIt {
				s.panicked = now
			}
			s.mu.Unlock()
			if logIt {
				s.log.Error("dns: a query made the answer code panic; it was dropped", "panic", fmt.Sprint(v),
					"query", strconv.Quote(string(q[:min(len(q), 512)])))
			}
		}
	}()
	out = r.respond(q, tcp)
	if s.cfg.Observe != nil && len(out) >= 12 {
		t := r.qtype
		if t == 0 { // refused before its question was decoded
			t = rawQtype(q)
		}
		s.cfg.Observe(qtypeName(t), rcodeName(r.rcode))
	}
	return out, r
}

// rawQtype reads the type of q's question from the wire, for a query
// refused before it was decoded (0 when it cannot be read).
func rawQtype(q []byte) uint16 {
	i := 12
	for i < len(q) && q[i] != 0 {
		if q[i]&0xC0 != 0 { // a pointer: not in a question
			return 0
		}
		i += int(q[i]) + 1
	}
	if i+3 > len(q) {
		return 0
	}
	return binary.BigEndian.Uint16(q[i+1:])
}

// qtypeName names a query type for the metrics ("other" for one not
// counted by name, or none).
func qtypeName(t uint16) string {
	if countedTypes[t] {
		return dns.TypeToString[t]
	}
	return "other"
}

// countedTypes are the query types the metrics name; every other is
// "other", so that a stranger sweeping the type numbers cannot grow the
// metrics' series.
var countedTypes = map[uint16]bool{
	dns.TypeA: true, dns.TypeAAAA: true, dns.TypeSRV: true, dns.TypeSOA: true, dns.TypeNS: true,
	dns.TypeANY: true, dns.TypeAXFR: true, dns.TypeIXFR: true, dns.TypeTXT: true, dns.TypePTR: true,
	dns.TypeCNAME: true, dns.TypeMX: true, dns.TypeHTTPS: true, dns.TypeSVCB: true,
}

// rcodeName names an answer's code (its extended part included: BADVERS).
func rcodeName(rcode int) string {
	if name, ok := dns.RcodeToString[rcode]; ok {
		return name
	}
	return "other"
}

// within returns name (lower case) relative to the server's domain, with
// its trailing dot ("" for the domain itself), or false when it is not
// in the domain.
func (s *Server) within(name string) (string, bool) {
	if name == s.domain {
		return "", true
	}
	i := len(name) - len(s.domain) - 1 // the dot before the domain
	if i < 0 || name[i] != '.' || !strings.HasSuffix(name, s.domain) {
		return "", false
	}
	// That dot must separate labels, not be an escaped dot inside one.
	slashes := 0
	for j := i - 1; j >= 0 && name[j] == '\\'; j-- {
		slashes++
	}
	if slashes%2 == 1 {
		return "", false
	}
	return name[:i+1], true
}

// target is the name of instance id, which SRV answers point at.
func (s *Server) target(id string) string { return id + s.instanceSuffix }
