package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/musterhq/muster/client"
)

// listenPorts returns the TCP ports process pid listens on, from /proc.
func listenPorts(tb testing.TB, pid int) map[int]bool {
	tb.Helper()
	dir := fmt.Sprintf("/proc/%d", pid)
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		tb.Skip("no /proc:", err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	ports := map[int]bool{}
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(dir, "net", name))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			if i := strings.LastIndex(fields[1], ":"); i >= 0 {
				if p, err := strconv.ParseInt(fields[1][i+1:], 16, 32); err == nil {
					ports[int(p)] = true
				}
			}
		}
		f.Close()
	}
	return ports
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// logRecord returns the first JSON log line of p whose msg is msg.
func (p *proc) logRecord(tb testing.TB, msg string) map[string]any {
	tb.Helper()
	for _, line := range strings.Split(p.log.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			return rec
		}
	}
	tb.Fatalf("no log line %q in:\n%s", msg, p.log.String())
	return nil
}

// TestServerProcess_NoRaftListener: `muster server` without a cluster
// secret listens on its HTTP port and nothing else, even when given a
// --raft-addr (which it says it ignores); its log says Raft is in memory.
func TestServerProcess_NoRaftListener(t *testing.T) {
	raftAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startProc(t, t.TempDir(), "--raft-addr", raftAddr)
	rec := p.logRecord(t, "muster listening")
	if a, _ := rec["raft_addr"].(string); !strings.HasPrefix(a, "in-memory:") {
		t.Fatalf("raft_addr = %q, want in-memory:…", a)
	}
	u, _ := url.Parse(p.url)
	httpPort, _ := strconv.Atoi(u.Port())
	ports := listenPorts(t, p.cmd.Process.Pid)
	if len(ports) != 1 || !ports[httpPort] {
		t.Fatalf("the server listens on ports %v; want only its HTTP port %d", ports, httpPort)
	}
	if c, err := net.DialTimeout("tcp", raftAddr, time.Second); err == nil {
		c.Close()
		t.Fatalf("something answers on %s", raftAddr)
	}
	if !strings.Contains(p.log.String(), "--raft-addr has no effect without --cluster-secret-file") {
		t.Fatal("the ignored --raft-addr was not warned about")
	}
}

// TestServerProcess_ClusterSecretFile: with a cluster secret (here from
// MUSTER_CLUSTER_SECRET_FILE) the server listens on --raft-addr and
// refuses the attack of issue 8 (a plain-TCP vote request in a far term
// and an entry planting a key): it stays the ready leader and plants
// nothing, and the secret is never logged. A secret file others can read
// is refused at start with a clear error and exit code 1.
func TestServerProcess_ClusterSecretFile(t *testing.T) {
	secret := "f3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	secretFile := filepath.Join(t.TempDir(), "cluster-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("readable by others", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, binary, "server", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
			"--cluster-secret-file", secretFile).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("server did not exit 1: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "chmod 600 "+secretFile) || strings.Contains(string(out), secret) {
			t.Fatalf("want an error naming the file and the fix, without the secret:\n%s", out)
		}
	})

	t.Run("owner only, from the environment", func(t *testing.T) {
		if err := os.Chmod(secretFile, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("MUSTER_CLUSTER_SECRET_FILE", secretFile)
		raftAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		dir := t.TempDir()
		p := startProc(t, dir, "--raft-addr", raftAddr)
		if a := p.logRecord(t, "muster listening")["raft_addr"]; a != raftAddr {
			t.Fatalf("raft_addr = %v, want %s", a, raftAddr)
		}
		stranger, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 1, time.Second, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		defer stranger.Close()
		var vr raft.RequestVoteResponse
		voteErr := stranger.RequestVote("attacker", raft.ServerAddress(raftAddr), &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("attacker"), Addr: []byte("attacker")}, Term: 1000, LastLogIndex: 1000, LastLogTerm: 999,
		}, &vr)
		var ar raft.AppendEntriesResponse
		appendErr := stranger.AppendEntries("attacker", raft.ServerAddress(raftAddr), &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("attacker"), Addr: []byte("attacker")}, Term: 1000, LeaderCommitIndex: 1,
			Entries: []*raft.Log{{Index: 1, Term: 1000, Type: raft.LogCommand, Data: []byte(`{"op":"create_key"}`)}},
		}, &ar)
		if voteErr == nil || appendErr == nil {
			t.Fatalf("the server answered a stranger: vote %v, append %v", voteErr, appendErr)
		}
		time.Sleep(200 * time.Millisecond)
		resp, err := http.Get(p.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"ready"`) {
			t.Fatalf("after the attack /readyz = %d %s", resp.StatusCode, body)
		}
		admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
		if keys, err := admin.Keys(context.Background()); err != nil || len(keys) != 0 {
			t.Fatalf("keys after the attack = %v, %v; want none", keys, err)
		}
		if !strings.Contains(p.log.String(), "refused a connection that did not prove it holds the cluster secret") {
			t.Fatalf("the refusal was not logged:\n%s", p.log.String())
		}
		if strings.Contains(p.log.String(), secret) {
			t.Fatal("the log holds the cluster secret")
		}
	})
}

// stopProc stops a server with SIGTERM and waits for it.
func (p *proc) stop(tb testing.TB) {
	tb.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

// runServerOnce runs `muster server` over dir with extra flags until it
// exits (it must, within 30 s), and returns its exit code and stderr.
func runServerOnce(tb testing.TB, dir string, extra ...string) (int, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"server", "--http-addr", "127.0.0.1:0", "--data-dir", dir}, extra...)
	cmd := exec.CommandContext(ctx, binary, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		tb.Fatalf("server did not exit within 30s:\n%s", stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		tb.Fatalf("server exited with %v:\n%s", err, stderr.String())
	}
	return ee.ExitCode(), stderr.String()
}

// checkOneErrorLine checks that stderr ends in exactly one error line
// ("muster: …") holding every want, and holds no stack trace.
func checkOneErrorLine(tb testing.TB, stderr string, want ...string) {
	tb.Helper()
	var errLines []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "muster:") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 {
		tb.Fatalf("want one error line, got %d:\n%s", len(errLines), stderr)
	}
	for _, w := range want {
		if !strings.Contains(errLines[0], w) {
			tb.Errorf("error line lacks %q: %s", w, errLines[0])
		}
	}
	for _, bad := range []string{"goroutine ", "panic:", "fatal error", "SIGSEGV", "SIGBUS", "runtime."} {
		if strings.Contains(stderr, bad) {
			tb.Fatalf("stderr holds %q:\n%s", bad, stderr)
		}
	}
}

// TestServerProcess_RefusesLostRaftDB: a data dir whose raft.db was
// emptied does not come up as a new, empty registry: `muster server`
// exits 1 with one line naming raft.db and the remedy; with
// --force-new-cluster it starts, empty, and warns.
func TestServerProcess_RefusesLostRaftDB(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	if _, err := admin.CreateKey(context.Background(), []string{"web"}, "kept"); err != nil {
		t.Fatal(err)
	}
	p.stop(t)
	if err := os.Truncate(filepath.Join(dir, "raft.db"), 0); err != nil {
		t.Fatal(err)
	}
	code, stderr := runServerOnce(t, dir)
	if code != 1 {
		t.Fatalf("exit code %d, want 1:\n%s", code, stderr)
	}
	checkOneErrorLine(t, stderr, filepath.Join(dir, "raft.db"), "holds no Raft state", filepath.Join(dir, "cluster-id"), "--force-new-cluster")

	p = startProc(t, dir, "--force-new-cluster")
	admin, _ = client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	keys, err := admin.Keys(context.Background())
	if err != nil || len(keys) != 0 {
		t.Fatalf("keys after forcing a new cluster = %v, %v; want none", keys, err)
	}
	if !strings.Contains(p.log.String(), "force-new-cluster: starting although raft.db holds no Raft state") {
		t.Fatalf("no warning about the forced start:\n%s", p.log.String())
	}
}

// TestServerProcess_RefusesDamagedRaftDB: damage to raft.db that crashed
// the server with a stack trace (a fault reading past the end of a file
// cut short, bbolt's panic on a free list that names page 0, Raft's panic
// on an entry a branch page no longer leads to) or that made bbolt fall
// back silently to an older meta page, now makes `muster server` exit 1
// with one line naming the file and what to do, and no stack trace.
func TestServerProcess_RefusesDamagedRaftDB(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	admin, _ := client.New(client.Config{Addr: p.url, Token: adminToken(t, dir)})
	for i := range 120 {
		if _, err := admin.CreateKey(context.Background(), []string{fmt.Sprintf("svc%d-*", i)}, "a key with a description long enough to fill pages"); err != nil {
			t.Fatal(err)
		}
	}
	p.stop(t)
	db, err := os.ReadFile(filepath.Join(dir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	pages := pageTypes(t, db)
	ps := os.Getpagesize()
	first := func(typ string) int {
		for id := 0; id < len(pages); id++ {
			if pages[id] == typ {
				return id
			}
		}
		t.Fatalf("raft.db has no %s page: %v", typ, pages)
		return 0
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"cut short", func(b []byte) []byte { return b[:len(b)/3] }},
		{"free list names page 0", func(b []byte) []byte {
			b[first("freelist")*ps+10]++ // its count (little-endian on the machines this runs on): one ID more
			return b
		}},
		{"branch page leads elsewhere", func(b []byte) []byte {
			b[first("branch")*ps+16+8] ^= 0x01 // the first element's child page
			return b
		}},
		{"meta page checksum", func(b []byte) []byte { b[16+56] ^= 0x01; return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "data")
			if err := os.CopyFS(d, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "raft.db"), tc.damage(append([]byte(nil), db...)), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stderr := runServerOnce(t, d)
			if code != 1 {
				t.Fatalf("exit code %d, want 1:\n%s", code, stderr)
			}
			checkOneErrorLine(t, stderr, "raft.db is damaged", filepath.Join(d, "raft.db"), "Restore raft.db from a backup")
		})
	}
}

// pageTypes reads the type of every page of a healthy bbolt file.
func pageTypes(tb testing.TB, db []byte) []string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "copy.db")
	if err := os.WriteFile(p, db, 0o600); err != nil {
		tb.Fatal(err)
	}
	b, err := bbolt.Open(p, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer b.Close()
	var types []string
	b.View(func(tx *bbolt.Tx) error {
		for id := 0; ; id++ {
			info, err := tx.Page(id)
			if err != nil || info == nil {
				return err
			}
			types = append(types, info.Type)
		}
	})
	return types
}

// TestServerProcess_PrivateReads: `muster server --anonymous-reads=false`
// says so as it starts (reads=token), refuses a lookup without a token,
// and answers one with a read token that covers the service.
func TestServerProcess_PrivateReads(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir, "--anonymous-reads=false")
	if r := p.logRecord(t, "muster listening")["reads"]; r != "token" {
		t.Errorf("muster listening: reads = %v, want token", r)
	}
	admin, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MUSTER_ADDR": p.url, "MUSTER_TOKEN": strings.TrimSpace(string(admin))}
	out, err := cli(t, env, "tokens", "create", "--role", "read", "--service", "fetch_*", "-o", "secret")
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(out)
	get := func(token string) int {
		req, _ := http.NewRequest("GET", p.url+"/v1/services/fetch_url", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get(""); c != 401 {
		t.Errorf("lookup without a token: %d, want 401", c)
	}
	if c := get(secret); c != 200 {
		t.Errorf("lookup with a read token for fetch_*: %d, want 200", c)
	}
}

// TestServerProcess_ConsulAddr: `muster server --consul-addr` serves the
// Consul-compatible API on that address, says where as it starts, and
// answers Consul's service list there.
func TestServerProcess_ConsulAddr(t *testing.T) {
	p := startProc(t, t.TempDir(), "--consul-addr", "127.0.0.1:0")
	addr, _ := p.logRecord(t, "muster listening")["consul_addr"].(string)
	if addr == "" {
		t.Fatal("muster listening: no consul_addr")
	}
	resp, err := http.Get("http://" + addr + "/v1/catalog/services")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var svcs map[string][]string
	if err := json.NewDecoder(resp.Body).Decode(&svcs); err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Consul-Index") == "" {
		t.Errorf("GET /v1/catalog/services on --consul-addr: %d, %v, %v", resp.StatusCode, svcs, err)
	}
}
