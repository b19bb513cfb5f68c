package seedapi_test

import (
	"strings"
	"testing"

	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
)

// TestSeedProtocol_NotWithPrivateReads: a registry whose reads need a
// token does not run the tutorial protocol, whose clients send none and
// whose open registration answers a name that has /v1 instances apart
// from one that has none: a stranger would learn which services exist.
func TestSeedProtocol_NotWithPrivateReads(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	sc := registry.DefaultSeedConfig()
	sc.Services = []string{"pay*"}
	cfg.Registry.Seed = &sc
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the tutorial protocol with anonymous reads: %v", err)
	}
	cfg.Registry.PrivateReads = true
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--seed-compat") {
		t.Fatalf("Validate with private reads and the tutorial protocol: %v, want an error naming --seed-compat", err)
	}
}
