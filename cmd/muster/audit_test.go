package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestCLI_Audit: muster audit prints the trail as a table or one JSON
// record a line, filtered; --follow prints each new record once, across
// a restart of the registry, until interrupted (exit 0); bad flags are
// usage errors; without the admin token it is refused.
func TestCLI_Audit(t *testing.T) {
	reg := startWatchRegistry(t)
	ctx := context.Background()
	env := map[string]string{"MUSTER_ADDR": reg.url(), "MUSTER_TOKEN": watchAdminToken}
	key, err := reg.admin.CreateKey(ctx, []string{"web"}, "")
	if err != nil {
		t.Fatal(err)
	}
	a := reg.register(t, key.Secret, "web")
	anon, _ := client.New(client.Config{Addr: reg.url()})
	if _, err := anon.Register(ctx, "web", "mk_not-a-key", api.RegisterRequest{Address: "127.0.0.1", Port: 1}); err == nil {
		t.Fatal("registered with no key")
	}
	waitTrail(t, reg.admin, 4)

	// The leader's certificate authority (ca_add) came first.
	out, err := cli(t, env, "audit")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if err != nil || len(lines) != 5 || !strings.HasPrefix(lines[0], "TIME") || !inOrder(lines[1], "ca_add", "ok") ||
		!inOrder(lines[2], "key_create", "ok", key.ID) || !inOrder(lines[3], "register", "ok", "web", a.ID, key.ID, "127.0.0.1:") ||
		!inOrder(lines[4], "register", "refused", "web", "names no enrolment key") {
		t.Fatalf("muster audit = %v:\n%s", err, out)
	}
	out, err = cli(t, env, "audit", "--outcome", "refused", "--since", "1h", "-o", "json")
	var rec api.AuditRecord
	if err != nil || strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &rec) != nil || rec.Action != "register" || rec.Outcome != "refused" {
		t.Fatalf("muster audit --outcome refused -o json = %v:\n%s", err, out)
	}
	if out, err = cli(t, env, "audit", "--action", "key_create", "--limit", "1", "-o", "json"); err != nil || !strings.Contains(out, key.ID) || strings.Count(out, "\n") != 1 {
		t.Fatalf("muster audit --action key_create = %v:\n%s", err, out)
	}
	if out, err = cli(t, env, "audit", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); err != nil || out != "" {
		t.Fatalf("muster audit --since an hour ahead = %v:\n%s", err, out)
	}
	for _, bad := range [][]string{{"--since", "yesterday"}, {"--limit", "0"}, {"--limit", "1001"}, {"--outcome", "maybe"}, {"--action", "drop"}, {"extra"}} {
		if _, err := cli(t, env, append([]string{"audit"}, bad...)...); !errors.Is(err, errUsage) {
			t.Errorf("muster audit %v: %v, want a usage error", bad, err)
		}
	}
	if _, err := cli(t, map[string]string{"MUSTER_ADDR": reg.url()}, "audit"); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("muster audit without a token: %v", err)
	}

	// --follow: the records so far, then each new one as it comes, once.
	stdout, stderr := &testutil.Buffer{}, &testutil.Buffer{}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	getenv := func(k string) string { return env[k] }
	go func() {
		done <- run(fctx, []string{"audit", "--follow", "--action", "register", "-o", "json"}, getenv, stdout, stderr)
	}()
	waitOutput(t, stdout, a.ID)
	b := reg.register(t, key.Secret, "web")
	waitOutput(t, stdout, b.ID)
	reg.srv.Close() // the registry restarts: the follower waits, and goes on
	waitOutput(t, stderr, "retrying")
	reg.start(t)
	c := reg.register(t, key.Secret, "web")
	waitOutput(t, stdout, c.ID)
	cancel()
	select {
	case err := <-done:
		if code := report(err, getenv, stderr); code != 0 {
			t.Fatalf("muster audit --follow interrupted: exit %d (%v)", code, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("muster audit --follow did not end when interrupted")
	}
	var ids []string
	for _, line := range strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n") {
		var r api.AuditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Action != "register" {
			t.Fatalf("line %q: %v", line, err)
		}
		if r.Outcome == "ok" {
			ids = append(ids, r.InstanceID)
		}
	}
	if strings.Join(ids, " ") != strings.Join([]string{a.ID, b.ID, c.ID}, " ") {
		t.Fatalf("muster audit --follow printed registrations %v, want %s %s %s once each; stderr:\n%s", ids, a.ID, b.ID, c.ID, stderr)
	}
}

// inOrder reports whether line holds each of want, in order.
func inOrder(line string, want ...string) bool {
	for _, w := range want {
		i := strings.Index(line, w)
		if i < 0 {
			return false
		}
		line = line[i+len(w):]
	}
	return true
}

// waitTrail waits until the trail holds at least n records.
func waitTrail(t *testing.T, c *client.Client, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		res, err := c.Audit(context.Background(), client.AuditQuery{Limit: 1000})
		if err == nil && len(res.Records) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trail did not reach %d records: %+v, %v", n, res, err)
		}
	}
}

// TestServerProcess_AuditSurvivesKill9: a muster server killed with
// SIGKILL in the middle of registrations, after Raft has taken a
// snapshot of them, restarts with an audit trail that holds every
// acknowledged registration exactly once (those whose records were still
// queued at the kill are derived again from the log Raft replays; those
// on disk are not written twice), every Raft index once, and the
// refusals that were answered before the load began.
func TestServerProcess_AuditSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	ctx := context.Background()
	dir := t.TempDir()
	flags := []string{"--register-rate", "1000000", "--max-instances-per-key", "1000000", "--max-instances-per-address", "1000000"}
	p := startProc(t, dir, flags...)
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	k, err := admin.NewKey(ctx, api.CreateKeyRequest{Services: []string{"svc*"}, MaxInstances: 1000000})
	if err != nil {
		t.Fatal(err)
	}
	anon, _ := client.New(client.Config{Addr: p.url})
	const refusals = 50
	for i := range refusals {
		if _, err := anon.Register(ctx, "svc", fmt.Sprintf("mk_wrong-%d", i), api.RegisterRequest{Address: "127.0.0.1", Port: 1}); !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("a wrong key: %v", err)
		}
	}
	time.Sleep(300 * time.Millisecond) // written (not necessarily fsynced: a kill loses no written page)

	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	var (
		mu    sync.Mutex
		acked = map[string]uint64{} // instance ID → index
		stop  atomic.Bool
		wg    sync.WaitGroup
		n     atomic.Int64
	)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := client.New(client.Config{Addr: p.url, HTTPClient: &http.Client{Timeout: 5 * time.Second}})
			for i := 0; !stop.Load(); i++ {
				res, err := c.Register(ctx, fmt.Sprintf("svc%d-%d", w, i), k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
				if err != nil {
					return // the kill
				}
				n.Add(1)
				mu.Lock()
				acked[res.ID] = res.Index
				mu.Unlock()
			}
		}()
	}
	// Until Raft has taken a snapshot of the registrations, then a little
	// more, so that the kill finds records written after it (and perhaps
	// still queued).
	snapshots := filepath.Join(dir, "snapshots")
	deadline := time.Now().Add(60 * time.Second)
	for !hasSnapshot(t, snapshots) {
		if time.Now().After(deadline) {
			t.Fatalf("no Raft snapshot after %d registrations", n.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Duration(200+rand.IntN(300)) * time.Millisecond)
	p.kill9(t)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d registrations acknowledged before the kill", len(acked))

	p = startProc(t, dir, flags...)
	admin, _ = client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	// The log Raft replays is recorded as it is applied: a moment after
	// the server is ready, the trail holds it.
	var (
		seen    map[string]int
		byIndex map[uint64]string
		refused int
		missing []string
	)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		seen, byIndex, refused = map[string]int{}, map[uint64]string{}, 0
		var last uint64
		next := "0.0.0.0"
		for {
			res, err := admin.Audit(ctx, client.AuditQuery{After: next, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Records {
				switch {
				case r.Index > 0 && r.Action != "snapshot_installed":
					if prev, dup := byIndex[r.Index]; dup {
						t.Fatalf("index %d recorded twice: %s and %s %s", r.Index, prev, r.Action, r.InstanceID)
					}
					byIndex[r.Index] = r.Action + " " + r.InstanceID
					if r.Index <= last {
						t.Errorf("index %d recorded after %d", r.Index, last)
					}
					last = r.Index
					if r.Action == "register" && r.Outcome == "ok" {
						seen[r.InstanceID]++
					}
				case r.Action == "register" && r.Outcome == "refused" && r.Service == "svc":
					refused++
				}
			}
			next = res.Next
			if !res.More {
				break
			}
		}
		missing = missing[:0]
		for id, index := range acked {
			if byIndex[index] != "register "+id {
				missing = append(missing, fmt.Sprintf("%s at index %d (recorded: %q)", id, index, byIndex[index]))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged registrations have no record after the kill, such as %s", len(missing), len(acked), missing[0])
	}
	for id, times := range seen {
		if times != 1 {
			t.Errorf("%s registered once, recorded %d times", id, times)
		}
	}
	if refused != refusals {
		t.Errorf("%d refusals recorded, want the %d answered before the load", refused, refusals)
	}
}

// hasSnapshot reports whether Raft's snapshot store in dir holds a
// complete snapshot.
func hasSnapshot(t *testing.T, dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			return true
		}
	}
	return false
}
