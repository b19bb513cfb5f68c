package presubmit

import (
	"os"
	"strings"
	"testing"
)

// TestSecurityDoc_ConsulWrites: the threat model states the Consul
// listener's rule for writes, and what a key whose Consul registrations
// skip the callback (consul_verify none) may and may not do.
func TestSecurityDoc_ConsulWrites(t *testing.T) {
	b, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, stale := range []string{"it serves reads only", "A Consul-compatible port will state"} {
		if strings.Contains(doc, stale) {
			t.Errorf("docs/security.md still says %q", stale)
		}
	}
	if !strings.Contains(doc, "consul_verify") {
		t.Errorf("docs/security.md does not mention consul_verify (keys whose Consul registrations skip the callback)")
	}
}
