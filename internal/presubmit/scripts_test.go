package presubmit

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// scriptsTest runs scripts/test on a PATH of stubs: go, apt-get, sudo, id
// and sleep record what they were asked and do what the case says, so
// that the script's choices (install Chromium, wait for apt's lock, skip
// the browser test or fail) are tested without root, apt or a network.
type scriptsTest struct {
	bin string // the stubs' directory, the whole PATH
	log string // one line per stub call
}

// stubs: each logs its name, arguments and the variables the script
// passes on, then behaves as STUB_* says.
var stubs = map[string]string{
	"go": `echo "go $* SKIP=${MUSTER_SKIP_BROWSER:-} CHROMIUM=${MUSTER_CHROMIUM:-}" >>"$STUB_LOG"
exit "${STUB_GO_EXIT:-0}"`,
	// STUB_APT: ok (install puts chromium on the PATH), fail (install
	// fails), or locked (update finds the lists locked twice, then ok).
	"apt-get": `echo "apt-get $* FRONTEND=${DEBIAN_FRONTEND:-} LC_ALL=${LC_ALL:-}" >>"$STUB_LOG"
case "$*" in
*" update")
  if [ "$STUB_APT" = locked ]; then
    n=$(cat "$STUB_LOG.locks" 2>/dev/null || echo 0)
    if [ "$n" -lt 2 ]; then
      echo $((n + 1)) >"$STUB_LOG.locks"
      echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1 (apt-get)" >&2
      exit 100
    fi
  fi
  exit 0 ;;
*" install "*)
  [ "$STUB_APT" = fail ] && exit 100
  printf '#!/bin/sh\n' >"$STUB_BIN/chromium" && chmod +x "$STUB_BIN/chromium"
  exit 0 ;;
esac
exit 1`,
	// STUB_SUDO: nopass runs the command; anything else asks for a
	// password, which sudo -n refuses.
	"sudo": `echo "sudo $*" >>"$STUB_LOG"
[ "$1" = -n ] || exit 1
shift
[ "$STUB_SUDO" = nopass ] || exit 1
[ "$1" = true ] && exit 0
exec "$@"`,
	"id":    `echo "${STUB_UID:-0}"`,
	"sleep": `echo "sleep $*" >>"$STUB_LOG"`,
}

func newScriptsTest(t *testing.T) *scriptsTest {
	t.Helper()
	dir := t.TempDir()
	s := &scriptsTest{bin: filepath.Join(dir, "bin"), log: filepath.Join(dir, "log")}
	if err := os.Mkdir(s.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(s.bin, name), []byte("#!"+sh+"\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The real tools the script and the stubs use.
	for _, name := range []string{"dirname", "env", "cat", "chmod"} {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("no %s", name)
		}
		if err := os.Symlink(p, filepath.Join(s.bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// chromiumStub puts an executable at path and returns it.
func chromiumStub(t *testing.T, path string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs scripts/test with args and env (NAME=value), and returns its
// exit code, its stderr and the stubs' log.
func (s *scriptsTest) run(t *testing.T, env []string, args ...string) (code int, stderr string, calls []string) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script, err := filepath.Abs("../../scripts/test")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, append([]string{script}, args...)...)
	cmd.Env = append([]string{"PATH=" + s.bin, "STUB_LOG=" + s.log, "STUB_BIN=" + s.bin, "HOME=" + t.TempDir()}, env...)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	cmd.Stdout = &errOut
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(s.log)
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			calls = append(calls, l)
		}
	}
	return code, errOut.String(), calls
}

// goCall returns the stubs' log line of the go test run, or "".
func goCall(calls []string) string {
	for _, c := range calls {
		if strings.HasPrefix(c, "go ") {
			return c
		}
	}
	return ""
}

// TestScriptsTest: what scripts/test does about Chromium, in and out of
// CI, with and without the means to install it.
func TestScriptsTest(t *testing.T) {
	const (
		goAll     = "go test -race -count=1 -timeout 30m ./... "
		banner    = "SKIPPING THE BROWSER TESTS"
		afterward = "THE BROWSER TESTS WERE SKIPPED"
	)
	for _, tc := range []struct {
		name      string
		chromium  bool // a chromium on the PATH before the run
		env       []string
		args      []string
		wantCode  int
		wantGo    string   // the go call's prefix; "" for no go call
		wantSkip  bool     // MUSTER_SKIP_BROWSER=1 given to go, with the banners
		wantCalls []string // substrings of calls that must be made
		noCalls   []string // prefixes of calls that must not be made
		wantErr   string   // in the script's output
	}{
		{name: "chromium on the PATH", chromium: true, wantGo: goAll + "SKIP= ", noCalls: []string{"apt-get", "sudo"},
			wantCalls: []string{"go test -run ^$ -bench . -benchtime 1x -count=1 -timeout 15m ./..."}},
		{name: "packages named", chromium: true, args: []string{"./cmd/muster", "./internal/presubmit"},
			wantGo:  "go test -race -count=1 -timeout 30m ./cmd/muster ./internal/presubmit SKIP=",
			noCalls: []string{"go test -run ^$ -bench"}},
		{name: "tests fail: no benchmarks", chromium: true, env: []string{"STUB_GO_EXIT=3"}, wantCode: 3, wantGo: goAll + "SKIP= ",
			noCalls: []string{"go test -run ^$ -bench"}},
		{name: "installed as root", env: []string{"STUB_APT=ok"}, wantGo: goAll + "SKIP= ",
			wantCalls: []string{"apt-get -o DPkg::Lock::Timeout=300 -qq update FRONTEND=noninteractive LC_ALL=C",
				"apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium FRONTEND=noninteractive LC_ALL=C"},
			noCalls: []string{"sudo"}},
		{name: "installed through sudo without a password", env: []string{"STUB_UID=1000", "STUB_SUDO=nopass", "STUB_APT=ok"},
			wantGo: goAll + "SKIP= ", wantCalls: []string{"sudo -n env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get -o DPkg::Lock::Timeout=300 install"}},
		{name: "waits for apt's lists lock", env: []string{"STUB_APT=locked"}, wantGo: goAll + "SKIP= ",
			wantCalls: []string{"sleep 5", "apt-get -o DPkg::Lock::Timeout=300 install"}, wantErr: "waiting"},
		{name: "install fails outside CI: skip", env: []string{"STUB_APT=fail"}, wantGo: goAll + "SKIP=1 ", wantSkip: true,
			wantErr: "apt-get could not install chromium"},
		{name: "install fails in CI: fail", env: []string{"STUB_APT=fail", "MUSTER_CI=1"}, wantCode: 1,
			wantErr: "CI (MUSTER_CI=1) runs it or fails"},
		{name: "no root, sudo asks a password: skip", env: []string{"STUB_UID=1000", "STUB_APT=ok"}, wantGo: goAll + "SKIP=1 ",
			wantSkip: true, noCalls: []string{"apt-get"}, wantErr: "needs root"},
		{name: "no apt-get: skip", env: []string{"STUB_NO_APT=1"}, wantGo: goAll + "SKIP=1 ", wantSkip: true,
			wantErr: "no apt-get"},
		{name: "MUSTER_SKIP_BROWSER=1 outside CI", env: []string{"MUSTER_SKIP_BROWSER=1"}, wantGo: goAll + "SKIP=1 ",
			wantSkip: true, noCalls: []string{"apt-get"}},
		{name: "MUSTER_SKIP_BROWSER=1 in CI", env: []string{"MUSTER_SKIP_BROWSER=1", "MUSTER_CI=1"}, wantCode: 1,
			wantErr: "refused in CI"},
		{name: "MUSTER_CHROMIUM missing", env: []string{"MUSTER_CHROMIUM=/nonexistent/chrome"}, wantCode: 1,
			wantErr: "is not an executable"},
		{name: "tests fail while skipping", env: []string{"STUB_APT=fail", "STUB_GO_EXIT=3"}, wantCode: 3,
			wantGo: goAll + "SKIP=1 ", wantSkip: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScriptsTest(t)
			if tc.chromium {
				chromiumStub(t, filepath.Join(s.bin, "chromium"))
			}
			if slices.Contains(tc.env, "STUB_NO_APT=1") {
				os.Remove(filepath.Join(s.bin, "apt-get"))
			}
			code, out, calls := s.run(t, tc.env, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d", code, tc.wantCode)
			}
			g := goCall(calls)
			switch {
			case tc.wantGo == "" && g != "":
				t.Errorf("ran %q, want no go test", g)
			case tc.wantGo != "" && !strings.HasPrefix(g, tc.wantGo):
				t.Errorf("ran %q, want %q…", g, tc.wantGo)
			}
			if got := strings.Contains(out, banner) && strings.Contains(out, afterward); got != tc.wantSkip {
				t.Errorf("banners before and after: %v, want %v", got, tc.wantSkip)
			}
			for _, want := range tc.wantCalls {
				if !slices.ContainsFunc(calls, func(c string) bool { return strings.Contains(c, want) }) {
					t.Errorf("no call %q", want)
				}
			}
			for _, not := range tc.noCalls {
				if slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, not) }) {
					t.Errorf("called %s, which it should not", not)
				}
			}
			if !strings.Contains(out, tc.wantErr) {
				t.Errorf("output lacks %q", tc.wantErr)
			}
			if t.Failed() {
				t.Logf("calls:\n%s\noutput:\n%s", strings.Join(calls, "\n"), out)
			}
		})
	}
}

// TestREADME_TestCommands: the README's commands that run scripts/test
// set only variables scripts/test and the browser test read, and run as
// written on the stubs, except that MUSTER_CHROMIUM points at a stub
// browser rather than the README's example path: the script then uses
// that browser and installs nothing.
func TestREADME_TestCommands(t *testing.T) {
	known := []string{"MUSTER_CHROMIUM", "MUSTER_SKIP_BROWSER", "MUSTER_CI"}
	found := 0
	for _, c := range readmeShell(t, "") {
		i := slices.IndexFunc(c, func(w string) bool { return w == "scripts/test" })
		if i < 0 {
			continue
		}
		found++
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			s := newScriptsTest(t)
			chromiumStub(t, filepath.Join(s.bin, "chromium"))
			var env []string
			for _, kv := range c[:i] {
				k, _, ok := strings.Cut(kv, "=")
				if !ok || !slices.Contains(known, k) {
					t.Fatalf("%q: %s is not a variable scripts/test reads", c, kv)
				}
				if k == "MUSTER_CHROMIUM" {
					kv = k + "=" + chromiumStub(t, filepath.Join(t.TempDir(), "chrome"))
				}
				env = append(env, kv)
			}
			code, out, calls := s.run(t, env, c[i+1:]...)
			if code != 0 || goCall(calls) == "" || slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "apt-get") }) {
				t.Fatalf("exit %d, calls %q\n%s", code, calls, out)
			}
		})
	}
	if found == 0 {
		t.Fatal("the README shows no scripts/test command")
	}
	// The variables the README names are the ones the script and the
	// browser tests read.
	script, err := os.ReadFile("../../scripts/test")
	if err != nil {
		t.Fatal(err)
	}
	// The browser tests find their browser through testutil.Chromium.
	browser, err := os.ReadFile("../../internal/testutil/chromium.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range known {
		if !strings.Contains(string(script), v) || !strings.Contains(string(browser), `"`+v+`"`) {
			t.Errorf("%s: scripts/test and the browser test should both read it", v)
		}
	}
}
