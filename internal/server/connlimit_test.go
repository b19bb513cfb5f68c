package server

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// TestConnLimit: a lone client gets up to half the connections, the next
// a share of what is left, a newcomer always finds room, nothing is
// accepted past the bound, and a closed connection gives its place back.
func TestConnLimit(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const max = 400
	l := newConnLimit(raw, max, minConnShare, slog.New(slog.DiscardHandler))
	defer l.Close()
	accepted := make(chan net.Conn, 1000)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	// dial opens connections from the address from until the limit
	// refuses one (or n are open), and returns those it kept, on the
	// server's side.
	dial := func(from string, n int) (kept []net.Conn) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		for range n {
			c, err := d.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			select {
			case sc := <-accepted:
				kept = append(kept, sc)
			case <-time.After(300 * time.Millisecond):
				return kept
			}
		}
		return kept
	}
	a := len(dial("127.0.0.2", 300))
	if a < max/2-1 || a > max/2+1 {
		t.Fatalf("a lone client kept %d of %d", a, max)
	}
	b := len(dial("127.0.0.3", 300))
	if b < minConnShare || b >= max-a {
		t.Fatalf("a second client kept %d, with %d free", b, max-a)
	}
	cs := dial("127.0.0.4", 300)
	if len(cs) < 1 || a+b+len(cs) >= max {
		t.Fatalf("a newcomer kept %d, with %d free", len(cs), max-a-b)
	}
	open := func() int { l.mu.Lock(); defer l.mu.Unlock(); return l.total }
	if n := open(); n != a+b+len(cs) {
		t.Fatalf("open %d, kept %d+%d+%d", n, a, b, len(cs))
	}
	for _, c := range cs {
		c.Close()
		c.Close() // twice: counted once
	}
	if n := open(); n != a+b {
		t.Fatalf("open %d after closing the newcomer's, want %d", n, a+b)
	}
}

// TestConnLimit_byNetwork: counted by network (DNS's TCP listener), 16
// addresses of one /24 holding all they can are one client, held to a
// share, and a client of another network still finds room (an outside
// review filled DNS's TCP connections from 16 addresses of one /24 when
// each address was a client of its own).
func TestConnLimit_byNetwork(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const max = 64
	l := newConnLimit(raw, max, 8, slog.New(slog.DiscardHandler)).byNetwork()
	defer l.Close()
	var mu sync.Mutex
	held := map[string]int{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			mu.Lock()
			held[networkOf(host)]++
			mu.Unlock()
		}
	}()
	dial := func(from string, n int) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		for range n {
			c, err := d.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}
	}
	for i := range 16 {
		dial(fmt.Sprintf("127.0.2.%d", i+1), max)
	}
	time.Sleep(300 * time.Millisecond)
	dial("127.0.5.1", 4)
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if n := held["127.0.2.0/24"]; n > max/2 {
		t.Errorf("16 addresses of one /24 hold %d of %d connections", n, max)
	}
	if n := held["127.0.5.0/24"]; n != 4 {
		t.Errorf("a client of another network got %d of its 4 connections", n)
	}
	for in, want := range map[string]string{"10.1.2.3": "10.1.2.0/24", "::ffff:10.1.2.3": "10.1.2.0/24",
		"2001:db8:1:2::5": "2001:db8:1::/48", "not-an-ip": "not-an-ip"} {
		if got := networkOf(in); got != want {
			t.Errorf("networkOf(%s) = %s, want %s", in, got, want)
		}
	}
}
