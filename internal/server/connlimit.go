package server

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// connLimit bounds the connections a listener (HTTP's, or DNS's over TCP)
// holds open, in all and by client address, so that no client, and no few clients, can take the
// process's file descriptors: an idle keep-alive connection costs one as
// surely as a blocking query does. A client may hold at most a fair share
// of what it holds and what is free together, split among the clients
// holding some plus itself (a lone client up to half of all), and never
// fewer than its minShare. So every newcomer finds room, however few
// addresses the others use; only very many addresses can fill the bound.
// A connection over the bound is closed as soon as it is accepted, before
// a byte is read.
type connLimit struct {
	net.Listener
	max      int
	minShare int // the least share a client is held to
	log      *slog.Logger
	// group, when set, maps a client's address to the client it counts
	// as (its network), so that many addresses of one network share one
	// share (byNetwork).
	group func(addr string) string

	mu       sync.Mutex
	total    int
	byClient map[string]int
	refused  int
	warned   time.Time
}

// minConnShare is the least share of HTTP connections a client is held
// to.
const minConnShare = 64

func newConnLimit(ln net.Listener, max, minShare int, log *slog.Logger) *connLimit {
	return &connLimit{Listener: ln, max: max, minShare: minShare, log: log, byClient: map[string]int{}}
}

// byNetwork makes l count clients by network: an IPv4 address's /24, an
// IPv6 address's /48. DNS's TCP listener does so: a querier that holds
// connections from 16 addresses of one network (an outside review did,
// keeping each busy with a query every 6 s) took every connection from
// everyone, while a querier with addresses in many networks is rarer. The
// HTTP listener does not: many clients of one subnet (the pods of a
// node) are common there, and each needs connections of its own.
func (l *connLimit) byNetwork() *connLimit {
	l.group = networkOf
	return l
}

// networkOf returns the network of the address addr (/24 or /48), or
// addr when it is not an address.
func networkOf(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p.String()
}

// Accept returns the next connection within the bounds, closing those
// beyond them.
func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client, _, err := net.SplitHostPort(c.RemoteAddr().String())
		if err != nil {
			client = c.RemoteAddr().String()
		}
		if l.group != nil {
			client = l.group(client)
		}
		if l.take(client) {
			return &limitedConn{Conn: c, l: l, client: client}, nil
		}
		c.Close()
	}
}

// take counts a connection of client, or reports false when it is over
// the bounds.
func (l *connLimit) take(client string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	held := l.byClient[client]
	clients := len(l.byClient)
	if held == 0 {
		clients++
	}
	free := l.max - l.total
	if free <= 0 || held >= l.minShare && (held+1)*(clients+1) > held+free {
		l.refused++
		if now := time.Now(); now.Sub(l.warned) >= time.Minute {
			l.warned = now
			l.log.Warn("connections refused: a client holds its share, or every connection is taken",
				"client", client, "held", held, "open", l.total, "max", l.max, "refused_so_far", l.refused)
		}
		return false
	}
	l.total++
	l.byClient[client] = held + 1
	return true
}

// release gives back a connection of client.
func (l *connLimit) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byClient[client]--; l.byClient[client] <= 0 {
		delete(l.byClient, client)
	}
}

// limitedConn gives its place back when closed, once.
type limitedConn struct {
	net.Conn
	l      *connLimit
	client string
	once   sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.client) })
	return err
}

// SetWriteBuffer sets the kernel send buffer of the connection beneath,
// which event streams bound (httpapi.WatchConfig.SendBuffer).
func (c *limitedConn) SetWriteBuffer(n int) error {
	if w, ok := c.Conn.(interface{ SetWriteBuffer(int) error }); ok {
		return w.SetWriteBuffer(n)
	}
	return nil
}
