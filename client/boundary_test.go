package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBoundary_NoInternalImports: the SDK and the wire types must never
// depend on the server's internal packages. The internal packages the
// SDK shares with the server are internal/tlsfiles and the one it reads
// files with, internal/durable, and internal/pattern (the rule of
// service-name patterns), leaves that import nothing else of the
// module (internal/presubmit's layer table holds them to that): a
// certificate kept current from its files is the same job for both, and
// it is not an API the SDK's users should build on.
func TestBoundary_NoInternalImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "github.com/musterhq/muster/client", "github.com/musterhq/muster/api").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/musterhq/muster/internal") && pkg != "github.com/musterhq/muster/internal/tlsfiles" && pkg != "github.com/musterhq/muster/internal/durable" &&
			pkg != "github.com/musterhq/muster/internal/pattern" {
			t.Errorf("client or api depends on %s", pkg)
		}
		if !strings.HasPrefix(pkg, "github.com/musterhq/muster/") {
			t.Errorf("client or api depends on third-party package %s", pkg)
		}
	}
}
