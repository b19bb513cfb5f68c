package presubmit

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goTestCommand finds `go test` commands that name a test with -run, in
// code spans and shell blocks alike.
var goTestCommand = regexp.MustCompile("go test [^`\n]*-run [^`\n]*")

// TestDocs_GoTestCommands: every `go test ... -run TestX ...` command the
// README and docs/ show names a package that has the test TestX, and
// every flag it passes after -args is defined in that package's tests.
// The long runs they describe (200 linearizability runs, 5 leader kills
// of 200 instances) are too long for CI; the short forms run there, and
// this keeps the long forms' names and flags true.
func TestDocs_GoTestCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("lists the packages' tests")
	}
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	found := 0
	listed := map[string]string{} // "pkg run" → go test -list's output
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range goTestCommand.FindAllString(string(b), -1) {
			f := strings.Fields(cmd)
			var run string
			var pkgs, flags []string
			args := false
			for i := 2; i < len(f); i++ {
				switch {
				case args && strings.HasPrefix(f[i], "-"):
					flags = append(flags, strings.TrimLeft(strings.SplitN(f[i], "=", 2)[0], "-"))
				case f[i] == "-args":
					args = true
				case f[i] == "-run" && i+1 < len(f):
					run = f[i+1]
					i++
				case (f[i] == "-bench" || f[i] == "-benchtime" || f[i] == "-count" || f[i] == "-timeout") && i+1 < len(f):
					i++
				case strings.HasPrefix(f[i], "./"):
					pkgs = append(pkgs, f[i])
				}
			}
			if run == "" || run == "XXX" || len(pkgs) == 0 {
				continue
			}
			found++
			for _, pkg := range pkgs {
				out, ok := listed[pkg+" "+run]
				if !ok {
					list := exec.Command("go", "test", "-list", run, pkg)
					list.Dir = "../.."
					b, err := list.CombinedOutput()
					if err != nil {
						t.Errorf("%s: %q: go test -list %s %s: %v\n%s", file, cmd, run, pkg, err, b)
						continue
					}
					out = string(b)
					listed[pkg+" "+run] = out
				}
				if !regexp.MustCompile(`(?m)^(Test|Example|Benchmark|Fuzz)`).MatchString(out) {
					t.Errorf("%s: %q: -run %s selects nothing in %s", file, cmd, run, pkg)
					continue
				}
				if len(flags) == 0 {
					continue
				}
				srcs, _ := filepath.Glob(filepath.Join("../..", pkg, "*_test.go"))
				var all strings.Builder
				for _, s := range srcs {
					b, _ := os.ReadFile(s)
					all.Write(b)
				}
				for _, fl := range flags {
					if !regexp.MustCompile(`flag\.[A-Za-z]+\("` + regexp.QuoteMeta(fl) + `"`).MatchString(all.String()) {
						t.Errorf("%s: %q passes -%s, which %s's tests do not define", file, cmd, fl, pkg)
					}
				}
			}
		}
	}
	if found == 0 {
		t.Fatal("found no go test -run commands in the docs")
	}
}
