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
// the flags `muster server -h` shows, each with the environment variable
// its help names, if any.
func TestREADME_ServerFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"server", "-h"}, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("muster server -h: %v", err)
	}
	have := map[string]string{} // flag → env
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-[a-z], )?--([a-z][a-z-]*)\b(?:.*\(env ([A-Z_]+)\))?`).FindAllStringSubmatch(out.String(), -1) {
		if m[1] != "help" {
			have[m[1]] = m[2]
		}
	}
	if len(have) < 5 {
		t.Fatalf("could not read the flags from `muster server -h`:\n%s", out.String())
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	inTable := false
	for _, line := range strings.Split(string(readme), "\n") {
		switch {
		case strings.HasPrefix(line, "| flag |"):
			inTable = true
		case inTable && !strings.HasPrefix(line, "|"):
			inTable = false
		case inTable:
			cells := strings.SplitN(line, "|", 4)
			envs := regexp.MustCompile("`(MUSTER_[A-Z_]+)`").FindAllStringSubmatch(cells[2], -1)
			for i, m := range regexp.MustCompile("`--([a-z-]+)`").FindAllStringSubmatch(cells[1], -1) {
				documented[m[1]] = ""
				if i < len(envs) {
					documented[m[1]] = envs[i][1]
				}
			}
		}
	}
	var missing, extra []string
	for f, env := range have {
		if d, ok := documented[f]; !ok {
			missing = append(missing, f)
		} else if d != env {
			t.Errorf("README: --%s has env %q; its help says %q", f, d, env)
		}
	}
	for f := range documented {
		if _, ok := have[f]; !ok {
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
