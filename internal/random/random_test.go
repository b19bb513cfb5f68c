package random_test

import (
	"strings"
	"testing"

	"github.com/musterhq/muster/internal/random"
)

// TestID_Secret (moved from package catalog with the functions).
func TestID_Secret(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := random.ID(16)
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("ID(16) = %q, want 32 lowercase hex digits", id)
		}
		if seen[id] {
			t.Fatalf("ID repeated %q", id)
		}
		seen[id] = true
	}
	s := random.Secret()
	if len(s) != 43 || strings.ContainsAny(s, "+/=") {
		t.Errorf("Secret() = %q, want 43 unpadded base64url characters", s)
	}
	if s == random.Secret() {
		t.Error("Secret repeated")
	}
}
