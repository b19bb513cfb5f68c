package presubmit

import (
	"os"
	"strings"
	"testing"
)

// TestSecurityAttack7_ConsulWritesInTheThreatModel: the Consul-compatible
// API now takes writes with an enrolment key, and keys may skip the
// address callback there (consul_verify none), but docs/security.md, the
// threat model, still says of its listener "nobody: it serves reads
// only", still says "A Consul-compatible port will state its rule here
// when it is added", and says nothing of consul_verify: what a none key
// may do (register any allowlisted address unproved, have it probed,
// count against its host's limits) is nowhere in the threat model.
func TestSecurityAttack7_ConsulWritesInTheThreatModel(t *testing.T) {
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
