package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/musterhq/muster/internal/testutil"
)

// binary is the demo executable, built once for the tests that run it as
// a real process (it starts its services as copies of itself).
var binary string

func TestMain(m *testing.M) {
	path, cleanup, err := testutil.BuildBinary(".", "demo")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = path
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// TestRun_Errors: the command's mistakes and what they exit with, without
// starting anything.
func TestRun_Errors(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // no state file of a running demo
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name string
		args []string
		code int    // exit code; 0 means no error
		want string // in the error, or in stdout when code is 0
	}{
		{"help", []string{"help"}, 0, "scraper --site SITE"},
		{"unknown flag", []string{"-bogus"}, 2, "-bogus"},
		{"positional argument", []string{"scrapr"}, 2, `unexpected argument "scrapr"`},
		{"service without a name", []string{"service"}, 2, "needs a name"},
		{"unknown service", []string{"service", "nope"}, 2, `unknown demo service "nope"`},
		{"scraper without a demo", []string{"scraper", "--site", "example.org"}, 1, "no running demo found (start `go run ./examples/wordcloud/cmd/demo` first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, noEnv, &stdout, &stderr)
			switch {
			case tc.code == 0 && err != nil:
				t.Fatalf("run(%q) = %v", tc.args, err)
			case tc.code == 0 && !strings.Contains(stdout.String(), tc.want):
				t.Fatalf("run(%q) printed %q, want something with %q", tc.args, stdout.String(), tc.want)
			case tc.code == 0:
			case err == nil:
				t.Fatalf("run(%q) succeeded, want exit %d", tc.args, tc.code)
			case exitCode(err) != tc.code || !strings.Contains(err.Error(), tc.want):
				t.Fatalf("run(%q) = %v (exit %d), want exit %d and %q", tc.args, err, exitCode(err), tc.code, tc.want)
			}
		})
	}
}
