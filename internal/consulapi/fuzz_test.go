package consulapi

import (
	"strings"
	"testing"
)

// FuzzParseFilter: any filter expression is either one of the two forms
// served, whose parts are sound (a meta key of the allowed characters, a
// non-empty tag), or an error; it never panics.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`ServiceMeta.zone == "a"`, `ServiceMeta["zone"] == "a"`, `"blue" in ServiceTags`,
		`Service matches "x"`, `ServiceMeta.k == a`, `"" in ServiceTags`, `ServiceMeta[] == ""`, `==`, ` in `,
		`Service.Meta.zone == "a"`, `"v2" in Service.Tags`} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, health bool) {
		kind, key, val, err := parseFilter(s, health)
		switch {
		case err != nil:
			if !strings.Contains(err.Error(), "is not served") {
				t.Fatalf("parseFilter(%q): error %v does not say what is served", s, err)
			}
		case kind == "tag":
			if val == "" || key != "" {
				t.Fatalf("parseFilter(%q) = tag %q, key %q", s, val, key)
			}
		case kind == "meta":
			if key == "" {
				t.Fatalf("parseFilter(%q) = meta with no key", s)
			}
		default:
			t.Fatalf("parseFilter(%q) = kind %q", s, kind)
		}
	})
}

// FuzzParseWait: a wait is within 0 and the longest blocking query, or an
// error.
func FuzzParseWait(f *testing.F) {
	for _, s := range []string{"30s", "5m", "10", "11m", "-1s", "forever", "99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseWait(s)
		if err == nil && (d < 0 || d > 10*60*1e9) {
			t.Fatalf("parseWait(%q) = %v", s, d)
		}
	})
}
