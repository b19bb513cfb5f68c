package httpapi

import "testing"

// TestLoopback: which addresses are this host's own: a caller's (who may
// read /metrics without a token) and a bound listener's (plain HTTP there
// is the quickstart's; anywhere else the server warns about it).
func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9000": true, "127.0.0.2:9000": true, "[::1]:9000": true, "[::ffff:127.0.0.1]:9000": true,
		"0.0.0.0:9000": false, "[::]:9000": false, "10.0.0.1:9000": false, "192.168.1.5:9000": false, "localhost:9000": false, "": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
