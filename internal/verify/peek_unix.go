//go:build unix

package verify

import (
	"net"
	"syscall"
)

// canPeek says peekIdle can tell an open connection from a closed one
// here, so that connections may be kept.
const canPeek = true

// peekIdle reports whether an idle connection is still open and has
// nothing unread: a peek that would block. One the instance closed reads
// its end at once, and one with bytes nobody asked for is no longer in
// step with its requests.
func peekIdle(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true // never wait
	})
	return err == nil && open
}
