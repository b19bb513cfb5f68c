package gateway_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBoundary_Imports: the word-cloud packages (not their tests) use only
// the standard library, muster's public api and client packages, each
// other, and golang.org/x/net/html, never the server's internal packages.
func TestBoundary_Imports(t *testing.T) {
	const prefix = "github.com/musterhq/muster/examples/wordcloud/"
	pkgs := []string{prefix + "fetchurl", prefix + "scraper", prefix + "wordcloud", prefix + "jobboard", prefix + "gateway"}
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(pkg, prefix),
			pkg == "github.com/musterhq/muster/api",
			pkg == "github.com/musterhq/muster/client",
			strings.HasPrefix(pkg, "golang.org/x/net/html"):
		default:
			t.Errorf("the word-cloud packages depend on %s", pkg)
		}
	}
}
