package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium returns the browser a browser test drives: $MUSTER_CHROMIUM,
// or chromium on the PATH (scripts/test installs it when it can).
// Without one the test fails, unless MUSTER_SKIP_BROWSER=1 outside CI:
// scripts/test sets it, loudly, when it could not install Chromium. In CI
// (MUSTER_CI=1) a browser test always runs.
func Chromium(t *testing.T) string {
	ci := os.Getenv("MUSTER_CI") == "1"
	if os.Getenv("MUSTER_SKIP_BROWSER") == "1" && !ci {
		t.Skip("SKIPPED: MUSTER_SKIP_BROWSER=1 (scripts/test sets it when it finds no Chromium and cannot install one); set MUSTER_CHROMIUM=/path/to/chromium to run this test")
	}
	if p := os.Getenv("MUSTER_CHROMIUM"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("MUSTER_CHROMIUM=%s: %v", p, err)
		}
		return path
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci {
		t.Fatal("no Chromium found, and CI (MUSTER_CI=1) runs the browser tests: install chromium or set MUSTER_CHROMIUM")
	}
	t.Fatal("no Chromium found: run scripts/test (it installs Debian's chromium, or skips the browser tests saying so), set MUSTER_CHROMIUM, or set MUSTER_SKIP_BROWSER=1")
	return ""
}
