package main

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestImports_NoExamples: the product binary depends on no package under
// examples/; the word-cloud demo is its own command
// (examples/wordcloud/cmd/demo).
func TestImports_NoExamples(t *testing.T) {
	const module = "github.com/musterhq/muster/"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	self := false
	for _, pkg := range deps {
		self = self || pkg == module+"cmd/muster"
		if strings.HasPrefix(pkg, module+"examples/") {
			t.Errorf("cmd/muster depends on %s", pkg)
		}
	}
	if !self {
		t.Fatalf("go list -deps did not list cmd/muster itself:\n%s", out)
	}
}

// TestRun_DemoMoved: `muster demo` points at the demo's own command and
// exits with 2.
func TestRun_DemoMoved(t *testing.T) {
	err := run(context.Background(), []string{"demo"}, func(string) string { return "" }, io.Discard, io.Discard)
	if !errors.Is(err, errUsage) || exitCode(err) != 2 {
		t.Fatalf("muster demo: %v (exit %d), want a usage error", err, exitCode(err))
	}
	if want := "the demo is its own command now: go run ./examples/wordcloud/cmd/demo"; err.Error() != want {
		t.Fatalf("muster demo said %q, want %q", err, want)
	}
}
