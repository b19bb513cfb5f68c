package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

var (
	clusterClients = flag.Int("cluster.clients", 40, "instances registering and heartbeating in TestClusterProcess_Failover (the issue's full run: 200)")
	clusterKills   = flag.Int("cluster.kills", 2, "leader kills in TestClusterProcess_Failover (the issue's full run: 5)")
)

// clusterAdmin is the admin token every server of the test cluster
// shares.
const clusterAdmin = "ma_process-cluster-admin-token"

// member is one `muster server` process of a test cluster, with what it
// takes to start it again over the same data dir.
type member struct {
	id, httpAddr string
	args         []string
	// wrap runs the process through another command (taskset), if set.
	wrap []string
	p    *proc
}

// freeAddrOn returns ip:port with a port nothing listens on now, picked
// below Linux's ephemeral range (32768 and up), so that no listener on
// port 0 in a test running beside this one can take it before the
// server it is meant for binds it.
func freeAddrOn(tb testing.TB, ip string) string {
	tb.Helper()
	if ln, err := net.Listen("tcp", ip+":0"); err != nil {
		tb.Skipf("cannot listen on %s (Linux routes all of 127.0.0.0/8 to lo; this system does not): %v", ip, err)
	} else {
		ln.Close()
	}
	for range 100 {
		addr := net.JoinHostPort(ip, strconv.Itoa(20000+rand.IntN(12000)))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	tb.Fatalf("no free port on %s", ip)
	return ""
}

// startClusterProcs starts n servers on 127.0.0.2, .3, …, each expecting n
// and joining the others, sharing a secret file and an admin token, and
// waits until each is ready.
func startClusterProcs(tb testing.TB, n int, extra ...string) []*member {
	tb.Helper()
	return startClusterProcsWrapped(tb, n, nil, extra...)
}

// startClusterProcsWrapped is startClusterProcs with each process run
// through wrap (taskset, for benchmarks).
func startClusterProcsWrapped(tb testing.TB, n int, wrap []string, extra ...string) []*member {
	tb.Helper()
	dir := tb.TempDir()
	secret := filepath.Join(dir, "cluster-secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("0123456789abcdef", 4)+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	ms := make([]*member, n)
	raft := make([]string, n)
	for i := range ms {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		ms[i] = &member{id: fmt.Sprintf("n%d", i+1), httpAddr: freeAddrOn(tb, ip), wrap: wrap}
		raft[i] = freeAddrOn(tb, ip)
	}
	for i, m := range ms {
		var join []string
		for j, o := range ms {
			if j != i {
				join = append(join, o.httpAddr)
			}
		}
		m.args = append([]string{"server", "--node-id", m.id, "--http-addr", m.httpAddr, "--raft-addr", raft[i],
			"--data-dir", filepath.Join(dir, m.id), "--bootstrap-expect", fmt.Sprint(n), "--join", strings.Join(join, ","),
			"--cluster-secret-file", secret, "--log-format", "json"}, extra...)
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); m.start(tb) }()
	}
	wg.Wait()
	for _, m := range ms {
		if m.p == nil {
			tb.Fatalf("%s did not start", m.id)
		}
		m.p.waitReady(tb, 30*time.Second)
	}
	return ms
}

// start runs the member's process (again).
func (m *member) start(tb testing.TB) {
	argv := append(append([]string(nil), m.wrap...), append([]string{binary}, m.args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "MUSTER_ADMIN_TOKEN="+clusterAdmin)
	m.p = launchProcCmd(tb, cmd)
}

// addrs is every member's URL, comma-separated, as MUSTER_ADDR takes it.
func addrs(ms []*member) string {
	var us []string
	for _, m := range ms {
		us = append(us, "http://"+m.httpAddr)
	}
	return strings.Join(us, ",")
}

// leaderOf asks the members which of them leads.
func leaderOf(tb testing.TB, ms []*member) int {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range ms {
			c, _ := client.New(client.Config{Addr: "http://" + m.httpAddr})
			res, err := c.Members(context.Background())
			if err != nil {
				continue
			}
			for _, mm := range res.Members {
				if mm.State == "leader" {
					for i, x := range ms {
						if x.id == mm.ID {
							return i
						}
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatal("no member reports a leader")
	return -1
}

// TestClusterProcess_Formation: three real processes on 127.0.0.2–4
// started at once form one cluster; `muster members` lists them with one
// leader; a server killed with -9 and started again over its data dir
// rejoins by itself; and a stranger with another secret cannot join.
func TestClusterProcess_Formation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	ms := startClusterProcs(t, 3)
	var out, errb strings.Builder
	getenv := func(k string) string {
		if k == "MUSTER_ADDR" {
			return addrs(ms)
		}
		return ""
	}
	if err := run(context.Background(), []string{"members"}, getenv, &out, &errb); err != nil {
		t.Fatalf("muster members: %v\n%s", err, errb.String())
	}
	if strings.Count(out.String(), "leader") != 1 || strings.Count(out.String(), "follower") != 2 {
		t.Fatalf("muster members:\n%s", out.String())
	}
	t.Logf("muster members:\n%s", out.String())

	lead := leaderOf(t, ms)
	f := (lead + 1) % 3
	// The CLI's read modes on a follower: a consistent read goes through
	// the leader's read index, a stale one takes the replica; both
	// answer (no instance of web yet), and asking for both is refused.
	other := (lead + 2) % 3
	onOther := func(k string) string {
		if k == "MUSTER_ADDR" {
			return "http://" + ms[other].httpAddr
		}
		return ""
	}
	for _, mode := range []string{"--consistent", "--stale"} {
		out.Reset()
		if err := run(context.Background(), []string{"lookup", "web", mode, "-o", "json"}, onOther, &out, &errb); err != nil ||
			!strings.Contains(out.String(), `"service": "web"`) {
			t.Fatalf("muster lookup web %s on a follower: %v\n%s%s", mode, err, out.String(), errb.String())
		}
	}
	ms[f].p.kill9(t)
	// With one follower down, a consistent read on the other still has
	// its majority.
	out.Reset()
	if err := run(context.Background(), []string{"lookup", "web", "--consistent", "-o", "id"}, onOther, &out, &errb); err != nil {
		t.Fatalf("muster lookup --consistent with a follower down: %v\n%s", err, errb.String())
	}
	ms[f].start(t)
	ms[f].p.waitReady(t, 20*time.Second)
	c, _ := client.New(client.Config{Addr: "http://" + ms[f].httpAddr})
	res, err := c.Members(context.Background())
	if err != nil || len(res.Members) != 3 {
		t.Fatalf("members after a restart: %+v, %v", res, err)
	}
}

// TestClusterProcess_Failover is the failover property: instances
// register and heartbeat through a client that knows all three servers
// while the leader is killed with -9, again and again (each time started
// again over its data). Afterwards every acknowledged registration is on
// every server, and no instance that kept heartbeating was ever reported
// critical or expired: a stream on the survivors records every status
// change. The time from each kill to the first acknowledged write is
// logged. -cluster.clients and -cluster.kills scale it.
func TestClusterProcess_Failover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	ms := startClusterProcs(t, 3, "--expiry-grace", "2s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin, err := client.New(client.Config{Addr: addrs(ms), Token: clusterAdmin})
	if err != nil {
		t.Fatal(err)
	}
	k, err := admin.CreateKey(ctx, []string{"svc-*"}, "failover")
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)

	// Every change of status, seen from the cluster.
	bad := watchExpiries(ctx, admin)

	n := *clusterClients
	ids := make([]string, n)
	var wg sync.WaitGroup
	var beatFailures atomic.Int32
	for i := range n {
		c, err := client.New(client.Config{Addr: addrs(ms)})
		if err != nil {
			t.Fatal(err)
		}
		reg, err := c.Register(ctx, fmt.Sprintf("svc-%d", i), k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "3s"})
		if err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
		ids[i] = reg.ID
		token := inst.TokenOf(reg.ID)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(500 * time.Millisecond):
				}
				if _, err := c.Heartbeat(ctx, reg.ID, token); err != nil && ctx.Err() == nil {
					if !errors.Is(err, client.ErrUnavailable) {
						t.Errorf("heartbeat of %s: %v", reg.ID, err)
					}
					beatFailures.Add(1)
				}
			}
		}()
	}

	for kill := range *clusterKills {
		lead := leaderOf(t, ms)
		killed := time.Now()
		ms[lead].p.kill9(t)
		var first time.Duration
		for first == 0 && time.Since(killed) < 15*time.Second {
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			if _, err := admin.CreateKey(wctx, []string{"probe"}, "after a kill"); err == nil {
				first = time.Since(killed)
			}
			wcancel()
			time.Sleep(10 * time.Millisecond)
		}
		if first == 0 {
			t.Fatalf("kill %d: no write acknowledged within 15 s", kill+1)
		}
		t.Logf("kill %d of %s (the leader): first acknowledged write after %v", kill+1, ms[lead].id, first.Round(time.Millisecond))
		time.Sleep(4 * time.Second) // longer than a TTL: expiries would show now
		ms[lead].start(t)
		ms[lead].p.waitReady(t, 20*time.Second)
	}
	cancel()
	wg.Wait()

	for _, m := range ms {
		for i, id := range ids {
			resp, err := http.Get("http://" + m.httpAddr + "/v1/instances/" + id + "?stale")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("acknowledged registration %d (%s) is missing on %s: %d", i, id, m.id, resp.StatusCode)
			}
		}
	}
	if got := bad.events(); len(got) > 0 {
		t.Fatalf("%d instances that kept heartbeating were reported critical or expired: %v", len(got), got)
	}
	t.Logf("%d instances, %d kills: every registration on every server, none critical; %d heartbeats refused while no leader was known",
		n, *clusterKills, beatFailures.Load())
}

// expiries records every instance a stream reports critical, or gone
// otherwise than by its own deregistration.
type expiries struct {
	mu  sync.Mutex
	got []string
}

func (e *expiries) events() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got...)
}

// watchExpiries watches every service through c until ctx ends.
func watchExpiries(ctx context.Context, c *client.Client) *expiries {
	e := &expiries{}
	go c.Watch(ctx, client.WatchRequest{}, func(ev client.WatchEvent) error {
		if x := ev.Event; x != nil && (x.Type == api.EventStatus && x.Instance.Status == api.StatusCritical ||
			x.Type == api.EventDeregistered && x.Reason != "deregistered") {
			e.mu.Lock()
			e.got = append(e.got, fmt.Sprintf("%s %s", ev.Type, ev.Data))
			e.mu.Unlock()
		}
		return nil
	})
	return e
}

// TestClusterProcess_HungServer: with a SIGSTOPped server (its kernel
// accepts connections, nothing answers) first in MUSTER_ADDR, the CLI's
// commands answer from the others within the client's probe, health
// --ready within its per-server turn; members lists all three sorted,
// the stopped one with "-" for what is not known of it; and removing an
// unknown ID says so cleanly, without asking whether a registry runs.
func TestClusterProcess_HungServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	ms := startClusterProcs(t, 3)
	lead := leaderOf(t, ms)
	hung := (lead + 1) % 3
	if err := ms[hung].p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms[hung].p.cmd.Process.Signal(syscall.SIGCONT) })
	order := []*member{ms[hung], ms[lead], ms[(lead+2)%3]}
	env := map[string]string{"MUSTER_ADDR": addrs(order), "MUSTER_TOKEN": clusterAdmin}
	for _, args := range [][]string{
		{"health", "--ready", "--timeout", "10s"},
		{"keys", "create", "--service", "web", "-o", "id"},
		{"lookup", "web"},
		{"services"},
		{"members", "-o", "id"},
	} {
		start := time.Now()
		out, errOut, code, err := runCLI(t, env, args...)
		if took := time.Since(start); code != 0 || took > 5*time.Second {
			t.Errorf("muster %s with a hung server first: %q, exit %d, %v after %s\n%s", strings.Join(args, " "), out, code, err, took, errOut)
		}
		if args[0] == "members" && out != "n1\nn2\nn3\n" {
			t.Errorf("members -o id: %q; want n1 n2 n3, sorted", out)
		}
	}
	out, errOut, code, _ := runCLI(t, env, "members")
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, ms[hung].id+" ") {
			row = l
		}
	}
	if code != 0 || !strings.Contains(row, "unreachable") || !strings.HasSuffix(strings.TrimSpace(row), "-        -") {
		t.Errorf("members with %s stopped: exit %d\n%s%s", ms[hung].id, code, out, errOut)
	}
	_, errOut, code, _ = runCLI(t, env, "members", "remove", "n9")
	if want := "muster: remove member: no server of the cluster has the ID \"n9\" (muster members lists them)\n"; code != 1 || errOut != want {
		t.Errorf("members remove n9: exit %d, stderr %q; want %q", code, errOut, want)
	}
}
