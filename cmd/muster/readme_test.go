package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestREADME_ServerFlags: the README's table of server flags lists exactly
// the flags `muster server` has.
func TestREADME_ServerFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	run(context.Background(), []string{"server", "-h"}, func(string) string { return "" }, &out, &errOut)
	have := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z][a-z-]*)`).FindAllStringSubmatch(errOut.String(), -1) {
		have[m[1]] = true
	}
	if len(have) < 5 {
		t.Fatalf("could not read the flags from `muster server -h`:\n%s", errOut.String())
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	inTable := false
	for _, line := range strings.Split(string(readme), "\n") {
		switch {
		case strings.HasPrefix(line, "| flag |"):
			inTable = true
		case inTable && !strings.HasPrefix(line, "|"):
			inTable = false
		case inTable:
			cell := strings.SplitN(line, "|", 3)[1]
			for _, m := range regexp.MustCompile("`--([a-z-]+)`").FindAllStringSubmatch(cell, -1) {
				documented[m[1]] = true
			}
		}
	}
	var missing, extra []string
	for f := range have {
		if !documented[f] {
			missing = append(missing, f)
		}
	}
	for f := range documented {
		if !have[f] {
			extra = append(extra, f)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("README server flags table: missing %v, not real flags %v", missing, extra)
	}
}
