package dnsapi

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// Config configures the DNS front end. Zero durations and counts take
// their defaults; DefaultConfig spells them out.
type Config struct {
	// Addr is where DNS listens, UDP and TCP on the same port (port 0
	// picks one free for both); "" turns DNS off, the default.
	Addr string
	// Domain is the zone muster answers for, "muster." by default; names
	// outside it are refused. It is normalised by Validate's rules: lower
	// case, with the trailing dot.
	Domain string
	// TTL is the TTL of every record answered, and the negative-caching
	// time of NXDOMAIN and NODATA answers; whole seconds, 0 by default:
	// an address cached past its instance's death is what muster exists
	// to prevent.
	TTL time.Duration
	// Services, when set, are the name patterns of the services DNS
	// answers for ("*" matches any run of name characters); any other is
	// NXDOMAIN, as if it had no instance. Empty answers for every
	// service. DNS cannot authenticate its clients, so a registry whose
	// reads need a token names here what it lets anyone resolve.
	Services []string
	// MaxTCPConns bounds the TCP connections held open at once, idle or
	// not; each client address is held to a fair share of them (the
	// server's listener enforces it). Default 256.
	MaxTCPConns int
	// TCPReadTimeout bounds the wait for a connection's first query, and
	// the reading of every query once its first byte has come. Default
	// 2 s.
	TCPReadTimeout time.Duration
	// TCPIdleTimeout is how long a connection may wait between queries
	// (RFC 7766 asks for at least a few seconds). Default 8 s.
	TCPIdleTimeout time.Duration
	// WriteTimeout bounds the writing of one answer over TCP. Default 2 s.
	WriteTimeout time.Duration
	// UDPWorkers is how many goroutines read and answer UDP queries;
	// default 4 × GOMAXPROCS. Queries never wait on anything but the CPU,
	// so a few suffice, and they bound what a flood can make the server
	// hold.
	UDPWorkers int
	// Observe, when set, is told of each query answered: its type and the
	// answer's code, as the protocol names them ("SRV", "NXDOMAIN"; a
	// type without a name is "other"). It must be cheap and safe for
	// concurrent use (metrics).
	Observe func(qtype, rcode string)
}

// DefaultDomain is the zone muster answers for unless told otherwise.
const DefaultDomain = "muster."

// MaxTTL is the longest TTL accepted: long TTLs are what DNS-based
// discovery gets wrong.
const MaxTTL = 24 * time.Hour

// DefaultConfig returns the defaults: DNS off, the domain muster., TTL 0.
func DefaultConfig() Config {
	return Config{Domain: DefaultDomain, MaxTCPConns: 256, TCPReadTimeout: 2 * time.Second,
		TCPIdleTimeout: 8 * time.Second, WriteTimeout: 2 * time.Second}
}

// Enabled reports whether DNS is on (Addr is set).
func (c Config) Enabled() bool { return c.Addr != "" }

// Validate reports every setting it cannot use, naming the flag's words.
func (c Config) Validate() error {
	var errs []error
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("dnsapi: DNS address %q must be host:port (127.0.0.1:8600)", c.Addr))
		}
	}
	if _, err := NormalizeDomain(c.Domain); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.TTL < 0 || c.TTL > MaxTTL:
		errs = append(errs, fmt.Errorf("dnsapi: the DNS TTL must be between 0 and %s", MaxTTL))
	case c.TTL%time.Second != 0:
		errs = append(errs, errors.New("dnsapi: the DNS TTL must be whole seconds"))
	}
	for _, p := range c.Services {
		if !catalog.ValidPattern(p) {
			errs = append(errs, fmt.Errorf("dnsapi: DNS service pattern %.70q: 1 to 63 of a-z 0-9 - _ and *", p))
		}
	}
	if c.MaxTCPConns < 0 || c.TCPReadTimeout < 0 || c.TCPIdleTimeout < 0 || c.WriteTimeout < 0 || c.UDPWorkers < 0 {
		errs = append(errs, errors.New("dnsapi: DNS limits and timeouts must not be negative"))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with its zero fields set to the defaults and its
// domain normalised; c must be valid.
func (c Config) withDefaults(procs int) Config {
	d := DefaultConfig()
	c.Domain, _ = NormalizeDomain(c.Domain)
	if c.MaxTCPConns == 0 {
		c.MaxTCPConns = d.MaxTCPConns
	}
	if c.TCPReadTimeout == 0 {
		c.TCPReadTimeout = d.TCPReadTimeout
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = d.TCPIdleTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.UDPWorkers == 0 {
		c.UDPWorkers = 4 * max(1, procs)
	}
	return c
}

// NormalizeDomain returns domain in lower case with its trailing dot
// ("" is DefaultDomain), or an error if it is not a host name of one label
// or more (catalog.ValidHost's rule: letters, digits and '-', labels of 1 to 63 characters). The
// root is refused: muster answers for a zone of its own, never for every
// name.
func NormalizeDomain(domain string) (string, error) {
	if domain == "" {
		return DefaultDomain, nil
	}
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	bad := fmt.Errorf("dnsapi: DNS domain %q must be a name such as muster or muster.example.internal (letters, digits and '-', not the root)", domain)
	if net.ParseIP(d) != nil || !catalog.ValidHost(d) || len(d) > 200 {
		return "", bad
	}
	return d + ".", nil
}

// serves reports whether DNS answers for the service (Config.Services).
func (c *Config) serves(service string) bool {
	if len(c.Services) == 0 {
		return true
	}
	for _, p := range c.Services {
		if catalog.MatchPattern(p, service) {
			return true
		}
	}
	return false
}
