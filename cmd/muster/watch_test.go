package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// watchRegistry is a registry on a fixed address and data dir, so that it
// can be stopped and started again where clients expect it.
type watchRegistry struct {
	srv   *server.Server
	dir   string
	addr  string
	admin *client.Client
}

const watchAdminToken = "ma_watch-test-admin-token"

func startWatchRegistry(t *testing.T) *watchRegistry {
	r := &watchRegistry{dir: t.TempDir(), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	r.start(t)
	r.admin, _ = client.New(client.Config{Addr: r.srv.URL(), Token: watchAdminToken})
	return r
}

func (r *watchRegistry) start(t *testing.T) {
	r.srv = testserver.Start(t, func(c *server.Config) {
		c.HTTPAddr, c.DataDir, c.AdminToken = r.addr, r.dir, watchAdminToken
	})
}

func (r *watchRegistry) url() string { return "http://" + r.addr }

// register registers an instance of service that answers the callback.
func (r *watchRegistry) register(t *testing.T, secret, service string) api.RegisterResponse {
	t.Helper()
	in := testutil.NewInstance(t, secret, verify.Proof)
	res, err := r.admin.Register(context.Background(), service, secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// startWatch runs `muster args...` in the background; wait returns its
// exit code and error.
func startWatch(t *testing.T, addr string, args ...string) (stdout, stderr *testutil.Buffer, cancel context.CancelFunc, wait func() (int, error)) {
	stdout, stderr = &testutil.Buffer{}, &testutil.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	getenv := func(k string) string { return map[string]string{"MUSTER_ADDR": addr}[k] }
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, getenv, stdout, stderr) }()
	t.Cleanup(cancel)
	return stdout, stderr, cancel, func() (int, error) {
		t.Helper()
		select {
		case err := <-done:
			return report(err, getenv, stderr), err
		case <-time.After(20 * time.Second):
			t.Fatalf("muster %s did not return; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout, stderr)
			return 0, nil
		}
	}
}

func waitOutput(t *testing.T, b *testutil.Buffer, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in:\n%s", what, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCLI_WatchAcrossRestart: `muster watch -o json` prints the snapshot
// and then every change to its service, once and in order, across a
// restart of the registry (it says so on stderr and resumes), and exits 0
// after --count changes.
func TestCLI_WatchAcrossRestart(t *testing.T) {
	reg := startWatchRegistry(t)
	key, err := reg.admin.CreateKey(context.Background(), []string{"web", "other"}, "")
	if err != nil {
		t.Fatal(err)
	}
	a := reg.register(t, key.Secret, "web")
	stdout, stderr, _, wait := startWatch(t, reg.url(), "watch", "web", "-o", "json", "--count", "4")
	waitOutput(t, stdout, a.ID)

	b := reg.register(t, key.Secret, "web")
	reg.register(t, key.Secret, "other") // not watched
	if _, err := reg.admin.Drain(context.Background(), a.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, stdout, `"status"`)
	reg.srv.Close()
	waitOutput(t, stderr, "reconnecting in")
	reg.start(t)
	c := reg.register(t, key.Secret, "web") // perhaps before the stream is back
	if err := reg.admin.Deregister(context.Background(), b.ID, ""); err != nil {
		t.Fatal(err)
	}
	if code, err := wait(); err != nil || code != 0 {
		t.Fatalf("muster watch: %v, exit %d; stderr:\n%s", err, code, stderr)
	}

	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want a snapshot and 4 changes:\n%s", len(lines), stdout)
	}
	var snap api.WatchSnapshot
	if err := json.Unmarshal([]byte(lines[0]), &snap); err != nil || snap.Type != "snapshot" || len(snap.Instances) != 1 || snap.Instances[0].ID != a.ID {
		t.Fatalf("first line %s: %v", lines[0], err)
	}
	want := []string{"registered " + b.ID, "status " + a.ID + " draining", "registered " + c.ID, "deregistered " + b.ID}
	last := snap.Index
	for i, l := range lines[1:] {
		var ev api.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %s: %v", l, err)
		}
		got := ev.Type + " " + ev.Instance.ID
		if ev.Type == api.EventStatus {
			got += " " + ev.Instance.Status
		}
		if got != want[i] || ev.Index <= last || ev.Service != "web" {
			t.Fatalf("change %d: %s at %d (after %d); want %s", i, got, ev.Index, last, want[i])
		}
		last = ev.Index
	}
	for _, s := range []string{"watching web: 1 instance at index", "reconnecting in", "reconnected to the registry; resuming after index"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("stderr does not say %q:\n%s", s, stderr)
		}
	}
	if strings.Contains(stderr.String(), "resync") {
		t.Errorf("the registry resent its state instead of resuming:\n%s", stderr)
	}
	t.Logf("stderr:\n%s", stderr)
}

// TestCLI_WatchTable: the table shows the snapshot (every status) and one
// line per change; --for ends a quiet watch, interruption ends any, both
// with exit 0; --after resumes without a snapshot; a bad name exits 1.
func TestCLI_WatchTable(t *testing.T) {
	reg := startWatchRegistry(t)
	key, err := reg.admin.CreateKey(context.Background(), []string{"web"}, "")
	if err != nil {
		t.Fatal(err)
	}
	a := reg.register(t, key.Secret, "web")
	if _, err := reg.admin.Drain(context.Background(), a.ID, ""); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, _, wait := startWatch(t, reg.url(), "watch", "--count", "1")
	waitOutput(t, stdout, a.ID)
	b := reg.register(t, key.Secret, "web")
	if code, err := wait(); err != nil || code != 0 {
		t.Fatalf("muster watch --count 1: %v, exit %d; stderr:\n%s", err, code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "INDEX    EVENT") ||
		!matchFields(lines[1], "snapshot", "web", a.ID, "draining") || !matchFields(lines[2], "registered", "web", b.ID, "passing") {
		t.Fatalf("table:\n%s", stdout)
	}
	index := strings.Fields(lines[2])[0]

	began := time.Now()
	stdout, _, _, wait = startWatch(t, reg.url(), "watch", "web", "--for", "300ms")
	if code, err := wait(); err != nil || code != 0 || time.Since(began) < 300*time.Millisecond || strings.Count(stdout.String(), "\n") != 3 {
		t.Fatalf("--for 300ms: %v, exit %d, after %s:\n%s", err, code, time.Since(began), stdout)
	}

	stdout, _, cancel, wait := startWatch(t, reg.url(), "watch", "web", "--after", index)
	time.Sleep(200 * time.Millisecond)
	if err := reg.admin.Deregister(context.Background(), b.ID, ""); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, stdout, "deregistered")
	cancel() // as Ctrl-C does
	if code, err := wait(); err != nil || code != 0 {
		t.Fatalf("interrupted: %v, exit %d", err, code)
	}
	lines = strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) != 2 || !matchFields(lines[1], "deregistered", "web", b.ID, "passing", "deregistered") {
		t.Fatalf("--after %s:\n%s", index, stdout)
	}

	_, stderr, _, wait = startWatch(t, reg.url(), "watch", "Bad.Name")
	if code, err := wait(); err == nil || code != 1 || !strings.Contains(stderr.String(), "invalid") {
		t.Fatalf("a bad name: %v, exit %d, stderr %s", err, code, stderr)
	}
}

// matchFields reports whether line's fields, but its index and address
// (which must be on 127.0.0.1), are want.
func matchFields(line string, want ...string) bool {
	f := strings.Fields(line) // index, event, service, instance, address, status, detail
	if len(f) != len(want)+2 || !strings.HasPrefix(f[4], "127.0.0.1:") {
		return false
	}
	return strings.Join(append(f[1:4:4], f[5:]...), " ") == strings.Join(want, " ")
}

// TestCLI_IPv6Endpoints: an instance at an IPv6 address shows as
// [::1]:port, never ::1:port, wherever the CLI prints an endpoint: watch's
// ADDRESS column, evict's message, lookup's evicted lines, and the
// registry's refusal that a barred sidecar prints.
func TestCLI_IPv6Endpoints(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	ln.Close()
	dir := t.TempDir()
	s := testserver.Start(t, func(c *server.Config) { c.DataDir = dir })
	admin, _ := client.New(client.Config{Addr: s.URL(), Token: adminToken(t, dir)})
	k, err := admin.CreateKey(context.Background(), []string{"web"}, "")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MUSTER_ADDR": s.URL(), "MUSTER_KEY": k.Secret, "MUSTER_TOKEN": adminToken(t, dir)}

	// The sidecar answers the callback on [::1], for a process on 8080.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sideOut, sideErr testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"register", "--service", "web", "--address", "::1", "--port", "8080"},
			func(k string) string { return env[k] }, &sideOut, &sideErr)
	}()
	waitOutput(t, &sideOut, "registered web as ")
	id := strings.Fields(strings.TrimPrefix(sideOut.String(), "registered web as "))[0]
	id = strings.TrimSuffix(id, ";")

	out, errOut, code, err := runCLI(t, env, "watch", "web", "--for", "300ms")
	if code != 0 || !strings.Contains(out, " [::1]:8080 ") || strings.Contains(out, " ::1:8080") {
		t.Errorf("watch: exit %d, %v; stdout:\n%s\nstderr:\n%s", code, err, out, errOut)
	}
	out, errOut, code, err = runCLI(t, env, "evict", id, "--for", "1m")
	if code != 0 || !strings.Contains(out, "web at [::1]:8080 may register again after ") {
		t.Errorf("evict: exit %d, %v: %q %s", code, err, out, errOut)
	}
	out, _, _, _ = runCLI(t, env, "lookup", "web")
	if !strings.Contains(out, "evicted: [::1]:8080 until ") {
		t.Errorf("lookup during the bar:\n%s", out)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "web at [::1]:8080 was evicted by an operator") {
			t.Errorf("the barred sidecar: %v\n%s", err, sideErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the sidecar of an evicted endpoint did not exit:\n%s", sideErr.String())
	}
}
