package cluster

import (
	"errors"
	"net"
	"sync"
)

// faults cuts the links between members, for the tests of partitions
// (Config.faults, unexported: nil in production, where nothing here
// runs). A link is a pair of IP addresses, cut in both directions: a dial
// from one to the other fails, an accepted connection between them is
// closed, and the connections already open between them are closed when
// the link is cut. With faults set, a member dials from the IP address it
// listens on, so that each member of a test cluster on its own loopback
// address is told apart by its peers.
type faults struct {
	mu    sync.Mutex
	cut   map[[2]string]bool
	conns map[net.Conn][2]string
}

func newFaults() *faults {
	return &faults{cut: map[[2]string]bool{}, conns: map[net.Conn][2]string{}}
}

var errLinkCut = errors.New("cluster: the link is cut (a test partition)")

func link(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// Cut cuts the link between the members on IP addresses a and b, and
// closes every connection between them.
func (f *faults) Cut(a, b string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := link(a, b)
	f.cut[l] = true
	for c, cl := range f.conns {
		if cl == l {
			c.Close()
			delete(f.conns, c)
		}
	}
}

// Heal restores every link.
func (f *faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.cut)
}

// admit reports whether a connection between addresses local and remote
// may go on, and tracks it if so.
func (f *faults) admit(c net.Conn, local, remote string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := link(hostOf(local), hostOf(remote))
	if f.cut[l] {
		return false
	}
	f.conns[c] = l
	return true
}

func (f *faults) blocked(local, remote string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cut[link(hostOf(local), hostOf(remote))]
}
