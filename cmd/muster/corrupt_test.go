package main

import (
	"bufio"
	"bytes"
	"context"
	byteorder "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestServerProcess_HaltsOnCorruptEntry: a byte flipped on disk inside a
// registration's Raft log entry (127.0.0.1 → 126.0.0.1, still a valid
// address) used to be replayed and served as truth. Now `muster server`
// never serves it: lookups answer 503 until the node halts at the entry,
// and the process exits 1 with an error naming the entry's index, the
// file and what to do; restarted, it does so again.
func TestServerProcess_HaltsOnCorruptEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	ctx := context.Background()
	dir := t.TempDir()
	p := startProc(t, dir)
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	k, err := admin.CreateKey(ctx, []string{"web"}, "")
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := admin.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"}); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()

	// Flip one byte of the address inside the entry's data, as a failing
	// disk would: bucket "logs", key the big-endian index, value the
	// msgpack of the raft.Log that holds the command.
	find := []byte(`"address":"127.0.0.1"`)
	var index uint64
	db, err := bbolt.Open(filepath.Join(dir, "raft.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		logs := tx.Bucket([]byte("logs"))
		if logs == nil {
			return errors.New("no logs bucket")
		}
		c := logs.Cursor()
		for key, v := c.First(); key != nil; key, v = c.Next() {
			if i := bytes.Index(v, find); i >= 0 {
				index = byteorder.BigEndian.Uint64(key)
				changed := bytes.Clone(v)
				changed[i+len(`"address":"12`)] = '6'
				return logs.Put(bytes.Clone(key), changed)
			}
		}
		return errors.New("no log entry holds the registration")
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	for range 2 {
		out, served, code := runUntilExit(t, dir, "web")
		if code != 1 {
			t.Fatalf("exit code %d, want 1; output:\n%s", code, out)
		}
		if served > 0 {
			t.Errorf("%d lookups answered 200 before the halt; want none", served)
		}
		for _, want := range []string{
			"muster: stopped: log entry " + fmt.Sprint(index) + ": catalog: log entry is corrupt: checksum mismatch",
			filepath.Join(dir, "raft.db"),
			"Restore the data dir from a backup",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	}
}

// runUntilExit runs `muster server` over dir, looks service up as fast
// as it can while the process runs, and returns everything it wrote, how
// many lookups answered 200 (or named 126.0.0.1), and its exit code.
func runUntilExit(t *testing.T, dir, service string) (out string, served, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "server", "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--data-dir", dir, "--log-format", "json")
	var buf bytes.Buffer
	var mu sync.Mutex
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited, scanned := make(chan struct{}), make(chan struct{})
	var pollers sync.WaitGroup
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Bytes()
			mu.Lock()
			buf.Write(line)
			buf.WriteByte('\n')
			mu.Unlock()
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == "muster listening" {
				url, _ := rec["url"].(string)
				pollers.Add(1)
				go func() {
					defer pollers.Done()
					for {
						select {
						case <-exited:
							return
						default:
						}
						resp, err := http.Get(url + "/v1/services/" + service)
						if err != nil {
							time.Sleep(time.Millisecond)
							continue
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 || bytes.Contains(body, []byte("126.0.0.1")) {
							mu.Lock()
							served++
							mu.Unlock()
						}
					}
				}()
			}
		}
	}()
	err := cmd.Wait()
	close(exited)
	pw.Close()
	<-scanned
	pollers.Wait()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the server did not exit; %d lookups answered 200 or named 126.0.0.1", served)
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return buf.String(), served, code
}
