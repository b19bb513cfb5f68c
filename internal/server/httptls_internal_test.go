package server

import (
	"net"
	"testing"
)

// TestLoopback: which bound addresses keep the API on this host (plain
// HTTP there is the quickstart's; anywhere else it is warned about).
func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9000": true, "127.0.0.2:9000": true, "[::1]:9000": true,
		"0.0.0.0:9000": false, "[::]:9000": false, "10.0.0.1:9000": false, "192.168.1.5:9000": false,
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := loopback(a); got != want {
			t.Errorf("loopback(%s) = %v, want %v", addr, got, want)
		}
	}
}
