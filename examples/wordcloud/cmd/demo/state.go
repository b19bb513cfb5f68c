package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/musterhq/muster/internal/durable"
)

// state is what a running demo writes so that `demo scraper` can join it
// from another terminal.
type state struct {
	Registry string `json:"registry"`
	Key      string `json:"key"`
	JobBoard string `json:"job_board"`
}

// statePath is per user, so that two users' demos never mix.
func statePath() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("muster-demo-%d.json", os.Getuid()))
}

// writeState replaces the state file atomically, readable by this user
// only (it holds an enrolment key's secret).
func writeState(st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(statePath(), b, 0o600); err != nil {
		return fmt.Errorf("write state for `demo scraper`: %w", err)
	}
	return nil
}

// readState reads the running demo's state, trusting only a regular file
// of this user's that nobody else can read or write (it holds a key).
func readState() (state, error) {
	var st state
	p := statePath()
	fi, err := os.Lstat(p)
	if err != nil {
		return st, err
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 || !ok || int(sys.Uid) != os.Getuid() {
		return st, fmt.Errorf("%s is not a private file of this user's; not trusting it", p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("demo state %s: %w", p, err)
	}
	return st, nil
}
