package verify

import "net/netip"

// metadataAddrs are the cloud metadata and link-local service addresses
// that no callback may reach, whatever the allowlist says: an allowlist
// wide enough to hold them (fc00::/7 holds AWS's IPv6 metadata address;
// 100.64.0.0/10 holds Alibaba's; 0.0.0.0/0 holds them all) must not turn an
// enrolment key into a way to read instance credentials. Like
// defaultAllow, it is a constant table; New builds the set it checks.
var metadataAddrs = [...]string{
	"169.254.169.254", // instance metadata: AWS, GCP, Azure, Oracle, OpenStack, DigitalOcean, …
	"169.254.169.123", // AWS Time Sync
	"169.254.169.253", // AWS DNS resolver
	"169.254.170.2",   // AWS ECS task metadata and credentials
	"169.254.170.23",  // AWS EKS Pod Identity agent
	"169.254.0.23",    // Tencent Cloud metadata
	"100.100.100.200", // Alibaba Cloud metadata
	"192.0.0.192",     // Oracle Cloud metadata (legacy)
	"168.63.129.16",   // Azure WireServer (host agent)
	"fd00:ec2::254",   // AWS instance metadata over IPv6
	"fd00:ec2::23",    // AWS EKS Pod Identity agent over IPv6
	"fd00:ec2::123",   // AWS Time Sync over IPv6
	"fd00:ec2::253",   // AWS DNS resolver over IPv6
	"fd20:ce::254",    // GCP metadata over IPv6
}

// metadataSet returns the set of metadataAddrs.
func metadataSet() map[netip.Addr]struct{} {
	m := make(map[netip.Addr]struct{}, len(metadataAddrs))
	for _, s := range metadataAddrs {
		m[netip.MustParseAddr(s)] = struct{}{}
	}
	return m
}

// embeddedIPv4 returns the IPv4 address an IPv6 address carries in one
// of the well-known embeddings, and whether it carries one: the last 32
// bits of an IPv4-compatible address (::/96, deprecated, but still a
// spelling) or of a NAT64 address (the well-known prefix 64:ff9b::/96 of
// RFC 6052, and the local-use range 64:ff9b:1::/48 of RFC 8215 with a /96
// prefix), and bits 16–47 of a 6to4 address (2002:AABB:CCDD::/48).
// IPv4-mapped addresses (::ffff:0:0/96) are the caller's to Unmap.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() || ip.Is4In6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	zero := func(bs []byte) bool {
		for _, x := range bs {
			if x != 0 {
				return false
			}
		}
		return true
	}
	nat64 := b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b
	siit := zero(b[:8]) && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0
	switch {
	case zero(b[:12]), // IPv4-compatible
		siit,                            // ::ffff:0:0:0/96, IPv4-translated (RFC 2765)
		nat64 && zero(b[4:12]),          // 64:ff9b::/96
		nat64 && b[4] == 0 && b[5] == 1: // 64:ff9b:1::/48
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case b[0] == 0x20 && b[1] == 0x02: // 2002::/16
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// isMetadata reports whether ip is a cloud metadata address in any
// spelling: as is, with an IPv6 zone, IPv4-mapped, IPv4-compatible,
// NAT64 or 6to4.
func (v *Verifier) isMetadata(ip netip.Addr) bool {
	ip = ip.WithZone("").Unmap()
	if _, ok := v.metadata[ip]; ok {
		return true
	}
	if v4, ok := embeddedIPv4(ip); ok {
		_, ok = v.metadata[v4]
		return ok
	}
	return false
}
