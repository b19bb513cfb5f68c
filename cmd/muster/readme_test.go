package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"sort"
	"strconv"
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

// TestREADME_CrashCommand: the README's command for a long crash test
// runs as written: it sets the variables TestCrash reads, in this package,
// and its -run pattern selects TestCrash.
func TestREADME_CrashCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var cmd string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.Contains(line, crashRoundsEnv+"=") {
			cmd = line
			break
		}
	}
	if cmd == "" {
		t.Fatalf("the README shows no command setting %s", crashRoundsEnv)
	}
	fields := strings.Fields(cmd)
	i := 0
	for ; i < len(fields) && strings.Contains(fields[i], "="); i++ {
		name, val, _ := strings.Cut(fields[i], "=")
		if name != crashRoundsEnv && name != crashSeedEnv {
			t.Errorf("%q sets %s, which TestCrash does not read", cmd, name)
		}
		if _, err := strconv.ParseUint(val, 10, 64); err != nil {
			t.Errorf("%q: %s=%s is not a number", cmd, name, val)
		}
	}
	rest := fields[i:]
	if len(rest) < 3 || rest[0] != "go" || rest[1] != "test" {
		t.Fatalf("%q is not a go test command", cmd)
	}
	var pkg, run string
	for j := 2; j < len(rest); j++ {
		switch {
		case rest[j] == "-run" && j+1 < len(rest):
			run = rest[j+1]
			j++
		case rest[j] == "-short" || strings.HasPrefix(rest[j], "-short="):
			t.Errorf("%q passes -short, which skips TestCrash", cmd)
		case !strings.HasPrefix(rest[j], "-"):
			pkg = rest[j]
		}
	}
	if pkg != "./cmd/muster" {
		t.Errorf("%q tests %q, want ./cmd/muster (run from the repository's root)", cmd, pkg)
	}
	re, err := regexp.Compile(run)
	if err != nil || run == "" || !re.MatchString("TestCrash") {
		t.Errorf("%q: -run %q does not select TestCrash", cmd, run)
	}
	_ = TestCrash // the test the command runs lives in this package
}
