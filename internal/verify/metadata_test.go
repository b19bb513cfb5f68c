package verify_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/verify"
)

// metadataAddrs are the cloud metadata and link-local service addresses a
// callback must never reach, listed here independently of the package's
// own table so that dropping one from it fails this test.
var metadataAddrs = []string{
	"169.254.169.254", // instance metadata (AWS, GCP, Azure, Oracle, OpenStack, …)
	"169.254.170.2",   // AWS ECS task metadata and credentials
	"169.254.170.23",  // AWS EKS Pod Identity agent
	"fd00:ec2::254",   // AWS instance metadata over IPv6 (inside the default fc00::/7)
	"fd00:ec2::23",    // AWS EKS Pod Identity over IPv6
	"100.100.100.200", // Alibaba Cloud (inside 100.64.0.0/10)
	"fd20:ce::254",    // GCP over IPv6
	"169.254.0.23",    // Tencent Cloud
	"192.0.0.192",     // Oracle Cloud
	"169.254.169.123", // AWS Time Sync
	"169.254.169.253", // AWS DNS resolver
	"fd00:ec2::123",   // AWS Time Sync over IPv6
	"fd00:ec2::253",   // AWS DNS resolver over IPv6
	"168.63.129.16",   // Azure WireServer
}

// spellings returns the ways of writing addr that reach it: as is, and for
// an IPv4 address IPv4-mapped, IPv4-compatible, through NAT64 (the
// well-known and the local-use prefix) and 6to4; for an IPv6 address with
// a zone.
func spellings(tb testing.TB, addr string) []string {
	tb.Helper()
	a := netip.MustParseAddr(addr)
	if a.Is6() {
		return []string{addr, addr + "%eth0"}
	}
	b := a.As4()
	v6 := func(prefix [12]byte) string {
		var x [16]byte
		copy(x[:], prefix[:])
		copy(x[12:], b[:])
		return netip.AddrFrom16(x).String()
	}
	sixToFour := netip.AddrFrom16([16]byte{0x20, 0x02, b[0], b[1], b[2], b[3], 15: 1}).String()
	return []string{
		addr,
		"::ffff:" + addr,                     // IPv4-mapped
		v6([12]byte{}),                       // IPv4-compatible, ::a.b.c.d
		v6([12]byte{0x00, 0x64, 0xff, 0x9b}), // NAT64, 64:ff9b::/96
		v6([12]byte{0x00, 0x64, 0xff, 0x9b, 0, 1}), // local-use NAT64, 64:ff9b:1::/48
		v6([12]byte{8: 0xff, 9: 0xff}),             // IPv4-translated (SIIT), ::ffff:0:a.b.c.d
		sixToFour,                                  // 6to4, 2002:AABB:CCDD::1
	}
}

// TestVerifier_Allowed_metadata: no spelling of any cloud metadata
// address is allowed, whatever the allowlist: the default one (whose
// fc00::/7 holds fd00:ec2::254), or one that names its range, or
// everything, or the very address.
func TestVerifier_Allowed_metadata(t *testing.T) {
	allowlists := map[string][]string{
		"default":        nil,
		"fc00::/7":       {"fc00::/7"},
		"100.64.0.0/10":  {"100.64.0.0/10"},
		"link-local":     {"169.254.0.0/16", "fe80::/10"},
		"everything":     {"0.0.0.0/0", "::/0"},
		"the very hosts": metadataAddrs,
	}
	for name, list := range allowlists {
		t.Run(name, func(t *testing.T) {
			v := newVerifier(t, func(c *verify.Config) {
				c.Timeout = time.Second
				if list != nil {
					allow, err := verify.ParseAllow(list)
					if err != nil {
						t.Fatal(err)
					}
					c.Allow = allow
				}
			})
			for _, addr := range metadataAddrs {
				for _, s := range spellings(t, addr) {
					ip := netip.MustParseAddr(s)
					if v.Allowed(ip) {
						t.Errorf("Allowed(%s) = true; %s is a metadata address", s, addr)
					}
					err := v.CheckAddress(context.Background(), s)
					if !errors.Is(err, verify.ErrNotAllowed) {
						t.Errorf("CheckAddress(%s) = %v, want ErrNotAllowed", s, err)
					} else if !strings.Contains(err.Error(), "metadata") {
						t.Errorf("CheckAddress(%s) = %v; the message should say it is a metadata address", s, err)
					}
				}
			}
		})
	}
}

// TestVerifier_Allowed_nearMetadata: the deny list is exact. Addresses
// next to the metadata ones, and other addresses in the same embeddings,
// are judged by the allowlist alone.
func TestVerifier_Allowed_nearMetadata(t *testing.T) {
	all := newVerifier(t, func(c *verify.Config) {
		c.Allow, _ = verify.ParseAllow([]string{"0.0.0.0/0", "::/0"})
	})
	def := newVerifier(t, nil)
	for _, tt := range []struct {
		v    *verify.Verifier
		addr string
		want bool
	}{
		{all, "169.254.169.250", true},
		{all, "100.100.100.201", true},
		{all, "8.8.8.8", true},
		{all, "64:ff9b::808:808", true}, // NAT64 of 8.8.8.8
		{all, "2002:808:808::1", true},  // 6to4 of 8.8.8.8
		{def, "fd00:ec2::255", true},
		{def, "fd20:ce::253", true},
		{def, "::ffff:10.0.0.1", true},
		{def, "fd00:ec2::254", false},
		{def, "169.254.169.250", false}, // link-local is outside the default
	} {
		if got := tt.v.Allowed(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Allowed(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestVerifier_Verify_metadata: the check at connect time, which guards
// what a host name resolves to, refuses a metadata address before any
// packet is sent, even with an allowlist that holds everything.
func TestVerifier_Verify_metadata(t *testing.T) {
	v := newVerifier(t, func(c *verify.Config) {
		c.Timeout = time.Second
		c.Allow, _ = verify.ParseAllow([]string{"0.0.0.0/0", "::/0"})
	})
	for _, addr := range []string{"169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "fd00:ec2::254", "100.100.100.200"} {
		start := time.Now()
		err := v.Verify(context.Background(), verify.Target{Scheme: "http", Address: addr, Port: 80, Path: "/.well-known/muster/verify"}, request(), keySecret)
		if !errors.Is(err, verify.ErrNotAllowed) {
			t.Errorf("Verify to %s = %v, want ErrNotAllowed", addr, err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("Verify to %s took %v: it tried to connect", addr, d)
		}
	}
}

// TestVerifier_Allowed_notUnicast: the unspecified addresses (which reach
// this host), multicast and broadcast are refused even by an allowlist of
// everything.
func TestVerifier_Allowed_notUnicast(t *testing.T) {
	v, err := verify.New(verify.Config{Allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, Timeout: time.Second, MaxBody: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"0.0.0.0", "::", "::ffff:0.0.0.0", "224.0.0.1", "ff02::1", "255.255.255.255"} {
		if v.Allowed(netip.MustParseAddr(a)) {
			t.Errorf("%s allowed", a)
		}
	}
	for _, a := range []string{"8.8.8.8", "2001:db8::1", "127.0.0.1"} {
		if !v.Allowed(netip.MustParseAddr(a)) {
			t.Errorf("%s refused", a)
		}
	}
}
