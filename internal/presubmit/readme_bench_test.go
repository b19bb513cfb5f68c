package presubmit

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestREADME_BenchmarkCommands: each command of the README's
// "Benchmarks" block is a go test command whose -bench pattern selects at
// least one benchmark in every package it names (go test -list, from the
// repository's root, as the README runs it).
func TestREADME_BenchmarkCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the benchmarks' packages")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Benchmarks\n")
	if !ok {
		t.Fatal("the README has no Benchmarks section")
	}
	_, block, _ := strings.Cut(section, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	cmds := strings.Split(strings.TrimSpace(block), "\n")
	if len(cmds) == 0 || cmds[0] == "" {
		t.Fatal("the Benchmarks section shows no command")
	}
	for _, cmd := range cmds {
		f := strings.Fields(cmd)
		if len(f) < 3 || f[0] != "go" || f[1] != "test" {
			t.Errorf("%q is not a go test command", cmd)
			continue
		}
		var pattern string
		var pkgs []string
		for i := 2; i < len(f); i++ {
			switch {
			case f[i] == "-bench" && i+1 < len(f):
				pattern = f[i+1]
				i++
			case (f[i] == "-run" || f[i] == "-benchtime") && i+1 < len(f):
				i++
			case !strings.HasPrefix(f[i], "-"):
				pkgs = append(pkgs, f[i])
			}
		}
		if pattern == "" || len(pkgs) == 0 {
			t.Errorf("%q names no -bench pattern or no package", cmd)
			continue
		}
		for _, pkg := range pkgs {
			list := exec.Command("go", "test", "-list", "^Benchmark", pkg)
			list.Dir = "../.."
			out, err := list.CombinedOutput()
			if err != nil {
				t.Errorf("go test -list %s: %v\n%s", pkg, err, out)
				continue
			}
			re := regexp.MustCompile(pattern)
			found := false
			for _, name := range strings.Fields(string(out)) {
				if strings.HasPrefix(name, "Benchmark") && re.MatchString(name) {
					found = true
				}
			}
			if !found {
				t.Errorf("%q: -bench %s selects no benchmark in %s (it has: %s)", cmd, pattern, pkg, out)
			}
		}
	}
}
