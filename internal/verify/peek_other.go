//go:build !unix

package verify

import "net"

// canPeek says peekIdle cannot tell an open connection from a closed one
// here: no connection is kept, and every callback has its own.
const canPeek = false

func peekIdle(net.Conn) bool { return false }
