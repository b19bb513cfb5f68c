package main

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/musterhq/muster/internal/catalog"
)

// TestServerProcess_HaltsOnUnknownCommand: a Raft log that holds a command
// this version does not know (as a newer muster would write) stops the
// server with a clear log line and a non-zero exit, instead of skipping
// the command and diverging from replicas that apply it. The entries
// before it are kept, and it halts again at the same place.
func TestServerProcess_HaltsOnUnknownCommand(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	env := map[string]string{"MUSTER_ADDR": p.url, "MUSTER_TOKEN": adminToken(t, dir)}
	if _, err := cli(t, env, "keys", "create", "--service", "web"); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()

	// Append, after the last entry, a command of an operation this
	// version does not know, in the current term.
	store, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	last, err := store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := store.GetLog(last, &l); err != nil {
		t.Fatal(err)
	}
	b, err := catalog.EncodeCommand(catalog.Command{Op: "from_the_future", ID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.StoreLog(&raft.Log{Index: last + 1, Term: l.Term, Type: raft.LogCommand, Data: b}); err != nil {
		t.Fatal(err)
	}
	store.Close()

	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, binary, "server", "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
			"--data-dir", dir).CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || timedOut {
			t.Fatalf("server did not stop with exit code 1: %v\n%s", err, out)
		}
		for _, want := range []string{"cannot apply", "unknown op \\\"from_the_future\\\"", "stopped:"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	}
}
