package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// The demo's commands as the READMEs show them, after
// `go run ./examples/wordcloud/cmd/demo`: TestDemo_BrowserEndToEnd runs
// exactly these, and TestREADME_DemoCommands checks that the READMEs show
// no other.
var (
	readmeStart = []string{}
	readmeJoin  = []string{"scraper", "--site", "example.org"}
)

// TestREADME_DemoCommands: every command of the READMEs that runs the demo
// names this package and arguments the end-to-end test runs.
func TestREADME_DemoCommands(t *testing.T) {
	const prefix = "go run ./examples/wordcloud/cmd/demo"
	if _, err := os.Stat("../../../../" + strings.TrimPrefix(prefix, "go run ./")); err != nil {
		t.Fatalf("the READMEs' package path does not exist: %v", err)
	}
	found := 0
	for _, file := range []string{"../../../../README.md", "../../README.md"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line, _, _ = strings.Cut(line, "#")
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, prefix) {
				continue
			}
			found++
			args := strings.Fields(strings.TrimPrefix(line, prefix))
			if !slices.Equal(args, readmeStart) && !slices.Equal(args, readmeJoin) {
				t.Errorf("%s shows %q, which no test runs", file, line)
			}
		}
	}
	if found < 4 {
		t.Fatalf("found %d demo commands in the READMEs, want the 4 they show", found)
	}
}
