package client

import "testing"

// TestMatchPattern: the answerer's patterns match as enrolment keys'
// do: "*" any run of characters, anything else itself.
func TestMatchPattern(t *testing.T) {
	for _, c := range []struct {
		p, name string
		want    bool
	}{
		{"web", "web", true}, {"web", "web2", false}, {"web*", "web", true}, {"web*", "web_api", true}, {"web*", "we", false},
		{"*", "anything", true}, {"*_api", "web_api", true}, {"*_api", "web_apix", false}, {"a*b*c", "a-b-c", true},
		{"a*b*c", "acb", false}, {"a*a", "a", false}, {"a*a", "aa", true}, {"fetch_*_v2", "fetch_url_v2", true},
	} {
		if got := matchPattern(c.p, c.name); got != c.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", c.p, c.name, got, c.want)
		}
	}
	if !matchesAny(nil, "x") || matchesAny([]string{"a", "b"}, "c") || !matchesAny([]string{"a", "c*"}, "cc") {
		t.Error("matchesAny")
	}
}
