package gateway_test

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestBoundary_Imports: the packages under examples/ (not their tests)
// stay on the SDK side of the module.
//
// Every library (fetchurl, scraper, wordcloud, gateway, jobboard,
// internal/…) uses only the standard library, muster's public api and
// client packages (and internal/tlsfiles, internal/durable and internal/pattern, the
// leaves the SDK keeps its client certificate current with), other example libraries and
// golang.org/x/net/html, never the server's internal packages, even
// indirectly.
//
// The one exception is the demo command, examples/wordcloud/cmd/demo,
// which embeds a registry: it may import, besides what a library may,
// internal/server and internal/durable, and no other internal/ package
// (it depends on what those two import). The gRPC example,
// examples/grpc, depends on grpc-go and muster's SDK (client and its
// gRPC packages), and on no internal/ package but the SDK's leaves. Any
// other command under examples/ fails this test until it gets a rule
// here.
func TestBoundary_Imports(t *testing.T) {
	const (
		module   = "github.com/musterhq/muster/"
		examples = module + "examples/"
		demo     = examples + "wordcloud/cmd/demo"
		grpcEx   = examples + "grpc"
	)
	library := func(pkg string) bool {
		return strings.HasPrefix(pkg, examples) ||
			pkg == module+"api" ||
			pkg == module+"client" ||
			pkg == module+"internal/tlsfiles" || pkg == module+"internal/durable" || pkg == module+"internal/pattern" || // the SDK's internal leaves (client/boundary_test.go)
			pkg == "golang.org/x/net/html" || strings.HasPrefix(pkg, "golang.org/x/net/html/")
	}
	demoOnly := map[string]bool{module + "internal/server": true, module + "internal/durable": true}

	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Name,Standard,Imports,Deps", examples+"...")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	type pkg struct {
		ImportPath, Name string
		Standard         bool
		Imports, Deps    []string
	}
	var all []pkg
	standard := map[string]bool{}
	for dec := json.NewDecoder(strings.NewReader(string(out))); ; {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		all = append(all, p)
		standard[p.ImportPath] = p.Standard
	}

	libraries, sawDemo := 0, false
	for _, p := range all {
		switch {
		case !strings.HasPrefix(p.ImportPath, examples):
			// A dependency; judged through the packages that import it.
		case p.ImportPath == demo:
			sawDemo = true
			for _, imp := range p.Imports {
				if !standard[imp] && !library(imp) && !demoOnly[imp] {
					t.Errorf("the demo command imports %s; it may import only what the libraries may, internal/server and internal/durable", imp)
				}
			}
		case p.ImportPath == grpcEx:
			for _, dep := range p.Deps {
				if strings.HasPrefix(dep, module+"internal/") && !library(dep) {
					t.Errorf("the gRPC example depends on %s", dep)
				}
			}
		case p.Name == "main":
			t.Errorf("command %s has no import rule in this test", p.ImportPath)
		default:
			libraries++
			for _, dep := range p.Deps {
				if !standard[dep] && !library(dep) {
					t.Errorf("%s depends on %s", p.ImportPath, dep)
				}
			}
		}
	}
	if !sawDemo || libraries < 5 {
		t.Fatalf("go list found the demo command: %v, and %d libraries; expected it and at least 5", sawDemo, libraries)
	}
}
