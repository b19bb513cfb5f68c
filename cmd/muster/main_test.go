package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// binary is the muster executable built once for the tests that run it as
// a real process.
var binary string

func TestMain(m *testing.M) {
	path, cleanup, err := testutil.BuildBinary(".", "muster")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = path
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// proc is a muster server running as a child process.
type proc struct {
	cmd *exec.Cmd
	url string
	log testutil.Buffer // everything it logged (JSON lines)
}

// startProc runs `muster server` on free ports over dataDir and waits until
// it is ready.
func startProc(tb testing.TB, dataDir string, extra ...string) *proc {
	tb.Helper()
	return startProcArgs(tb, append([]string{"server", "--http-addr", "127.0.0.1:0",
		"--data-dir", dataDir, "--log-format", "json"}, extra...)...)
}

// startProcArgs runs muster with args, which must make it a server
// logging JSON, and waits until it is ready.
func startProcArgs(tb testing.TB, args ...string) *proc {
	tb.Helper()
	return startProcCmd(tb, exec.Command(binary, args...))
}

// startProcCmd runs cmd, which must run muster as a server logging JSON
// (perhaps through a wrapper such as taskset), and waits until it is
// ready.
func startProcCmd(tb testing.TB, cmd *exec.Cmd) *proc {
	tb.Helper()
	p := launchProcCmd(tb, cmd)
	p.waitReady(tb, 15*time.Second)
	return p
}

// launchProcCmd runs cmd, which must run muster as a server logging JSON,
// and returns once it has logged its address, ready or not (a member of
// a cluster is ready only once the cluster has formed).
func launchProcCmd(tb testing.TB, cmd *exec.Cmd) *proc {
	tb.Helper()
	// An io.Writer rather than StderrPipe: Wait then returns only after
	// everything the process wrote has been read.
	stderr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &proc{cmd: cmd}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		pw.Close()
	})
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Bytes()
			p.log.Write(append(line, '\n'))
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == "muster listening" {
				urlCh <- rec["url"].(string)
			}
		}
	}()
	select {
	case p.url = <-urlCh:
	case <-time.After(15 * time.Second):
		tb.Fatalf("server did not log its address; its log:\n%s", p.log.String())
	}
	return p
}

// waitReady waits until the server answers /readyz with 200.
func (p *proc) waitReady(tb testing.TB, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatal("server not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) kill9(tb testing.TB) {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	p.cmd.Wait()
}

func adminToken(tb testing.TB, dataDir string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestServerProcess_ProtectionAfterKill9: after a kill -9 and a restart,
// a fleet that never heartbeats again is, to mass-expiry protection, the
// whole catalog cut off at once: its expiry is held (lookups say
// protection), and it happens when the hold's bound passes.
func TestServerProcess_ProtectionAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	ctx := context.Background()
	dir := t.TempDir()
	args := []string{"--expiry-grace", "1s", "--expiry-protection-max-hold", "4s"}
	p := startProc(t, dir, args...)
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	k, err := admin.CreateKey(ctx, []string{"svc*"}, "")
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	for i := range 20 {
		if _, err := admin.Register(ctx, "svc"+strconv.Itoa(i), k.Secret, api.RegisterRequest{
			Address: "127.0.0.1", Port: inst.Port(), TTL: "2s"}); err != nil {
			t.Fatal(err)
		}
	}
	p.kill9(t)
	restarted := time.Now()
	p = startProc(t, dir, args...)
	anon, _ := client.New(client.Config{Addr: p.url})
	var held bool
	var expiredAt time.Time
	for deadline := restarted.Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		res, err := anon.Lookup(ctx, "svc0")
		if err != nil {
			t.Fatal(err)
		}
		held = held || res.Protection
		if len(res.Instances) == 0 {
			expiredAt = time.Now()
			break
		}
	}
	if !held || expiredAt.IsZero() {
		t.Fatalf("after the restart: held %v, expired at %v", held, expiredAt)
	}
	// TTL + grace without protection; the hold adds up to its bound.
	if d := expiredAt.Sub(restarted); d < 3*time.Second+2*time.Second {
		t.Fatalf("svc0 expired %s after the restart: the hold did not hold it", d)
	}
}

// TestServerProcess_SurvivesKill9: acknowledged writes survive SIGKILL, and
// after a restart no instance expires before its TTL plus the grace.
func TestServerProcess_SurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	ctx := context.Background()
	dir := t.TempDir()
	const grace = 3 * time.Second
	const ttl = 2 * time.Second
	p := startProc(t, dir, "--expiry-grace", grace.String())
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	k, err := admin.CreateKey(ctx, []string{"svc*"}, "")
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	const n = 20
	ids := map[string]string{} // id → token
	for i := 0; i < n; i++ {
		reg, err := admin.Register(ctx, "svc"+strconv.Itoa(i), k.Secret, api.RegisterRequest{
			Address: "127.0.0.1", Port: inst.Port(), TTL: ttl.String()})
		if err != nil {
			t.Fatal(err)
		}
		call, _ := inst.LastCall()
		ids[reg.ID] = call.Token
	}
	p.kill9(t)

	restarted := time.Now()
	// None of the 20 instances heartbeats after the restart: to
	// mass-expiry protection that is the whole fleet cut off at once, and
	// it would hold their expiry (TestServerProcess_ProtectionAfterKill9).
	// This test is about expiry itself.
	p = startProc(t, dir, "--expiry-grace", grace.String(), "--expiry-protection", "off")
	anon, _ := client.New(client.Config{Addr: p.url})
	// Every acknowledged registration is back, passing, though the new
	// leader has heard no heartbeat yet.
	for i := 0; i < n; i++ {
		res, err := anon.Lookup(ctx, "svc"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Instances) != 1 || ids[res.Instances[0].ID] == "" {
			t.Fatalf("svc%d after restart: %+v", i, res)
		}
		if res.Instances[0].LastSeenMS != -1 {
			t.Errorf("svc%d last_seen_ms = %d, want -1 (not heard since restart)", i, res.Instances[0].LastSeenMS)
		}
	}
	// The key survived too: it still authorises registration.
	if _, err := anon.Register(ctx, "svc_new", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"}); err != nil {
		t.Fatalf("register with the key after restart: %v", err)
	}

	// svc0 is never heartbeaten: it must stay passing until at least the
	// restart + TTL + grace, then expire.
	var expiredAt time.Time
	for deadline := restarted.Add(ttl + grace + 8*time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		res, err := anon.Lookup(ctx, "svc0")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Instances) == 0 {
			expiredAt = time.Now()
			break
		}
	}
	if expiredAt.IsZero() {
		t.Fatal("svc0 never expired after the restart")
	}
	if d := expiredAt.Sub(restarted); d < ttl+grace {
		t.Fatalf("svc0 expired %s after the restart, before TTL+grace (%s)", d, ttl+grace)
	}
	// Its session token (stored as a hash) still works: a heartbeat revives it.
	for id, tok := range ids {
		inst0, err := anon.Instance(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if inst0.Service != "svc0" {
			continue
		}
		hb, err := anon.Heartbeat(ctx, id, tok)
		if err != nil || hb.Status != api.StatusPassing {
			t.Fatalf("heartbeat after restart = %+v, %v", hb, err)
		}
	}
}

// TestServerProcess_SecondServerSameDir: a second server on the same data
// dir refuses to start instead of corrupting it.
func TestServerProcess_SecondServerSameDir(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	dir := t.TempDir()
	startProc(t, dir)
	cmd := exec.Command(binary, "server", "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--data-dir", dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !bytes.Contains(out, []byte("another muster")) {
		t.Fatalf("second server: err %v, output %s", err, out)
	}
}

// cli runs the CLI in-process with the given environment.
func cli(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	if err != nil {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), err
}

func TestCLI_KeysLookupDeregister(t *testing.T) {
	dir := t.TempDir()
	s := testserver.Start(t, func(c *server.Config) { c.DataDir = dir })
	env := map[string]string{"MUSTER_ADDR": s.URL(), "MUSTER_TOKEN": adminToken(t, dir)}

	out, err := cli(t, env, "keys", "create", "--service", "fetch_*", "--service", "dice_scraper", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var k api.Key
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Secret == "" {
		t.Fatalf("keys create output %q: %v", out, err)
	}
	out, err = cli(t, env, "keys", "list")
	if err != nil || !strings.Contains(out, k.ID) || !strings.Contains(out, "fetch_*,dice_scraper") || strings.Contains(out, k.Secret) {
		t.Fatalf("keys list = %q, %v", out, err)
	}

	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	c, _ := client.New(client.Config{Addr: s.URL()})
	reg, err := c.Register(context.Background(), "fetch_url", k.Secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: inst.Port(), Tags: []string{"v2"}, Meta: map[string]string{"site": "dice.com"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	out, err = cli(t, env, "services")
	if err != nil || !strings.Contains(out, "fetch_url") {
		t.Fatalf("services = %q, %v", out, err)
	}
	out, err = cli(t, env, "lookup", "fetch_url", "--tag", "v2", "--meta", "site:dice.com")
	if err != nil || !strings.Contains(out, reg.ID) || !strings.Contains(out, "passing") {
		t.Fatalf("lookup table = %q, %v", out, err)
	}
	out, err = cli(t, env, "lookup", "fetch_url", "--tag", "v3", "-o", "json")
	var lr api.LookupResponse
	if err != nil || json.Unmarshal([]byte(out), &lr) != nil || len(lr.Instances) != 0 || lr.Index == 0 {
		t.Fatalf("lookup json = %q, %v", out, err)
	}
	if _, err := cli(t, env, "lookup"); !errors.Is(err, errUsage) {
		t.Fatalf("lookup without name: %v", err)
	}
	if _, err := cli(t, env, "deregister", reg.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, env, "deregister", reg.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("second deregister: %v", err)
	}
	if _, err := cli(t, env, "keys", "revoke", k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, map[string]string{"MUSTER_ADDR": s.URL()}, "keys", "list"); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("keys list without token: %v", err)
	}
	if _, err := cli(t, env, "frobnicate"); !errors.Is(err, errUsage) {
		t.Fatalf("unknown command: %v", err)
	}
}

func TestCLI_RegisterSidecar(t *testing.T) {
	dir := t.TempDir()
	s := testserver.Start(t, func(c *server.Config) { c.DataDir = dir })
	admin, _ := client.New(client.Config{Addr: s.URL(), Token: adminToken(t, dir)})
	k, err := admin.CreateKey(context.Background(), []string{"legacy"}, "")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MUSTER_ADDR": s.URL(), "MUSTER_KEY": k.Secret}

	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"register", "--service", "legacy", "--address", "127.0.0.1", "--port", "8080",
			"--tag", "old", "--meta", "team=core", "--ttl", "2s"}, func(k string) string { return env[k] }, &out, &errOut)
	}()
	var found client.Result
	deadline := time.Now().Add(10 * time.Second)
	for {
		found, err = admin.Lookup(context.Background(), "legacy")
		if err == nil && len(found.Instances) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar never registered; stderr: %s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	in := found.Instances[0]
	if in.Port != 8080 || in.Proof != api.ProofAddress || in.Meta["team"] != "core" || in.Tags[0] != "old" {
		t.Fatalf("sidecar instance = %+v", in)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("register returned %v; stderr %s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "registered legacy as "+in.ID) || !strings.Contains(out.String(), "deregistered legacy") {
		t.Fatalf("stdout = %q", out.String())
	}
	if _, err := admin.Instance(context.Background(), in.ID); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("after Ctrl-C the instance is still there: %v", err)
	}
	if _, err := cli(t, env, "register", "--service", "legacy"); !errors.Is(err, errUsage) {
		t.Fatalf("register without address: %v", err)
	}
}

// startRegistryAt runs an in-process registry on addr over dir.
func startRegistryAt(t *testing.T, dir, addr string) *server.Server {
	t.Helper()
	return testserver.Start(t, func(c *server.Config) {
		c.HTTPAddr, c.DataDir, c.AdminToken, c.Liveness.Grace = addr, dir, "ma_sidecar-test-token", 2*time.Second
	})
}

// TestCLI_RegisterSidecarSurvivesRegistry: the sidecar keeps trying while
// the registry is down at start, registers once it comes, and stays
// registered across a registry restart.
func TestCLI_RegisterSidecarSurvivesRegistry(t *testing.T) {
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	first := startRegistryAt(t, dir, addr)
	admin, _ := client.New(client.Config{Addr: first.URL(), Token: "ma_sidecar-test-token"})
	k, err := admin.CreateKey(context.Background(), []string{"legacy"}, "")
	if err != nil {
		t.Fatal(err)
	}
	first.Close()

	env := map[string]string{"MUSTER_ADDR": "http://" + addr, "MUSTER_KEY": k.Secret}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"register", "--service", "legacy", "--address", "127.0.0.1", "--port", "8080", "--ttl", "1s"},
			func(k string) string { return env[k] }, &out, &errOut)
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(700 * time.Millisecond)
	if strings.Contains(out.String(), "registered legacy") {
		t.Fatal("registered with no registry running")
	}

	find := func() (client.Instance, bool) {
		res, err := admin.Lookup(context.Background(), "legacy")
		if err != nil || len(res.Instances) != 1 {
			return client.Instance{}, false
		}
		return res.Instances[0], true
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; sidecar stderr:\n%s", what, errOut.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	second := startRegistryAt(t, dir, addr)
	waitFor("the sidecar to register once the registry is up", func() bool { _, ok := find(); return ok })
	before, _ := find()

	second.Close()
	time.Sleep(500 * time.Millisecond)
	startRegistryAt(t, dir, addr)
	// Heard again by the restarted registry: the same instance, or a new
	// registration if the old one had been forgotten.
	waitFor("the sidecar to heartbeat the restarted registry", func() bool {
		in, ok := find()
		return ok && in.LastSeenMS >= 0
	})
	after, _ := find()
	t.Logf("instance before the restart %s, after %s", before.ID, after.ID)
}

// TestServerProcess_PauseDoesNotExpireEveryone: a registry process that is
// stopped (SIGSTOP) for several TTLs could hear no heartbeat meanwhile; on
// resuming it restarts every clock instead of expiring the instances whose
// heartbeats it missed.
func TestServerProcess_PauseDoesNotExpireEveryone(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	dir := t.TempDir()
	p := startProc(t, dir, "--expiry-grace", "1s")
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	k, err := admin.CreateKey(context.Background(), []string{"svc"}, "")
	if err != nil {
		t.Fatal(err)
	}
	// An instance registered just before the pause, which then cannot
	// heartbeat a stopped registry (this one never heartbeats at all).
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := admin.Register(context.Background(), "svc", k.Secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: inst.Port(), TTL: "2s"}); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // longer than the TTL
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The clocks restart at the resume: nothing expires before resume +
	// grace (1s) + TTL (2s). Look well inside that window, after several
	// sweeps have run.
	time.Sleep(1500 * time.Millisecond)

	logs := p.log.String()
	if !strings.Contains(logs, "judging expiry afresh") {
		t.Fatalf("the registry did not notice its pause; log:\n%s", logs)
	}
	if strings.Contains(logs, `"status":"critical"`) {
		t.Fatalf("an instance was expired for heartbeats the stopped registry could not hear; log:\n%s", logs)
	}
	res, err := admin.Lookup(context.Background(), "svc")
	if err != nil || len(res.Instances) != 1 {
		t.Fatalf("after the pause: %+v, %v", res, err)
	}
}

// TestServerProcess_SIGTERM: the server shuts down cleanly on SIGTERM, and
// what it acknowledged is there when it starts again.
func TestServerProcess_SIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	dir := t.TempDir()
	p := startProc(t, dir)
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	k, err := admin.CreateKey(context.Background(), []string{"svc"}, "kept")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("server exited with %v after SIGTERM; log:\n%s", err, p.log.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server still running 15s after SIGTERM")
	}
	if !strings.Contains(p.log.String(), "shutting down") {
		t.Fatalf("no shutdown in the log:\n%s", p.log.String())
	}
	p2 := startProc(t, dir)
	admin2, _ := client.New(client.Config{Addr: p2.url, Token: adminToken(t, dir)})
	keys, err := admin2.Keys(context.Background())
	if err != nil || len(keys) != 1 || keys[0].ID != k.ID {
		t.Fatalf("keys after a clean restart: %+v, %v", keys, err)
	}
}

func TestHint(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		err  error
		env  map[string]string
		want string
	}{
		{&client.Error{ErrorDetail: api.ErrorDetail{Code: api.CodeUnauthorized}}, nil, "set MUSTER_TOKEN"},
		{&client.Error{ErrorDetail: api.ErrorDetail{Code: api.CodeForbidden}}, map[string]string{"MUSTER_TOKEN": "x"}, "unknown, revoked, or of a role"},
		{&client.Error{ErrorDetail: api.ErrorDetail{Code: api.CodeForbidden, Field: "service"}}, map[string]string{"MUSTER_TOKEN": "x"}, ""},
		{fmt.Errorf("lookup: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), nil, "set MUSTER_CACERT"},
		{errors.New("remote error: tls: certificate required"), nil, "set MUSTER_CLIENT_CERT and MUSTER_CLIENT_KEY"},
		{errors.New("Client sent an HTTP request to an HTTPS server. (400 invalid_argument)"), nil, "https://"},
		{fmt.Errorf("x: %w", client.ErrUnavailable), map[string]string{"MUSTER_ADDR": "http://h:1"}, "http://h:1"},
		{errors.New("other"), nil, ""},
	} {
		got := hint(tc.err, env(tc.env))
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("hint(%v) = %q, want something with %q", tc.err, got, tc.want)
		}
	}
}

// TestSDK_RegistryKilledMidRun: the registry process is SIGKILLed and
// started again on the same address; a service using the SDK stays
// registered without intervention, and a client's resolver serves its
// cached instances, marked stale, while the registry is down.
func TestSDK_RegistryKilledMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p := startProc(t, dir, "--http-addr", addr, "--expiry-grace", "3s")
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	k, err := admin.CreateKey(context.Background(), []string{"echo"}, "")
	if err != nil {
		t.Fatal(err)
	}
	svcLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- client.Serve(ctx, client.ServiceConfig{
			Name: "echo", Address: "127.0.0.1", Listener: svcLn, TTL: 2 * time.Second, DrainDelay: -1,
			Registry: p.url, Key: k.Secret, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
			Logger: testutil.Logger(t),
		}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "echo") }))
	}()
	defer func() { cancel(); <-served }()

	c, _ := client.New(client.Config{Addr: p.url})
	res, _ := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: 50 * time.Millisecond, MaxStale: time.Minute, Logger: testutil.Logger(t)})
	waitFor := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the service to register", 10*time.Second, func() bool {
		r, err := res.Lookup(context.Background(), "echo")
		return err == nil && len(r.Instances) == 1 && !r.Stale
	})
	first, _ := res.Lookup(context.Background(), "echo")

	p.kill9(t)
	time.Sleep(100 * time.Millisecond)
	r, err := res.Lookup(context.Background(), "echo")
	if err != nil || !r.Stale || len(r.Instances) != 1 || r.Instances[0].ID != first.Instances[0].ID {
		t.Fatalf("lookup while the registry is dead: %+v, %v; want the cached instance, marked stale", r, err)
	}
	resp, err := res.HTTPClient().Get("http://echo/")
	if err != nil {
		t.Fatalf("calling the service by name while the registry is dead: %v", err)
	}
	resp.Body.Close()
	time.Sleep(time.Second) // the service's heartbeats fail meanwhile

	startProc(t, dir, "--http-addr", addr, "--expiry-grace", "3s")
	waitFor("the service to be heard by the restarted registry", 15*time.Second, func() bool {
		r, err := res.Lookup(context.Background(), "echo")
		return err == nil && !r.Stale && len(r.Instances) == 1 && r.Instances[0].LastSeenMS >= 0
	})
}
