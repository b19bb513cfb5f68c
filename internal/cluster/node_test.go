package cluster

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/testutil"
)

func testConfig(tb testing.TB, dir string) Config {
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.HeartbeatTimeout = 50 * time.Millisecond
	cfg.ElectionTimeout = 50 * time.Millisecond
	cfg.Logger = testutil.Logger(tb)
	return cfg
}

// openReady opens a node over dir and waits until it is a ready leader.
func openReady(tb testing.TB, cfg Config) (*Node, *catalog.Catalog) {
	tb.Helper()
	cat := catalog.New()
	n, err := Open(cfg, cat)
	if err != nil {
		tb.Fatal(err)
	}
	ch, _ := n.Ready()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		n.Close()
		tb.Fatal("node never became a ready leader")
	}
	return n, cat
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func registerCmd(id, service string, port int) catalog.Command {
	return catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
		ID: id, Service: service, Address: "127.0.0.1", Port: port, Scheme: "http",
		TTL: time.Second, DeregisterAfter: 10 * time.Second, TokenHash: hash("tok-" + id),
		KeyID: "k1", Status: catalog.StatusPassing, RegisteredAt: time.Unix(1700000000, 0).UTC(),
	}}
}

func mustApply(tb testing.TB, n *Node, cmd catalog.Command) catalog.Result {
	tb.Helper()
	res, err := n.Apply(context.Background(), cmd)
	if err != nil {
		tb.Fatal(err)
	}
	if res.Err != nil {
		tb.Fatal(res.Err)
	}
	return res
}

func TestNode_ApplyAndReopen(t *testing.T) {
	for _, tc := range []struct {
		name     string
		snapshot bool
	}{
		{"from log", false},
		{"from snapshot and log", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(t, dir)
			n, cat := openReady(t, cfg)
			mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}}})
			var last uint64
			for i := 0; i < 5; i++ {
				last = mustApply(t, n, registerCmd("i"+string(rune('a'+i)), "svc", 1000+i)).Index
			}
			if tc.snapshot {
				if err := n.Snapshot(); err != nil {
					t.Fatal(err)
				}
				last = mustApply(t, n, catalog.Command{Op: catalog.OpDeregister, ID: "ia"}).Index
			}
			// Apply folds the catalog's own error into its error return.
			res, err := n.Apply(context.Background(), registerCmd("zz", "other", 1))
			if !errors.Is(err, catalog.ErrKeyScope) || !errors.Is(res.Err, catalog.ErrKeyScope) {
				t.Fatalf("out-of-scope register: %v, %v", res.Err, err)
			}
			want := cat.Snapshot()
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}

			n2, cat2 := openReady(t, cfg)
			defer n2.Close()
			if got := cat2.Service("svc"); got == nil || got.Index != last {
				t.Fatalf("service view after reopen = %+v, want index %d", got, last)
			}
			if !snapshotsEqual(t, want, cat2.Snapshot()) {
				t.Fatal("catalog after reopen differs from before")
			}
			if n2.NodeID() != n.NodeID() {
				t.Fatalf("node id changed across restarts: %s → %s", n.NodeID(), n2.NodeID())
			}
		})
	}
}

func snapshotsEqual(tb testing.TB, a, b *catalog.Snapshot) bool {
	tb.Helper()
	var ba, bb bytesBuffer
	a.WriteTo(&ba)
	b.WriteTo(&bb)
	if string(ba) != string(bb) {
		tb.Logf("before: %s\nafter:  %s", ba, bb)
		return false
	}
	return true
}

type bytesBuffer []byte

func (b *bytesBuffer) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// TestNode_BadEntryDoesNotStall: an entry whose checksum matches but
// which does not parse, or whose command fails validation, is what its
// proposer wrote, and every replica refuses it alike, so the log goes on.
// (This test wrote "garbage" with first byte 1; an entry of version 1,
// which has no checksum, that does not parse is now taken for corruption
// and halts the node, see TestNode_HaltsOnCorruptEntry; one whose first
// byte is no known version halts it too, see
// TestNode_HaltsOnUnsupportedEntry.)
func TestNode_BadEntryDoesNotStall(t *testing.T) {
	n, _ := openReady(t, testConfig(t, t.TempDir()))
	defer n.Close()
	for _, body := range []string{
		"garbage",
		`{"op":"register","instance":{"id":"i1","service":"svc","address":"127/0.0.1","port":80}}`,
	} {
		f := n.raft.Apply(frameV2([]byte(body)), time.Second)
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		res, ok := f.Response().(catalog.Result)
		if !ok || !errors.Is(res.Err, catalog.ErrBadCommand) {
			t.Fatalf("entry %s: response = %#v", body, f.Response())
		}
	}
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"x"}}})
	// An unknown operation its proposer marked skippable is skipped too.
	b, _ := catalog.EncodeCommand(catalog.Command{Op: "from_the_future", SkipIfUnknown: true})
	if err := n.raft.Apply(b, time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	mustApply(t, n, catalog.Command{Op: catalog.OpRevokeKey, ID: "k1"})
	if n.Err() != nil {
		t.Fatalf("node halted: %v", n.Err())
	}
}

// TestNode_HaltsOnUnsupportedEntry: an entry this version cannot apply (a
// newer muster's operation or encoding) stops the replica before it
// diverges: nothing after it is applied, no snapshot covers it, the node
// refuses writes and reads, and it halts again at the same entry when
// restarted.
func TestNode_HaltsOnUnsupportedEntry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry func() []byte
	}{
		{"unknown op", func() []byte {
			b, _ := catalog.EncodeCommand(catalog.Command{Op: "from_the_future", ID: "x"})
			return b
		}},
		{"unknown encoding version", func() []byte { return []byte{3, '{', '}'} }},
		{"newer rules", func() []byte {
			b, _ := catalog.EncodeCommand(catalog.Command{Op: catalog.OpRevokeKey, ID: "k1", Rules: catalog.RulesMax + 1})
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			n, cat := openReady(t, cfg)
			mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"x"}}})
			before := cat.Index()
			f := n.raft.Apply(tc.entry(), time.Second)
			if err := f.Error(); err != nil {
				t.Fatal(err)
			}
			if res, _ := f.Response().(catalog.Result); !errors.Is(res.Err, ErrHalted) {
				t.Fatalf("response = %#v, want ErrHalted", f.Response())
			}
			select {
			case <-n.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("node did not halt")
			}
			if !errors.Is(n.Err(), catalog.ErrUnsupported) {
				t.Fatalf("Err() = %v, want ErrUnsupported", n.Err())
			}
			if _, err := n.Apply(context.Background(), catalog.Command{Op: catalog.OpRevokeKey, ID: "k1"}); !errors.Is(err, ErrHalted) {
				t.Fatalf("Apply after halt = %v, want ErrHalted", err)
			}
			if n.IsReady() {
				t.Fatal("halted node reports ready")
			}
			if cat.Index() != before {
				t.Fatalf("catalog index moved from %d to %d", before, cat.Index())
			}
			if err := n.Snapshot(); err == nil {
				t.Fatal("a halted node took a snapshot that would cover the entry it could not apply")
			}
			n.Close()

			// Restarted with the same version, it halts at the same entry.
			cat2 := catalog.New()
			n2, err := Open(cfg, cat2)
			if err != nil {
				t.Fatal(err)
			}
			defer n2.Close()
			select {
			case <-n2.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("restarted node did not halt at the unsupported entry")
			}
			if cat2.Index() != before {
				t.Fatalf("restarted catalog index = %d, want %d", cat2.Index(), before)
			}
			if _, ok := cat2.Key("k1"); !ok {
				t.Fatal("the entries before the unsupported one were not applied")
			}
		})
	}
}

func TestNode_ClosedRefusesApply(t *testing.T) {
	n, _ := openReady(t, testConfig(t, t.TempDir()))
	n.Close()
	if _, err := n.Apply(context.Background(), catalog.Command{Op: catalog.OpRevokeKey, ID: "x"}); err == nil {
		t.Fatal("apply on a closed node succeeded")
	}
	if n.IsReady() {
		t.Fatal("closed node reports ready")
	}
}

func TestNode_SecondOpenOfSameDirFails(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	n, _ := openReady(t, cfg)
	defer n.Close()
	if _, err := Open(cfg, catalog.New()); err == nil {
		t.Fatal("a second node opened the same data dir")
	}
}

func TestConfig_Validate(t *testing.T) {
	good := DefaultConfig()
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"default", func(*Config) {}, true},
		{"no data dir", func(c *Config) { c.DataDir = "" }, false},
		{"no raft addr without a secret", func(c *Config) { c.RaftAddr = "" }, true},
		{"no raft addr with a secret", func(c *Config) { c.RaftAddr, c.Secret = "", testSecret("a") }, false},
		{"no raft addr with a secret file", func(c *Config) { c.RaftAddr, c.SecretFile = "", "/some/file" }, false},
		{"secret", func(c *Config) { c.Secret = testSecret("a") }, true},
		{"short secret", func(c *Config) { c.Secret = Secret("short") }, false},
		{"secret and secret file", func(c *Config) { c.Secret, c.SecretFile = testSecret("a"), "/some/file" }, false},
		{"tiny timeouts", func(c *Config) { c.HeartbeatTimeout = time.Millisecond }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mutate(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
