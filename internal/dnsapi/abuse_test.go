package dnsapi_test

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/musterhq/muster/internal/server"
)

// malformed returns a bad DNS message of kind i (modulo the kinds): noise,
// a query cut short, a name whose compression pointer loops, counts that
// lie, labels and names too long, an OPT record with a broken option, an
// UPDATE stuffed with records.
func malformed(rng *rand.Rand, i int) []byte {
	good := new(dns.Msg)
	good.SetQuestion("web.service.muster.", dns.TypeSRV)
	good.SetEdns0(1232, false)
	g, _ := good.Pack()
	hdr := func(qd, an, ns, ar uint16) []byte {
		b := make([]byte, 12)
		binary.BigEndian.PutUint16(b, uint16(rng.Uint32()))
		binary.BigEndian.PutUint16(b[4:], qd)
		binary.BigEndian.PutUint16(b[6:], an)
		binary.BigEndian.PutUint16(b[8:], ns)
		binary.BigEndian.PutUint16(b[10:], ar)
		return b
	}
	switch i % 9 {
	case 0: // noise
		b := make([]byte, rng.IntN(600))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		return b
	case 1: // a good query cut short
		return g[:rng.IntN(len(g))]
	case 2: // a compression pointer to itself
		return append(hdr(1, 0, 0, 0), 0xC0, 12, 0, 1, 0, 1)
	case 3: // counts that promise far more than there is
		return append(hdr(1, 65535, 65535, 65535), g[12:]...)
	case 4: // a label of 64 bytes and a name of 300
		b := append(hdr(1, 0, 0, 0), 64)
		for range 300 {
			b = append(b, 'a')
		}
		return append(b, 0, 0, 1, 0, 1)
	case 5: // an OPT record whose option runs past its end
		b := slices.Clone(g)
		return append(b[:len(b)-2], 0, 40, 0, 8, 0, 200)
	case 6: // noise after a valid header
		b := hdr(1, 0, 0, 1)
		for range rng.IntN(100) {
			b = append(b, byte(rng.Uint32()))
		}
		return b
	case 7: // an UPDATE with records in every section
		u := new(dns.Msg)
		u.SetUpdate("muster.")
		rr, _ := dns.NewRR("x.service.muster. 0 IN A 192.0.2.1")
		u.Insert([]dns.RR{rr, rr, rr})
		b, _ := u.Pack()
		return b
	default: // a response, which must not be answered
		b := slices.Clone(g)
		b[2] |= 0x80
		return b
	}
}

// TestDNS_MalformedFlood: a flood of malformed packets, over UDP and
// TCP, neither crashes the server nor slows it: every query of a good
// client sent meanwhile is answered, the server's goroutines stay
// bounded (no goroutine per packet), and it answers as before once the
// flood ends.
func TestDNS_MalformedFlood(t *testing.T) {
	r, _ := catalogRig(t, nil)
	want := endpoints(r.query(t, "udp", "web.service.muster.", dns.TypeSRV, 1232))
	base := runtime.NumGoroutine()

	stop := make(chan struct{})
	var sent atomic.Int64
	var floods sync.WaitGroup
	// UDP: two senders, bursts of 25 packets every 5 ms (up to 10,000 a
	// second in all: a rate the server absorbs; a flood beyond what any
	// server can read fills the kernel's buffer, which no code can
	// prevent), for 2 s.
	for s := range 2 {
		floods.Add(1)
		go func() {
			defer floods.Done()
			c, err := net.Dial("udp", r.dns)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			rng := rand.New(rand.NewPCG(uint64(s), 1))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c.Write(malformed(rng, i))
				sent.Add(1)
				if i%25 == 24 {
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	// TCP: connections that each send a malformed message (with a true
	// or a lying length prefix) and wait for the server to hang up.
	floods.Add(1)
	go func() {
		defer floods.Done()
		rng := rand.New(rand.NewPCG(9, 9))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, err := net.Dial("tcp", r.dns)
			if err != nil {
				continue // refused while the bound is full
			}
			m := malformed(rng, i)
			size := len(m)
			if i%3 == 0 {
				size = rng.IntN(65536)
			}
			c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(size)), m...))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()

	var most, queries int
	var slowest time.Duration
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); queries++ {
		network := []string{"udp", "tcp"}[queries%2]
		start := time.Now()
		got := endpoints(r.query(t, network, "web.service.muster.", dns.TypeSRV, 1232))
		slowest = max(slowest, time.Since(start))
		if !slices.Equal(got, want) {
			t.Fatalf("during the flood, query %d over %s: %v, want %v", queries, network, got, want)
		}
		most = max(most, runtime.NumGoroutine())
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	floods.Wait()
	t.Logf("%d malformed UDP packets sent; %d good queries, the slowest %v; goroutines %d before, at most %d during", sent.Load(), queries, slowest, base, most)
	if sent.Load() < 5000 {
		t.Errorf("only %d malformed packets were sent", sent.Load())
	}
	// The flood's own goroutines, a TCP connection being served, the
	// good client's: nothing that grows with the packets.
	if most > base+20 {
		t.Errorf("goroutines grew from %d to %d during the flood", base, most)
	}
	// A good query lost to the flood would wait out the client's 2 s
	// timeout and be sent again.
	if slowest > time.Second {
		t.Errorf("the slowest good query took %v", slowest)
	}
	if got := endpoints(r.query(t, "udp", "web.service.muster.", dns.TypeSRV, 1232)); !slices.Equal(got, want) {
		t.Fatalf("after the flood: %v, want %v", got, want)
	}
}

// TestDNS_IdleTCPStranger: a stranger who opens TCP connections as fast
// as it can and holds them idle, or trickles its queries, cannot stop
// answers for others over UDP or TCP. Its connections are held to a
// share of the bound and closed when they stay idle or slow past the
// timeouts, and a connection left idle after an answer is closed after
// the idle timeout.
func TestDNS_IdleTCPStranger(t *testing.T) {
	const readTimeout, idleTimeout = 500 * time.Millisecond, time.Second
	r, _ := catalogRig(t, func(c *server.Config) {
		c.DNS.MaxTCPConns, c.DNS.TCPReadTimeout, c.DNS.TCPIdleTimeout = 64, readTimeout, idleTimeout
	})
	want := endpoints(r.query(t, "udp", "web.service.muster.", dns.TypeSRV, 1232))

	// The stranger, from 127.0.9.2 (a network of its own: the server
	// counts DNS's TCP connections by /24): 3 goroutines keep dialling and
	// holding every connection the server lets them keep.
	stranger := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.9.2")}}
	stop := make(chan struct{})
	var mu sync.Mutex
	open := map[net.Conn]time.Time{} // the stranger's connections the server has not closed
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := stranger.Dial("tcp", r.dns)
				if err != nil {
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				open[c] = time.Now()
				mu.Unlock()
				go func() {
					// Held until the server closes it.
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					io.Copy(io.Discard, c)
					c.Close()
					mu.Lock()
					delete(open, c)
					mu.Unlock()
				}()
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(300 * time.Millisecond) // let it fill its share

	// Others are answered meanwhile, over both transports, within a
	// second each.
	var peak int
	for i := range 40 {
		network := []string{"tcp", "udp"}[i%2]
		start := time.Now()
		if got := endpoints(r.query(t, network, "web.service.muster.", dns.TypeSRV, 1232)); !slices.Equal(got, want) {
			t.Fatalf("query %d over %s while the stranger holds its connections: %v", i, network, got)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("query %d over %s took %v", i, network, d)
		}
		// The stranger's connections the server kept: those still open
		// 100 ms after they were dialled (the server closes one over the
		// bound as soon as it accepts it).
		mu.Lock()
		held := 0
		for _, at := range open {
			if time.Since(at) > 100*time.Millisecond {
				held++
			}
		}
		mu.Unlock()
		peak = max(peak, held)
	}
	// The server held at most about half its bound for the stranger,
	// however fast it dialled.
	if peak > 40 || peak == 0 {
		t.Errorf("the stranger held %d of 64 connections at once, want some and at most about half", peak)
	}
	t.Logf("the stranger held at most %d of 64 connections", peak)

	// An idle connection is closed after the read timeout, a trickled
	// query after the read timeout from its first byte, and a connection
	// idle after an answer after the idle timeout.
	closedAfter := func(c net.Conn) time.Duration {
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("the server kept the connection open for 10 s")
		}
		return time.Since(start)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", r.dns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	if d := closedAfter(dial()); d < readTimeout/2 || d > readTimeout+time.Second {
		t.Errorf("an idle connection was closed after %v, want about %v", d, readTimeout)
	}
	slow := dial()
	go func() {
		slow.Write([]byte{0, 40})
		for range 40 {
			time.Sleep(100 * time.Millisecond)
			if _, err := slow.Write([]byte{0}); err != nil {
				return
			}
		}
	}()
	if d := closedAfter(slow); d > readTimeout+time.Second {
		t.Errorf("a trickled query was closed after %v, want about %v", d, readTimeout)
	}
	used := dial()
	q := new(dns.Msg)
	q.SetQuestion("web.service.muster.", dns.TypeA)
	co := &dns.Conn{Conn: used}
	if err := co.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	if _, err := co.ReadMsg(); err != nil {
		t.Fatal(err)
	}
	if d := closedAfter(used); d < idleTimeout/2 || d > idleTimeout+time.Second {
		t.Errorf("a connection idle after an answer was closed after %v, want about %v", d, idleTimeout)
	}
}
