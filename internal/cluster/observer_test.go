package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/testutil"
)

// stalledLog is an audit log whose writer is stuck while stalled is set:
// what it is given meanwhile is lost (as records still queued when the
// process is killed), and Durable cannot answer.
type stalledLog struct {
	*audit.Log
	stalled atomic.Bool
}

func (s *stalledLog) Applied(index uint64, cmd catalog.Command, res catalog.Result) {
	if !s.stalled.Load() {
		s.Log.Applied(index, cmd, res)
	}
}

func (s *stalledLog) Durable(ctx context.Context) error {
	if s.stalled.Load() {
		<-ctx.Done()
		return fmt.Errorf("stalled: %w", ctx.Err())
	}
	return s.Log.Durable(ctx)
}

func openAudit(tb testing.TB, dir string) *audit.Log {
	tb.Helper()
	cfg := audit.DefaultConfig()
	cfg.Dir = filepath.Join(dir, "audit")
	cfg.Logger = testutil.Logger(tb)
	l, err := audit.Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// appliedIndexes are the Raft indexes of the register records of the
// applied journal, in order.
func registerIndexes(tb testing.TB, l *audit.Log) []uint64 {
	tb.Helper()
	if err := l.Durable(context.Background()); err != nil {
		tb.Fatal(err)
	}
	var out []uint64
	cur := audit.Cursor{}
	for {
		p, err := l.Query(context.Background(), audit.Query{After: &cur, Action: audit.ActionRegister, Limit: audit.MaxLimit})
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range p.Records {
			out = append(out, r.Index)
		}
		if cur = p.Next; !p.More {
			return out
		}
	}
}

// TestNode_SnapshotWaitsForTheAudit: with the real Raft store and the
// real audit journal, a snapshot is not persisted while the records of
// the entries it covers are not on disk (they would be lost: a restart
// replays only the entries after the latest snapshot). When the records
// of the last entries were lost (the audit's writer stalled, then the
// process stopped), the restart derives them again from the log, each
// once, and the records of the entries replayed that were on disk
// already are not written twice.
func TestNode_SnapshotWaitsForTheAudit(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.durableWait = time.Second
	obs := &stalledLog{Log: openAudit(t, dir)}
	cfg.Observer = obs
	n, _ := openReady(t, cfg)
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}}})
	var want []uint64
	register := func(prefix string, port int) {
		for i := range 20 {
			want = append(want, mustApply(t, n, registerCmd(fmt.Sprintf("%s%d", prefix, i), "svc", port+i)).Index)
		}
	}
	register("a", 1000)
	if err := n.Snapshot(); err != nil { // the audit keeps up: a snapshot is taken
		t.Fatalf("snapshot with the audit on disk: %v", err)
	}
	register("b", 2000) // recorded, after the snapshot: replayed at the restart
	obs.stalled.Store(true)
	register("c", 3000) // lost with the stalled writer
	start := time.Now()
	if err := n.Snapshot(); err == nil {
		t.Fatal("a snapshot was persisted while the audit records of the entries it covers were not on disk")
	}
	if d := time.Since(start); d < cfg.durableWait-100*time.Millisecond {
		t.Errorf("the snapshot gave up after %s, before its wait (%s)", d, cfg.durableWait)
	}
	// The process stops with those records lost.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	obs.Log.Close()

	l := openAudit(t, dir)
	defer l.Close()
	cfg.Observer = l
	n, _ = openReady(t, cfg)
	defer n.Close()
	if got := registerIndexes(t, l); !slices.Equal(got, want) {
		t.Fatalf("registrations recorded at %v\nwant each of %v once", got, want)
	}
	// The registrations were stamped with this node and a time.
	p, err := l.Query(context.Background(), audit.Query{Action: audit.ActionRegister, Limit: 1})
	if err != nil || len(p.Records) != 1 || p.Records[0].Node != n.NodeID() || time.Since(p.Records[0].Time) > time.Minute {
		t.Fatalf("the last registration's record: %+v, %v", p.Records, err)
	}
}

// TestNode_ApplyStampsOrigin: a proposed command carries this node's ID
// and a time in its origin, and keeps a caller the proposer gave.
func TestNode_ApplyStampsOrigin(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	rec := &recorder{}
	cfg.Observer = rec
	n, _ := openReady(t, cfg)
	defer n.Close()
	cmd := catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}},
		Origin: &catalog.Origin{Caller: "192.0.2.1:1234"}}
	before := time.Now()
	mustApply(t, n, cmd)
	if cmd.Origin.Node != "" || !cmd.Origin.Time.IsZero() {
		t.Error("Apply changed the caller's origin")
	}
	got := rec.last()
	if got.Origin == nil || got.Origin.Node != n.NodeID() || got.Origin.Caller != "192.0.2.1:1234" ||
		got.Origin.Time.Before(before.Add(-time.Second)) || got.Origin.Time.After(time.Now()) {
		t.Fatalf("applied origin %+v", got.Origin)
	}
	if _, err := n.Apply(context.Background(), catalog.Command{Op: catalog.OpRevokeKey, ID: "nope"}); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatal(err)
	}
	if got := rec.last(); got.Op != catalog.OpRevokeKey || got.Origin == nil {
		t.Fatalf("a command refused when applied was not observed: %+v", got)
	}
}

// recorder is an Observer that keeps the last command applied.
type recorder struct {
	cmd atomic.Pointer[catalog.Command]
}

func (r *recorder) Applied(index uint64, cmd catalog.Command, res catalog.Result) { r.cmd.Store(&cmd) }
func (r *recorder) Restored(uint64, string)                                       {}
func (r *recorder) Durable(context.Context) error                                 { return nil }
func (r *recorder) last() catalog.Command {
	if c := r.cmd.Load(); c != nil {
		return *c
	}
	return catalog.Command{}
}
