package catalog

import "testing"

// TestDisplayable: the rule of text taken from requests refuses what a
// terminal would not show as it is, and keeps every other script.
func TestDisplayable(t *testing.T) {
	for s, want := range map[string]bool{
		"":                    true,
		"v2":                  true,
		"dice.com/jobs?q=go":  true,
		"Zürich 東京 ☃":         true,
		"tab\there":           false,
		"nul\x00":             false,
		"del\x7f":             false,
		"csi\u009b31m":        false, // C1: starts an escape sequence
		"nel\u0085":           false, // C1: a line break
		"rlo\u202eabc":        false, // a bidirectional override
		"isolate\u2066x":      false,
		"zero\u200bwidth":     false,
		"line\u2028separator": false,
		"bad\xffutf8":         false,
	} {
		if got := Displayable(s); got != want {
			t.Errorf("Displayable(%+q) = %v, want %v", s, got, want)
		}
		if want && !Printable(s) {
			t.Errorf("%+q is displayable but not printable: the request rule must be the stricter", s)
		}
	}
}
