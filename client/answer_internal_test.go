package client

import "testing"

// TestMatchesAny: the answerer answers for a service its patterns
// match (package pattern's rule), or for any when it has none.
func TestMatchesAny(t *testing.T) {
	if !matchesAny(nil, "x") || matchesAny([]string{"a", "b"}, "c") || !matchesAny([]string{"a", "c*"}, "cc") {
		t.Error("matchesAny")
	}
}
