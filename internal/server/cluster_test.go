package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

func clientOf(tb testing.TB, s *server.Server, token string) *client.Client {
	tb.Helper()
	c, err := client.New(client.Config{Addr: s.URL(), Token: token})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// getRead GETs path on s and returns the answer's status and headers.
func getRead(tb testing.TB, s *server.Server, path string) (int, http.Header, []byte) {
	tb.Helper()
	resp, err := http.Get(s.URL() + path)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var b []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, b
}

// TestCluster_AnyServerServes: in a cluster of three, a key created and
// an instance registered through followers are seen by lookups on every
// server; each answer says which server answered and how current it is;
// heartbeats sent to a follower keep the instance alive on the leader
// well past its TTL, and every server shows a fresh heartbeat age; a
// consistent read on a follower sees a registration acknowledged by
// another follower at once; silent, it goes critical everywhere, and a
// heartbeat through a follower brings it back everywhere.
func TestCluster_AnyServerServes(t *testing.T) {
	servers := testserver.StartCluster(t, 3, nil)
	lead := testserver.WaitCluster(t, servers)
	f1, f2 := servers[(lead+1)%3], servers[(lead+2)%3]
	ctx := context.Background()

	k, err := clientOf(t, f1, testserver.ClusterAdminToken).CreateKey(ctx, []string{"api"}, "through a follower")
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := clientOf(t, f2, "").Register(ctx, "api", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	if n := inst.CallCount(); n != 1 {
		t.Fatalf("the instance was called back %d times, want exactly once", n)
	}
	token := inst.Calls[0].Token

	// A consistent read on the other follower sees it at once.
	status, hdr, body := getRead(t, f1, "/v1/services/api?consistent")
	var res api.LookupResponse
	if err := json.Unmarshal(body, &res); err != nil || status != 200 {
		t.Fatalf("consistent lookup on a follower: %d %s", status, body)
	}
	if len(res.Instances) != 1 || res.Instances[0].ID != reg.ID {
		t.Fatalf("consistent lookup on a follower missed a registration acknowledged by another: %s", body)
	}
	if hdr.Get(api.HeaderNode) != f1.Node().NodeID() || hdr.Get(api.HeaderKnownLeader) != "true" {
		t.Fatalf("headers of a follower's answer: %v", hdr)
	}
	if lc, err := strconv.Atoi(hdr.Get(api.HeaderLastContact)); err != nil || lc < 0 || lc > 2000 {
		t.Fatalf("%s = %q on a follower in contact", api.HeaderLastContact, hdr.Get(api.HeaderLastContact))
	}
	if _, hdr, _ := getRead(t, servers[lead], "/v1/services/api"); hdr.Get(api.HeaderLastContact) != "0" {
		t.Fatalf("%s on the leader = %q, want 0", api.HeaderLastContact, hdr.Get(api.HeaderLastContact))
	}

	// Heartbeats through a follower only, for four TTLs.
	hb := clientOf(t, f2, "")
	for range 12 {
		if _, err := hb.Heartbeat(ctx, reg.ID, token); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	for i, s := range servers {
		res, err := clientOf(t, s, "").Lookup(ctx, "api")
		if err != nil {
			t.Fatalf("server %d: %v", i, err)
		}
		if len(res.Instances) != 1 || res.Instances[0].Status != api.StatusPassing {
			t.Fatalf("server %d: an instance heartbeating through a follower is not passing: %+v", i, res.Instances)
		}
		if age := res.Instances[0].LastSeenMS; age < 0 || age > 900 {
			t.Fatalf("server %d shows a heartbeat age of %d ms for an instance that beat within 300 ms", i, age)
		}
	}

	// Silence: it expires on every server.
	everywhere := func(status string) func() bool {
		return func() bool {
			for _, s := range servers {
				res, err := clientOf(t, s, "").Lookup(ctx, "api", client.WithStatus("any"))
				if err != nil || len(res.Instances) != 1 || res.Instances[0].Status != status {
					return false
				}
			}
			return true
		}
	}
	testserver.Eventually(t, 5*time.Second, "the silent instance to be critical everywhere", everywhere(api.StatusCritical))

	// Heard again through a follower, it comes back: the leader, which
	// the beat reaches, commits its return.
	if _, err := hb.Heartbeat(ctx, reg.ID, token); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 5*time.Second, "the instance heard again to be passing everywhere", everywhere(api.StatusPassing))
}

// TestCluster_Failover: the leader stops; an instance that keeps
// heartbeating through a follower never goes critical, reads on the
// survivors never fail, and writes resume through a follower.
func TestCluster_Failover(t *testing.T) {
	servers := testserver.StartCluster(t, 3, nil)
	lead := testserver.WaitCluster(t, servers)
	ctx := context.Background()
	f := servers[(lead+1)%3]
	k, err := clientOf(t, f, testserver.ClusterAdminToken).CreateKey(ctx, []string{"api"}, "")
	if err != nil {
		t.Fatal(err)
	}
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := clientOf(t, f, "").Register(ctx, "api", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	token := inst.Calls[0].Token
	// Default reads on a follower may trail the leader briefly; the test
	// starts once every server has the instance.
	testserver.Eventually(t, 5*time.Second, "the registration on every server", func() bool {
		for _, s := range servers {
			if res, err := clientOf(t, s, "").Lookup(ctx, "api"); err != nil || len(res.Instances) != 1 {
				return false
			}
		}
		return true
	})
	stop := make(chan struct{})
	beatErr := make(chan error, 1)
	go func() {
		c := clientOf(t, f, "")
		for {
			select {
			case <-stop:
				beatErr <- nil
				return
			case <-time.After(250 * time.Millisecond):
			}
			if _, err := c.Heartbeat(ctx, reg.ID, token); err != nil && !errors.Is(err, client.ErrUnavailable) {
				beatErr <- err
				return
			}
		}
	}()

	killed := time.Now()
	servers[lead].Close()
	survivors := []*server.Server{servers[(lead+1)%3], servers[(lead+2)%3]}
	var firstWrite time.Duration
	for time.Since(killed) < 4*time.Second {
		for i, s := range survivors {
			res, err := clientOf(t, s, "").Lookup(ctx, "api", client.WithStatus("any"))
			if err != nil {
				t.Fatalf("survivor %d refused a read %v after the leader stopped: %v", i, time.Since(killed), err)
			}
			if len(res.Instances) != 1 || res.Instances[0].Status != api.StatusPassing {
				t.Fatalf("survivor %d, %v after the leader stopped: %+v", i, time.Since(killed), res.Instances)
			}
		}
		if firstWrite == 0 {
			if _, err := clientOf(t, f, testserver.ClusterAdminToken).CreateKey(ctx, []string{"web"}, ""); err == nil {
				firstWrite = time.Since(killed)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	if err := <-beatErr; err != nil {
		t.Fatalf("a heartbeat through the follower failed: %v", err)
	}
	if firstWrite == 0 {
		t.Fatal("no write succeeded within 4 s of the leader stopping")
	}
	t.Logf("first acknowledged write %v after the leader stopped", firstWrite.Round(time.Millisecond))
}

// TestCluster_RegistrationFollowsServers: the SDK's Registration, given
// every server of a cluster, registers through the first, and when that
// server stops it goes on heartbeating through the others: the same
// instance, never registered again, never critical.
func TestCluster_RegistrationFollowsServers(t *testing.T) {
	servers := testserver.StartCluster(t, 3, nil)
	lead := testserver.WaitCluster(t, servers)
	ctx := context.Background()
	// Under the race detector the 50 ms Raft timeouts of the test cluster
	// may move the leadership now and then: a write is retried, as the
	// SDK's Registration does.
	var k api.Key
	testserver.Eventually(t, 5*time.Second, "the key to be created", func() bool {
		var err error
		k, err = clientOf(t, servers[lead], testserver.ClusterAdminToken).CreateKey(ctx, []string{"api"}, "")
		return err == nil
	})
	// The server the SDK tries first is a follower, then the leader.
	first := servers[(lead+1)%3]
	var list []string
	for _, s := range []*server.Server{first, servers[lead], servers[(lead+2)%3]} {
		list = append(list, s.URL())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r, err := client.NewRegistration(client.ServiceConfig{Name: "api", Address: "127.0.0.1", Listener: ln,
		Registry: strings.Join(list, ","), Key: k.Secret, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: r.VerifyHandler()}
	go hs.Serve(ln)
	defer hs.Close()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := r.WaitRegistered(wctx)
	wcancel()
	if err != nil {
		t.Fatal(err)
	}

	first.Close()
	others := []*server.Server{servers[lead], servers[(lead+2)%3]}
	for range 12 { // four TTLs
		time.Sleep(300 * time.Millisecond)
		for _, s := range others {
			res, err := clientOf(t, s, "").Lookup(ctx, "api", client.WithStatus("any"))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Instances) != 1 || res.Instances[0].ID != st.InstanceID || res.Instances[0].Status != api.StatusPassing {
				t.Fatalf("after the server the SDK used stopped: %+v (want %s passing)", res.Instances, st.InstanceID)
			}
		}
	}
	if now := r.State(); !now.Registered || now.InstanceID != st.InstanceID {
		t.Fatalf("the registration changed: %+v", now)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestCluster_LoneServerNeverContacted: a server waiting for the others
// of its --bootstrap-expect has never heard from a leader: a read is
// refused with 503, and its headers say no leader is known and the last
// contact was never (-1), not "just now" (0).
func TestCluster_LoneServerNeverContacted(t *testing.T) {
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	cfg := testserver.ClusterConfig(t, 0, addrs)
	cfg.HTTPAddr = "127.0.0.1:0"
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	code, hdr, body := getRead(t, s, "/v1/services/api")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("read on a lone server = %d %s, want 503", code, body)
	}
	if got := hdr.Get(api.HeaderLastContact); got != "-1" {
		t.Fatalf("%s = %q on a server that never heard from a leader, want -1", api.HeaderLastContact, got)
	}
	if got := hdr.Get(api.HeaderKnownLeader); got != "false" {
		t.Fatalf("%s = %q, want false", api.HeaderKnownLeader, got)
	}
}

// TestCluster_QuotaExactAcrossServers: a key's limit of instances holds
// across the cluster. With four of its five places taken, eight
// registrations sent at once, spread over the three servers (each admits
// against what it knows), leave exactly five instances: the others are
// refused with a quota error by the state machine, whichever server
// admitted them.
func TestCluster_QuotaExactAcrossServers(t *testing.T) {
	servers := testserver.StartCluster(t, 3, nil)
	lead := testserver.WaitCluster(t, servers)
	ctx := context.Background()
	k, err := clientOf(t, servers[lead], testserver.ClusterAdminToken).NewKey(ctx, api.CreateKeyRequest{Services: []string{"qr"}, MaxInstances: 5})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		inst := testutil.NewInstance(t, k.Secret, verify.Proof)
		if _, err := clientOf(t, servers[lead], "").Register(ctx, "qr", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1m"}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var ok, refused atomic.Int32
	for i := range 8 {
		inst := testutil.NewInstance(t, k.Secret, verify.Proof)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := clientOf(t, servers[i%3], "").Register(ctx, "qr", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1m"})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, client.ErrQuotaExceeded):
				refused.Add(1)
			default:
				t.Errorf("registration %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	res, err := clientOf(t, servers[lead], "").Lookup(ctx, "qr", client.WithStatus("any"), client.WithConsistent())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Instances) != 5 || ok.Load() != 1 || refused.Load() != 7 {
		t.Fatalf("%d instances of a key limited to 5 (%d of 8 accepted, %d refused for the quota)", len(res.Instances), ok.Load(), refused.Load())
	}
}

// TestCluster_ConsistentReadWithoutLeader: a follower left alone (the
// other two servers stopped) refuses a consistent read promptly with
// 503 and a message about reads, not writes, while a stale read still
// answers from its replica.
func TestCluster_ConsistentReadWithoutLeader(t *testing.T) {
	servers := testserver.StartCluster(t, 3, nil)
	lead := testserver.WaitCluster(t, servers)
	f := servers[(lead+1)%3]
	servers[lead].Close()
	servers[(lead+2)%3].Close()
	start := time.Now()
	code, _, body := getRead(t, f, "/v1/services/api?consistent")
	if took := time.Since(start); took > registry.ReadIndexTimeout+2*time.Second {
		t.Errorf("the consistent read took %v", took)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "consistent read") {
		t.Fatalf("consistent read without a leader: %d %s", code, body)
	}
	if code, _, body := getRead(t, f, "/v1/services/api?stale"); code != http.StatusOK {
		t.Fatalf("stale read without a leader: %d %s", code, body)
	}
}

// TestCluster_TokensOnEveryServer: a token created through one server
// authorises at once on every other (a follower that does not hold it yet
// asks the leader before refusing it), reads private on every server, and
// a revocation through a follower reaches them all.
func TestCluster_TokensOnEveryServer(t *testing.T) {
	servers := testserver.StartCluster(t, 3, func(_ int, c *server.Config) { c.Registry.PrivateReads = true })
	lead := testserver.WaitCluster(t, servers)
	f1, f2 := servers[(lead+1)%3], servers[(lead+2)%3]
	ctx := context.Background()

	tok, err := clientOf(t, f1, testserver.ClusterAdminToken).CreateToken(ctx, api.CreateTokenRequest{Role: "read", Services: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	// At once, on the other follower and on the leader.
	for _, s := range []*server.Server{f2, servers[lead], f1} {
		if _, err := clientOf(t, s, tok.Secret).Lookup(ctx, "api"); err != nil {
			t.Fatalf("%s: lookup with a token created a moment ago through another server: %v", s.Node().NodeID(), err)
		}
		if _, err := clientOf(t, s, "").Lookup(ctx, "api"); !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("%s: lookup without a token: %v, want unauthorized", s.Node().NodeID(), err)
		}
	}
	if err := clientOf(t, f2, testserver.ClusterAdminToken).RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		testserver.Eventually(t, 5*time.Second, "the revocation applied on "+s.Node().NodeID(), func() bool {
			_, err := clientOf(t, s, tok.Secret).Lookup(ctx, "api")
			return errors.Is(err, client.ErrForbidden)
		})
	}
}
