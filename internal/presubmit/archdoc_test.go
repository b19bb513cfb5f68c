package presubmit

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestArchitectureDoc_Files: the package table of docs/architecture.md
// has a row for every package outside examples/ (which has one row and
// its own README), and each row's Files column names exactly the Go files
// of its package: a file added, renamed or removed is a drift the table
// must follow. internal/presubmit, which holds only tests, lists them all;
// the others list their non-test files.
func TestArchitectureDoc_Files(t *testing.T) {
	doc, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([a-z][a-z0-9/]*)` \\|")
	goFile := regexp.MustCompile("`([A-Za-z0-9_]+\\.go)`")
	rows := map[string]bool{}
	inTable := false
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(line, "| Package | Job | Files |"):
			inTable = true
			continue
		case !strings.HasPrefix(line, "|"):
			inTable = false
		}
		m := row.FindStringSubmatch(line)
		if !inTable || m == nil {
			continue
		}
		pkg := m[1]
		rows[pkg] = true
		cells := strings.Split(strings.TrimSuffix(strings.TrimSpace(line), "|"), "|")
		var listed []string
		for _, f := range goFile.FindAllStringSubmatch(cells[len(cells)-1], -1) {
			listed = append(listed, f[1])
		}
		entries, err := os.ReadDir(filepath.Join("../..", pkg))
		if err != nil {
			t.Errorf("architecture.md has a row for %s, which is not a directory: %v", pkg, err)
			continue
		}
		var actual []string
		for _, e := range entries {
			n := e.Name()
			if !e.IsDir() && strings.HasSuffix(n, ".go") && (pkg == "internal/presubmit" || !strings.HasSuffix(n, "_test.go")) {
				actual = append(actual, n)
			}
		}
		var missing, extra []string
		for _, f := range actual {
			if !slices.Contains(listed, f) && f != "doc.go" {
				missing = append(missing, f)
			}
		}
		for _, f := range listed {
			if !slices.Contains(actual, f) {
				extra = append(extra, f)
			}
		}
		if len(missing) > 0 || len(extra) > 0 {
			t.Errorf("architecture.md, the row of %s: add %q to its Files, remove %q", pkg, missing, extra)
		}
	}
	for dir := range packages(t) {
		pkg, _ := filepath.Rel("../..", dir)
		pkg = filepath.ToSlash(pkg)
		if !rows[pkg] && !strings.HasPrefix(pkg, "examples/") {
			t.Errorf("architecture.md's package table has no row for %s", pkg)
		}
	}
	if !rows["internal/presubmit"] {
		t.Error("architecture.md's package table has no row for internal/presubmit")
	}
}
