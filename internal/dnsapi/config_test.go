package dnsapi

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestConfig_Validate: the settings the flags fill are checked, each
// refusal naming what is wrong; the defaults are valid and DNS is off.
func TestConfig_Validate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil || DefaultConfig().Enabled() {
		t.Fatalf("the defaults: %v, enabled %v", err, DefaultConfig().Enabled())
	}
	for _, tc := range []struct {
		change func(*Config)
		want   string // "" for valid
	}{
		{func(c *Config) { c.Addr = "127.0.0.1:8600" }, ""},
		{func(c *Config) { c.Addr = "[::1]:0" }, ""},
		{func(c *Config) { c.Addr = "8600" }, "host:port"},
		{func(c *Config) { c.Domain = "consul" }, ""},
		{func(c *Config) { c.Domain = "Disco.Example.Internal." }, ""},
		{func(c *Config) { c.Domain = "." }, "domain"},
		{func(c *Config) { c.Domain = "a..b" }, "domain"},
		{func(c *Config) { c.Domain = "-x" }, "domain"},
		{func(c *Config) { c.Domain = "under_score" }, "domain"},
		{func(c *Config) { c.Domain = "10.0.0.1" }, "domain"},
		{func(c *Config) { c.Domain = strings.Repeat("a.", 101) }, "domain"},
		{func(c *Config) { c.TTL = 30 * time.Second }, ""},
		{func(c *Config) { c.TTL = 1500 * time.Millisecond }, "whole seconds"},
		{func(c *Config) { c.TTL = -time.Second }, "between"},
		{func(c *Config) { c.TTL = 25 * time.Hour }, "between"},
		{func(c *Config) { c.MaxTCPConns = -1 }, "negative"},
		{func(c *Config) { c.TCPIdleTimeout = -time.Second }, "negative"},
	} {
		c := DefaultConfig()
		tc.change(&c)
		err := c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", c, err, tc.want)
		}
	}
}

// TestNormalizeDomain: lower case with the trailing dot; empty is the
// default.
func TestNormalizeDomain(t *testing.T) {
	for in, want := range map[string]string{"": "muster.", "muster": "muster.", "Muster.": "muster.", "a.B.c": "a.b.c."} {
		if got, err := NormalizeDomain(in); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestServer_within: a name is in the zone when it is the domain or ends
// with a label boundary before it; an escaped dot is no boundary.
func TestServer_within(t *testing.T) {
	s := &Server{domain: "muster."}
	for _, tc := range []struct {
		name, rel string
		ok        bool
	}{
		{"muster.", "", true},
		{"web.service.muster.", "web.service.", true},
		{`a\\.muster.`, `a\\.`, true}, // an escaped backslash, then a real dot
		{`a\.muster.`, "", false},     // one label, "a.muster"
		{"xmuster.", "", false},
		{"muster.example.", "", false},
		{"uster.", "", false},
		{".", "", false},
	} {
		rel, ok := s.within(tc.name)
		if rel != tc.rel || ok != tc.ok {
			t.Errorf("%q: %q %v, want %q %v", tc.name, rel, ok, tc.rel, tc.ok)
		}
	}
}

// TestLabels: names split at dots that are not escaped, and labels
// decode their escapes, as tags with dots need.
func TestLabels(t *testing.T) {
	if got := splitLabels(nil, `v1\.2.web.service.`); !slices.Equal(got, []string{`v1\.2`, "web", "service"}) {
		t.Errorf("splitLabels: %q", got)
	}
	if got := splitLabels(nil, ""); got != nil {
		t.Errorf("splitLabels of the apex: %q", got)
	}
	for in, want := range map[string]string{`v1\.2`: "v1.2", `a\032b`: "a b", `x\\y`: `x\y`, "plain": "plain", `end\`: `end\`} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
	if !hasTagFold([]string{"Blue", "v2"}, "blue") || hasTagFold([]string{"blue"}, "blu") {
		t.Error("hasTagFold")
	}
}

// TestWeight: an SRV weight is 1 to 100 with the quality, never 0 (which
// RFC 2782 reserves for "almost never").
func TestWeight(t *testing.T) {
	for q, want := range map[float64]uint16{0: 1, 0.5: 51, 1: 100, -1: 1, 2: 100} {
		if got := weight(q); got != want {
			t.Errorf("weight(%v) = %d, want %d", q, got, want)
		}
	}
}

// TestLargestFitting: the binary search finds the boundary at every
// place, the ends included.
func TestLargestFitting(t *testing.T) {
	for n := range 20 {
		for k := 0; k <= n; k++ {
			if got := largestFitting(n, func(i int) bool { return i <= k }); got != k {
				t.Fatalf("n %d, boundary %d: got %d", n, k, got)
			}
		}
	}
}
