package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newRun makes a run directory under tmp as runDemo does, and writes its
// state for a demo of process pid.
func newRun(tb testing.TB, tmp string, pid int) string {
	tb.Helper()
	dir, err := os.MkdirTemp(tmp, runPattern)
	if err != nil {
		tb.Fatal(err)
	}
	if err := writeState(dir, state{Registry: "http://127.0.0.1:1", Key: "mk_test", JobBoard: "http://127.0.0.1:2", PID: pid}); err != nil {
		tb.Fatal(err)
	}
	return statePath(dir)
}

// TestWriteState_ReadState: the state round-trips, in a file private to
// this user.
func TestWriteState_ReadState(t *testing.T) {
	path := newRun(t, t.TempDir(), 42)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	st, err := readState(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := (state{Registry: "http://127.0.0.1:1", Key: "mk_test", JobBoard: "http://127.0.0.1:2", PID: 42}); st != want {
		t.Fatalf("readState = %+v, want %+v", st, want)
	}
}

// TestReadState_Untrusted: a state file others could read or write, or a
// link to one, is refused (it would hand out or take in a key).
func TestReadState_Untrusted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, path string) string
	}{
		{"readable by others", func(t *testing.T, path string) string {
			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
			return path
		}},
		{"a symlink", func(t *testing.T, path string) string {
			link := filepath.Join(t.TempDir(), "link.json")
			if err := os.Symlink(path, link); err != nil {
				t.Fatal(err)
			}
			return link
		}},
		{"a directory", func(t *testing.T, path string) string {
			return filepath.Dir(path)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.spoil(t, newRun(t, t.TempDir(), 1))
			if _, err := readState(path); err == nil {
				t.Fatalf("readState(%s) trusted it", path)
			}
		})
	}
}

// TestFindState: `demo scraper` joins the one running demo of this user's;
// runs whose demo has gone, or that others could tamper with, do not
// count; with several running it names them and picks none.
func TestFindState(t *testing.T) {
	const live, dead = 100, 200
	alive := func(pid int) bool { return pid == live }
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, tmp string) (want string) // the path to find; "" for none
		wantErr error
		errText string
	}{
		{"no run", func(t *testing.T, tmp string) string { return "" }, errNoDemo, ""},
		{"one running", func(t *testing.T, tmp string) string { return newRun(t, tmp, live) }, nil, ""},
		{"a killed run left behind", func(t *testing.T, tmp string) string {
			newRun(t, tmp, dead)
			return ""
		}, errNoDemo, ""},
		{"one running beside a killed one", func(t *testing.T, tmp string) string {
			newRun(t, tmp, dead)
			p := newRun(t, tmp, live)
			newRun(t, tmp, dead)
			return p
		}, nil, ""},
		{"a run dir others may write to", func(t *testing.T, tmp string) string {
			p := newRun(t, tmp, live)
			if err := os.Chmod(filepath.Dir(p), 0o777); err != nil {
				t.Fatal(err)
			}
			return ""
		}, errNoDemo, ""},
		{"a state file others may read", func(t *testing.T, tmp string) string {
			p := newRun(t, tmp, live)
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return ""
		}, errNoDemo, ""},
		{"a state without a pid", func(t *testing.T, tmp string) string {
			newRun(t, tmp, 0)
			return ""
		}, errNoDemo, ""},
		{"two running", func(t *testing.T, tmp string) string {
			newRun(t, tmp, live)
			newRun(t, tmp, live)
			return ""
		}, errUsage, "2 demos are running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			want := tc.setup(t, tmp)
			st, path, err := findState(tmp, alive)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("findState = %q, %v; want %v with %q", path, err, tc.wantErr, tc.errText)
				}
			case err != nil:
				t.Fatalf("findState: %v", err)
			case path != want || st.PID != live || st.Key != "mk_test":
				t.Fatalf("findState = %q %+v, want %q", path, st, want)
			}
		})
	}
}

// TestFindState_NamesEveryRunningDemo: with two demos running, the error
// gives each one's --state path, so the user can pick.
func TestFindState_NamesEveryRunningDemo(t *testing.T) {
	tmp := t.TempDir()
	a, b := newRun(t, tmp, 7), newRun(t, tmp, 8)
	_, _, err := findState(tmp, func(int) bool { return true })
	if err == nil {
		t.Fatal("findState picked one of two running demos")
	}
	for _, p := range []string{a, b} {
		if !strings.Contains(err.Error(), "--state "+p) {
			t.Errorf("the error does not name %s:\n%v", p, err)
		}
	}
}

// TestJoinState: --state names a run; a run whose demo has gone is
// refused rather than joined. Without --state the demo is found under
// TMPDIR, where runDemo puts it.
func TestJoinState(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	if _, err := joinState(""); err == nil || !strings.Contains(err.Error(), "no running demo found") {
		t.Fatalf("joinState with no demo = %v", err)
	}
	mine := newRun(t, tmp, os.Getpid()) // this process stands for a running demo
	st, err := joinState("")
	if err != nil || st.PID != os.Getpid() {
		t.Fatalf("joinState(\"\") = %+v, %v", st, err)
	}
	if st, err := joinState(mine); err != nil || st.PID != os.Getpid() {
		t.Fatalf("joinState(%s) = %+v, %v", mine, st, err)
	}
	gone := newRun(t, t.TempDir(), deadPID(t))
	if _, err := joinState(gone); err == nil || !strings.Contains(err.Error(), "no longer running") {
		t.Fatalf("joinState(a run whose demo has gone) = %v", err)
	}
}

// TestFindState_OneRunStops: two runs of one user keep separate state, and
// one run's end leaves the other's in place (it used to be one file per
// user, which the first demo to stop removed from under the second).
func TestFindState_OneRunStops(t *testing.T) {
	tmp := t.TempDir()
	a, b := newRun(t, tmp, 1), newRun(t, tmp, 2)
	if a == b {
		t.Fatalf("two runs share %s", a)
	}
	if err := os.RemoveAll(filepath.Dir(a)); err != nil { // run a stops
		t.Fatal(err)
	}
	st, path, err := findState(tmp, func(pid int) bool { return pid == 2 })
	if err != nil || path != b || st.PID != 2 {
		t.Fatalf("after one run stopped, findState = %q %+v, %v; want the other run", path, st, err)
	}
}

// deadPID returns the pid of a process that has exited.
func deadPID(tb testing.TB) int {
	tb.Helper()
	p, err := os.StartProcess(binary, []string{binary, "help"}, &os.ProcAttr{})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := p.Wait(); err != nil {
		tb.Fatal(err)
	}
	return p.Pid
}
