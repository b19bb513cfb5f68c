package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/musterhq/muster/internal/durable"
)

// state is what a running demo writes so that `demo scraper` can join it
// from another terminal.
type state struct {
	Registry string `json:"registry"`
	Key      string `json:"key"`
	JobBoard string `json:"job_board"`
	// PID is the demo's process, which embeds the registry: once it has
	// gone (killed before it could remove its run directory), so has the
	// registry, and the state is stale.
	PID int `json:"pid"`
}

// Each run of the demo has a directory of its own, made by
// os.MkdirTemp(os.TempDir(), runPattern): the registry's data dir and the
// state file live in it, and the run removes it when it stops. So two
// demos, of one user or of several, never share or remove each other's
// state.
const (
	runPattern = "muster-demo-*"
	stateName  = "demo-state.json"
)

// statePath returns the state file of the run whose directory is runDir.
func statePath(runDir string) string {
	return filepath.Join(runDir, stateName)
}

// writeState replaces the run's state file atomically, readable by this
// user only (it holds an enrolment key's secret).
func writeState(runDir string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(statePath(runDir), b, 0o600); err != nil {
		return fmt.Errorf("write state for `demo scraper`: %w", err)
	}
	return nil
}

// readState reads a state file, trusting only a regular file of this
// user's that nobody else can read or write (it holds a key). It checks
// the file it opened, not the path, so a file swapped in between cannot
// pass.
func readState(path string) (state, error) {
	var st state
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return st, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, err
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 || !ok || int(sys.Uid) != os.Getuid() {
		return st, fmt.Errorf("%s is not a private file of this user's; not trusting it", path)
	}
	dec := json.NewDecoder(f)
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("demo state %s: %w", path, err)
	}
	return st, nil
}

// errNoDemo is findState's answer when no demo of this user's is running.
var errNoDemo = errors.New("no demo state found")

// findState returns the state of the one demo of this user's running
// under tmp (os.TempDir()), and its path. alive reports whether a demo's
// process is still running; runs whose process has gone are skipped, and
// so are directories and files this user does not own alone. With several
// running demos it names them all and asks for one.
func findState(tmp string, alive func(pid int) bool) (state, string, error) {
	paths, err := filepath.Glob(filepath.Join(tmp, runPattern, stateName))
	if err != nil {
		return state{}, "", err
	}
	sort.Strings(paths)
	type found struct {
		st   state
		path string
	}
	var live []found
	for _, p := range paths {
		if !privateDir(filepath.Dir(p)) {
			continue
		}
		st, err := readState(p)
		if err != nil || st.PID <= 0 || !alive(st.PID) {
			continue
		}
		live = append(live, found{st, p})
	}
	switch len(live) {
	case 0:
		return state{}, "", fmt.Errorf("%w under %s", errNoDemo, tmp)
	case 1:
		return live[0].st, live[0].path, nil
	}
	var names []string
	for _, f := range live {
		names = append(names, fmt.Sprintf("  --state %s   (pid %d, registry %s)", f.path, f.st.PID, f.st.Registry))
	}
	return state{}, "", fmt.Errorf("%d demos are running; name the one to join:\n%s: %w", len(live), strings.Join(names, "\n"), errUsage)
}

// privateDir reports whether dir is a directory (not a link to one) of
// this user's that no one else can write to.
func privateDir(dir string) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return false
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(sys.Uid) == os.Getuid()
}

// processAlive reports whether the process pid is running and is this
// user's to signal: a demo's process is.
func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// joinState returns the state of the demo `demo scraper` joins: the one
// in the file named by --state (path), or else the one demo of this
// user's running under os.TempDir().
func joinState(path string) (state, error) {
	if path != "" {
		st, err := readState(path)
		if err != nil {
			return st, fmt.Errorf("--state: %w", err)
		}
		if st.PID <= 0 || !processAlive(st.PID) {
			return st, fmt.Errorf("--state %s: its demo (pid %d) is no longer running", path, st.PID)
		}
		return st, nil
	}
	st, _, err := findState(os.TempDir(), processAlive)
	if errors.Is(err, errNoDemo) {
		return st, fmt.Errorf("no running demo found (start `go run ./examples/wordcloud/cmd/demo` first, or set MUSTER_ADDR and MUSTER_KEY): %w", err)
	}
	return st, err
}
