package cluster

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/testutil"
)

// testSecret returns a cluster secret made of s repeated.
func testSecret(s string) Secret {
	return Secret(strings.Repeat(s, MinSecretLen/len(s)+1))
}

// logCapture is a logger that keeps every line, so that a test can look
// for warnings and for leaked secrets; the lines go to the test log if
// the test fails.
func logCapture(tb testing.TB) (*slog.Logger, *testutil.Buffer) {
	var buf testutil.Buffer
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Log(buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

// peer is a Raft NetworkTransport on a secure stream, as a node has one.
type peer struct {
	stream *secureStream
	trans  *raft.NetworkTransport
}

func newPeer(tb testing.TB, secret Secret, log *slog.Logger, timeout time.Duration, slots int) *peer {
	tb.Helper()
	s, err := listenSecureWith("127.0.0.1:0", secret, log, timeout, slots, 0)
	if err != nil {
		tb.Fatal(err)
	}
	t := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: s, MaxPool: 2, Timeout: 2 * time.Second, Logger: hclog.NewNullLogger(),
	})
	tb.Cleanup(func() { t.Close() })
	return &peer{stream: s, trans: t}
}

// consume answers every RPC the transport's consumer delivers (granting
// votes, accepting entries) and records it on the returned channel.
func consume(tb testing.TB, t raft.Transport) <-chan raft.RPC {
	got := make(chan raft.RPC, 16)
	done := make(chan struct{})
	tb.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case <-done:
				return
			case rpc := <-t.Consumer():
				switch cmd := rpc.Command.(type) {
				case *raft.RequestVoteRequest:
					rpc.Respond(&raft.RequestVoteResponse{Term: cmd.Term, Granted: true}, nil)
				case *raft.AppendEntriesRequest:
					rpc.Respond(&raft.AppendEntriesResponse{Term: cmd.Term, Success: true, LastLog: 1}, nil)
				default:
					rpc.Respond(nil, errors.New("test: unexpected rpc"))
				}
				select {
				case got <- rpc:
				default:
				}
			}
		}
	}()
	return got
}

// attack is what an attacker on the network sends: a vote request in a
// far term (which made the leader step down) and an entry carrying a
// catalog command (which planted keys and instances).
func attack(t raft.Transport, target raft.ServerAddress) (voteErr, appendErr error) {
	var vr raft.RequestVoteResponse
	voteErr = t.RequestVote("attacker", target, &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("attacker"), Addr: []byte("attacker")},
		Term:      1000, LastLogIndex: 1000, LastLogTerm: 999,
	}, &vr)
	cmd, _ := catalog.EncodeCommand(catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "planted", SecretHash: hash("x"), Services: []string{"*"}}})
	var ar raft.AppendEntriesResponse
	appendErr = t.AppendEntries("attacker", target, &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("attacker"), Addr: []byte("attacker")},
		Term:      1000, PrevLogEntry: 0, PrevLogTerm: 0, LeaderCommitIndex: 1,
		Entries: []*raft.Log{{Index: 1, Term: 1000, Type: raft.LogCommand, Data: cmd}},
	}, &ar)
	return voteErr, appendErr
}

// dialStream is a raft.StreamLayer that dials with dial and never
// accepts: the attacker's side.
type dialStream struct {
	dial func(addr string, timeout time.Duration) (net.Conn, error)
	done chan struct{}
}

func newDialStream(dial func(string, time.Duration) (net.Conn, error)) *dialStream {
	return &dialStream{dial: dial, done: make(chan struct{})}
}

func (d *dialStream) Accept() (net.Conn, error) { <-d.done; return nil, net.ErrClosed }
func (d *dialStream) Close() error {
	select {
	case <-d.done:
	default:
		close(d.done)
	}
	return nil
}
func (d *dialStream) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (d *dialStream) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return d.dial(string(a), timeout)
}

// ownCert is a self-signed certificate for a fresh ed25519 key: a TLS
// client that presents a key of its own.
func ownCert(tb testing.TB) tls.Certificate {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
}

// TestSecureStream_RefusesStrangers: a transport with a cluster secret
// drops every connection that does not prove it holds the secret, before
// Raft reads a byte of it: plain TCP carrying real Raft RPCs (the attack
// of issue 8), TLS with another secret, TLS with a key of the attacker's
// own (ignoring who the server is), TLS without a certificate, and a
// connection that never says anything. Each is logged at warn, and no
// log line carries the secret.
func TestSecureStream_RefusesStrangers(t *testing.T) {
	secret := testSecret("cluster-secret-")
	log, logs := logCapture(t)
	srv := newPeer(t, secret, log, 500*time.Millisecond, 8)
	got := consume(t, srv.trans)
	target := srv.trans.LocalAddr()

	tlsDial := func(conf *tls.Config) func(string, time.Duration) (net.Conn, error) {
		return func(addr string, timeout time.Duration) (net.Conn, error) {
			return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", addr, conf)
		}
	}
	for _, tc := range []struct {
		name  string
		trans func(t *testing.T) raft.Transport
	}{
		{"plain TCP raft transport", func(t *testing.T) raft.Transport {
			tr, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 1, time.Second, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			return tr
		}},
		{"TLS with another secret", func(t *testing.T) raft.Transport {
			return newPeer(t, testSecret("another-secret-"), nil, time.Second, 8).trans
		}},
		{"TLS with a key of its own, not checking the server", func(t *testing.T) raft.Transport {
			conf := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ownCert(t)}}
			return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
				Stream: newDialStream(tlsDial(conf)), MaxPool: 1, Timeout: time.Second, Logger: hclog.NewNullLogger()})
		}},
		{"TLS without a certificate", func(t *testing.T) raft.Transport {
			conf := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
			return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
				Stream: newDialStream(tlsDial(conf)), MaxPool: 1, Timeout: time.Second, Logger: hclog.NewNullLogger()})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(logs.String(), "refused a connection")
			tr := tc.trans(t)
			defer tr.(io.Closer).Close()
			voteErr, appendErr := attack(tr, target)
			if voteErr == nil || appendErr == nil {
				t.Fatalf("the stranger's RPCs were answered: vote %v, append %v", voteErr, appendErr)
			}
			waitFor(t, func() bool { return strings.Count(logs.String(), "refused a connection") > before },
				"a warning about the refused connection")
		})
	}

	t.Run("silent connection", func(t *testing.T) {
		c, err := net.Dial("tcp", string(target))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a connection that never spoke was not closed by the server: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("closed after %v, long past the handshake timeout", d)
		}
	})

	select {
	case rpc := <-got:
		t.Fatalf("Raft received an RPC from a stranger: %T", rpc.Command)
	case <-time.After(200 * time.Millisecond):
	}
	for _, leak := range []string{string(secret), hex.EncodeToString(secret), string(testSecret("another-secret-"))} {
		if strings.Contains(logs.String(), leak) {
			t.Fatal("the log holds the cluster secret")
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Fatal("refusals were not logged at warn")
	}
}

// TestSecureStream_PeersExchangeRPCs: two transports holding the same
// secret authenticate each other and carry Raft's RPCs both ways.
func TestSecureStream_PeersExchangeRPCs(t *testing.T) {
	secret := testSecret("shared-")
	a := newPeer(t, secret, testutil.Logger(t), time.Second, 8)
	b := newPeer(t, secret, testutil.Logger(t), time.Second, 8)
	gotA, gotB := consume(t, a.trans), consume(t, b.trans)
	for _, dir := range []struct {
		name     string
		from     *peer
		to       *peer
		received <-chan raft.RPC
	}{{"a to b", a, b, gotB}, {"b to a", b, a, gotA}} {
		t.Run(dir.name, func(t *testing.T) {
			var vr raft.RequestVoteResponse
			if err := dir.from.trans.RequestVote("peer", dir.to.trans.LocalAddr(), &raft.RequestVoteRequest{
				RPCHeader: raft.RPCHeader{ID: []byte("peer"), Addr: []byte(dir.from.trans.LocalAddr())}, Term: 3,
			}, &vr); err != nil {
				t.Fatal(err)
			}
			if !vr.Granted || vr.Term != 3 {
				t.Fatalf("vote response = %+v", vr)
			}
			if rpc := <-dir.received; rpc.Command.(*raft.RequestVoteRequest).Term != 3 {
				t.Fatalf("received %+v", rpc.Command)
			}
			var ar raft.AppendEntriesResponse
			if err := dir.from.trans.AppendEntries("peer", dir.to.trans.LocalAddr(), &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ID: []byte("peer"), Addr: []byte(dir.from.trans.LocalAddr())}, Term: 3,
				Entries: []*raft.Log{{Index: 1, Term: 3, Type: raft.LogCommand, Data: []byte("entry")}},
			}, &ar); err != nil {
				t.Fatal(err)
			}
			if !ar.Success {
				t.Fatalf("append response = %+v", ar)
			}
			rpc := <-dir.received
			if e := rpc.Command.(*raft.AppendEntriesRequest).Entries; len(e) != 1 || string(e[0].Data) != "entry" {
				t.Fatalf("received entries %+v", e)
			}
		})
	}
}

// TestSecureStream_BoundsHandshakes: connections that are still proving
// the secret are limited; one beyond the limit is closed at once, and
// the slots come back when those connections end, so peers get in again.
func TestSecureStream_BoundsHandshakes(t *testing.T) {
	secret := testSecret("bounded-")
	srv := newPeer(t, secret, testutil.Logger(t), 10*time.Second, 2)
	consume(t, srv.trans)
	addr := string(srv.trans.LocalAddr())
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, func() bool { return len(srv.stream.slots) == 2 }, "both handshakes to start")
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection beyond the limit was kept: %v", err)
	}
	for _, c := range held {
		c.Close()
	}
	waitFor(t, func() bool { return len(srv.stream.slots) == 0 }, "the slots to be released")
	p := newPeer(t, secret, nil, time.Second, 2)
	voteErr, _ := attack(p.trans, srv.trans.LocalAddr())
	if voteErr != nil {
		t.Fatalf("a peer with the secret was refused after the slots freed: %v", voteErr)
	}
}

func waitFor(tb testing.TB, cond func() bool, what string) {
	tb.Helper()
	waitWithin(tb, 5*time.Second, cond, what)
}

// waitWithin is waitFor with its own bound.
func waitWithin(tb testing.TB, d time.Duration, cond func() bool, what string) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// listeners returns the TCP ports this process listens on, from /proc.
func listeners(tb testing.TB) map[int]bool {
	tb.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skip("no /proc:", err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	ports := map[int]bool{}
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ... inode is field 9
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			if i := strings.LastIndex(fields[1], ":"); i >= 0 {
				if p, err := strconv.ParseInt(fields[1][i+1:], 16, 32); err == nil {
					ports[int(p)] = true
				}
			}
		}
		fh.Close()
	}
	return ports
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestNode_NoRaftListenerWithoutSecret: a node without a cluster secret
// (the default) opens no listening socket at all, whatever RaftAddr says;
// its Raft address says it is in memory.
func TestNode_NoRaftListenerWithoutSecret(t *testing.T) {
	port := freePort(t)
	before := listeners(t)
	cfg := testConfig(t, t.TempDir())
	cfg.RaftAddr = fmt.Sprintf("127.0.0.1:%d", port)
	n, _ := openReady(t, cfg)
	defer n.Close()
	after := listeners(t)
	for p := range after {
		if !before[p] {
			t.Fatalf("the node listens on port %d", p)
		}
	}
	if c, err := net.DialTimeout("tcp", cfg.RaftAddr, time.Second); err == nil {
		c.Close()
		t.Fatalf("something answers on %s", cfg.RaftAddr)
	}
	if want := InMemoryAddrPrefix + n.NodeID(); n.RaftAddr() != want || n.Leader() != want {
		t.Fatalf("RaftAddr() = %q, Leader() = %q, want %q", n.RaftAddr(), n.Leader(), want)
	}
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"x"}}})
}

// TestNode_SecretRefusesStrangers: the attack of issue 8 against a node
// with a cluster secret. A stranger on localhost sends a vote request in
// a far term and an entry planting a key; the leader neither steps down
// nor applies it, and the catalog does not move.
func TestNode_SecretRefusesStrangers(t *testing.T) {
	log, logs := logCapture(t)
	cfg := testConfig(t, t.TempDir())
	cfg.Secret = testSecret("node-secret-")
	cfg.Logger = log
	n, cat := openReady(t, cfg)
	defer n.Close()
	if !strings.HasPrefix(n.RaftAddr(), "127.0.0.1:") {
		t.Fatalf("RaftAddr() = %q, want a TCP address", n.RaftAddr())
	}
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"x"}}})
	term, index := n.raft.CurrentTerm(), cat.Index()

	stranger, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 1, time.Second, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	voteErr, appendErr := attack(stranger, raft.ServerAddress(n.RaftAddr()))
	if voteErr == nil || appendErr == nil {
		t.Fatalf("the node answered a stranger: vote %v, append %v", voteErr, appendErr)
	}
	time.Sleep(100 * time.Millisecond)
	if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term || !n.IsReady() {
		t.Fatalf("the node stepped down or changed term: %v, term %d → %d", n.raft.State(), term, n.raft.CurrentTerm())
	}
	if _, ok := cat.Key("planted"); ok || cat.Index() != index {
		t.Fatal("the stranger's entry reached the catalog")
	}
	if !strings.Contains(logs.String(), "refused a connection") {
		t.Fatal("the refusal was not logged")
	}
	if strings.Contains(logs.String(), string(cfg.Secret)) {
		t.Fatal("the log holds the cluster secret")
	}
}

// TestNode_ElectsItselfWhenItsAddressChanged: a single voter elects
// itself by ID, whatever address its stored configuration gives it, and
// then corrects that address: bootstrapped on a TCP listener, reopened
// without a secret (in memory), then with a secret on another port.
func TestNode_ElectsItselfWhenItsAddressChanged(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Secret = testSecret("moving-")
	n, _ := openReady(t, cfg)
	first := n.RaftAddr()
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"x"}}})
	n.Close()

	for _, step := range []struct {
		name   string
		secret Secret
	}{{"without a secret", nil}, {"with a secret on another port", testSecret("moving-")}} {
		t.Run(step.name, func(t *testing.T) {
			c := cfg
			c.Secret = step.secret
			n, cat := openReady(t, c)
			defer n.Close()
			if _, ok := cat.Key("k1"); !ok {
				t.Fatal("the catalog lost its key")
			}
			if n.RaftAddr() == first {
				t.Fatalf("the address did not change: %s", first)
			}
			waitFor(t, func() bool {
				f := n.raft.GetConfiguration()
				if f.Error() != nil {
					return false
				}
				s := f.Configuration().Servers
				return len(s) == 1 && s[0].Address == raft.ServerAddress(n.RaftAddr())
			}, "the configuration to carry the new address")
			mustApply(t, n, catalog.Command{Op: catalog.OpRevokeKey, ID: "k1"})
			mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"x"}}})
		})
	}
}

// TestNode_OpensLegacyDataDir: the data dir of the registry as it
// shipped (bootstrapped with 127.0.0.1:9001 in its configuration, and no
// cluster-id) opens without a listener, elects itself, corrects its
// address and records its cluster-id, readable by its owner only.
func TestNode_OpensLegacyDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dir, os.DirFS("../server/testdata/datadir-v1")); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, dir)
	n, cat := openReady(t, cfg)
	defer n.Close()
	if cat.Index() == 0 {
		t.Fatal("the legacy catalog is empty")
	}
	waitFor(t, func() bool {
		s := n.raft.GetConfiguration().Configuration().Servers
		return len(s) == 1 && s[0].Address == raft.ServerAddress(InMemoryAddrPrefix+n.NodeID())
	}, "the configuration to drop 127.0.0.1:9001")
	fi, err := os.Stat(filepath.Join(dir, clusterIDFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("cluster-id mode %v", fi.Mode().Perm())
	}
}

// TestNode_WithoutSecretRefusesOtherVoters: a node without a secret must
// be its cluster's only server. A configuration with another voter (a
// cluster of several nodes) needs the secret; one that does not list this
// node means node-id was changed. Both are refused with a clear error.
func TestNode_WithoutSecretRefusesOtherVoters(t *testing.T) {
	for _, tc := range []struct {
		name    string
		servers []raft.ServerID
		want    string
	}{
		{"another voter", []raft.ServerID{"me", "other"}, "cluster secret"},
		{"not this node", []raft.ServerID{"other"}, "node-id changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store, err := raftboltdb.NewBoltStore(filepath.Join(dir, raftDBFile))
			if err != nil {
				t.Fatal(err)
			}
			snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			var conf raft.Configuration
			for _, id := range tc.servers {
				conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: id, Address: raft.ServerAddress("10.0.0.1:9001/" + id)})
			}
			_, tr := raft.NewInmemTransport("")
			rc := raft.DefaultConfig()
			rc.LocalID = "me"
			if err := raft.BootstrapCluster(rc, store, store, snaps, tr, conf); err != nil {
				t.Fatal(err)
			}
			store.Close()
			cfg := testConfig(t, dir)
			cfg.NodeID = "me"
			_, err = Open(cfg, catalog.New())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// TestReadSecretFile: the secret file must be its owner's alone, and
// hold a long enough secret; its content never appears in an error.
func TestReadSecretFile(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		want    string // "" means it is read
	}{
		{"owner only", secret + "\n", 0o600, ""},
		{"owner read-only", secret, 0o400, ""},
		{"group readable", secret, 0o640, "chmod 600"},
		{"world readable", secret, 0o604, "chmod 600"},
		{"too short", "short\n", 0o600, "at least 32"},
		{"empty", "", 0o600, "at least 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			s, err := ReadSecretFile(p)
			if tc.want == "" {
				if err != nil || string(s) != secret {
					t.Fatalf("ReadSecretFile = %q, %v", s, err)
				}
				if fmt.Sprint(s) != "[secret]" || fmt.Sprintf("%#v", s) != "[secret]" {
					t.Fatalf("the secret prints as itself: %v", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("ReadSecretFile = %v, want an error naming %s and %q", err, p, tc.want)
			}
			if tc.content != "" && strings.Contains(err.Error(), tc.content) {
				t.Fatal("the error holds the file's content")
			}
		})
	}
	if _, err := ReadSecretFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing file was read")
	}
}

// TestNode_SecretFileIsChecked: Open reads Config.SecretFile, and refuses
// a file others can read before anything listens.
func TestNode_SecretFileIsChecked(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(testSecret("file-")), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, t.TempDir())
	cfg.SecretFile = p
	if _, err := Open(cfg, catalog.New()); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Open with a world-readable secret file = %v", err)
	}
	os.Chmod(p, 0o600)
	n, _ := openReady(t, cfg)
	defer n.Close()
	if !strings.HasPrefix(n.RaftAddr(), "127.0.0.1:") {
		t.Fatalf("RaftAddr() = %q, want a listener", n.RaftAddr())
	}
}

// TestSecureStream_AdminCheckCannotBeReflected: a holder of the cluster
// secret that does not know the admin token reads the admin check a
// member sends on a new connection and sends the same bytes back. It
// reaches neither Raft (no vote request or entry arrives) nor the
// servers' RPC: each end proves the admin check for its own role, bound
// to the TLS session, so an end's own proof is not what it accepts. A
// peer that knows the admin token still gets in.
func TestSecureStream_AdminCheckCannotBeReflected(t *testing.T) {
	secret := testSecret("reflect-")
	conf, err := secretTLSConfig(secret)
	if err != nil {
		t.Fatal(err)
	}
	// reflect dials addr with proto and sends back the first 32 bytes
	// the member sends.
	reflect := func(addr, proto string) (net.Conn, error) {
		c, err := tls.Dial("tcp", addr, dialConfig(conf, proto))
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		theirs := make([]byte, 32)
		if _, err := io.ReadFull(c, theirs); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := c.Write(theirs); err != nil {
			c.Close()
			return nil, err
		}
		c.SetDeadline(time.Time{})
		return c, nil
	}

	t.Run("raft", func(t *testing.T) {
		srv := newPeer(t, secret, nil, 2*time.Second, 8)
		adm := hash("the real admin token")
		srv.stream.admin.Store(&adm)
		got := consume(t, srv.trans)
		att := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  newDialStream(func(addr string, _ time.Duration) (net.Conn, error) { return reflect(addr, protoRaft) }),
			MaxPool: 1, Timeout: 2 * time.Second, Logger: hclog.NewNullLogger()})
		defer att.Close()
		attack(att, srv.trans.LocalAddr())
		select {
		case rpc := <-got:
			t.Fatalf("a peer without the admin token reached Raft by reflecting the admin check: %T", rpc.Command)
		case <-time.After(500 * time.Millisecond):
		}
		member := newPeer(t, secret, nil, 2*time.Second, 8)
		member.stream.admin.Store(&adm)
		if voteErr, _ := attack(member.trans, srv.trans.LocalAddr()); voteErr != nil {
			t.Fatalf("a peer with the admin token was refused: %v", voteErr)
		}
	})

	t.Run("rpc", func(t *testing.T) {
		cfg := clusterConfig(t, secret, "the real admin token")
		m := openNode(t, cfg)
		c, err := reflect(m.n.RaftAddr(), protoRPC)
		if err != nil {
			return // refused before a request could be sent
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(c, "GET /cluster/status HTTP/1.1\r\nHost: member\r\n\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		if strings.Contains(line, " 200 ") {
			t.Fatalf("a peer without the admin token was answered by the RPC server: %q", line)
		}
	})
}

// TestNode_StrangersCannotTakeMembersSlots: silent connections from
// five addresses that are no member's (all of 127.0.0.0/8 is local, so a
// stranger has many) take what the handshake slots allow them, and a
// member, whose address the node was told to join, still gets in at
// once: strangers, together, hold at most the unreserved share.
func TestNode_StrangersCannotTakeMembersSlots(t *testing.T) {
	secret := testSecret("cluster")
	memberCfg := clusterConfig(t, secret, "admin")
	memberCfg.NodeID = "member"
	member := openNode(t, memberCfg)
	cfg := clusterConfig(t, secret, "admin")
	cfg.NodeID = "target"
	cfg.Join = []string{member.n.RaftAddr()}
	target := openNode(t, cfg)

	for i := range 5 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}}
		for range maxHandshakesPerIP {
			c, err := d.Dial("tcp", target.n.RaftAddr())
			if err != nil {
				t.Skipf("cannot dial from 127.0.0.%d: %v", 2+i, err)
			}
			defer c.Close()
		}
	}
	time.Sleep(300 * time.Millisecond) // the accept loop takes them all
	var got Member
	if err := member.n.Call(context.Background(), target.n.RaftAddr(), "/cluster/status", nil, &got); err != nil {
		t.Fatalf("a member was refused while strangers on five addresses hold handshakes: %v", err)
	}
	if got.ID != "target" {
		t.Fatalf("status answered by %q", got.ID)
	}
}
