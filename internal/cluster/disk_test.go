package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/musterhq/muster/internal/catalog"
)

// fakeDisk is a Statfs whose free space the test sets, counting its calls.
type fakeDisk struct {
	free  atomic.Uint64
	err   atomic.Value // error
	calls atomic.Int64
}

func (d *fakeDisk) statfs(string) (uint64, error) {
	d.calls.Add(1)
	if err, _ := d.err.Load().(error); err != nil {
		return 0, err
	}
	return d.free.Load(), nil
}

func TestDiskGuard_check(t *testing.T) {
	const reserve = 1 << 20
	for _, tc := range []struct {
		name    string
		reserve int64
		free    uint64
		err     error
		full    bool
	}{
		{"plenty", reserve, 100 * reserve, nil, false},
		{"just above the reserve", reserve, reserve, nil, false},
		{"below the reserve", reserve, reserve - 1, nil, true},
		{"empty", reserve, 0, nil, true},
		{"statfs fails: the write will tell", reserve, 0, errors.New("no statfs"), false},
		{"guard off", -1, 0, nil, false},
		{"default reserve", 0, DefaultDiskReserve - 1, nil, true},
		{"default reserve met", 0, DefaultDiskReserve, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDisk{}
			d.free.Store(tc.free)
			if tc.err != nil {
				d.err.Store(tc.err)
			}
			g := newDiskGuard(Config{DataDir: "/data", DiskReserve: tc.reserve, DiskFree: d.statfs})
			err := g.check()
			if tc.full != (err != nil) {
				t.Fatalf("check() = %v, want full=%v", err, tc.full)
			}
			if g.degraded() != tc.full {
				t.Errorf("degraded() = %v, want %v", g.degraded(), tc.full)
			}
			if !tc.full {
				return
			}
			if !errors.Is(err, ErrDiskFull) {
				t.Fatalf("check() = %v, want ErrDiskFull", err)
			}
			var u interface{ Unavailable() bool }
			if !errors.As(err, &u) || !u.Unavailable() {
				t.Error("ErrDiskFull is not Unavailable")
			}
			if !strings.Contains(err.Error(), "/data") || !strings.Contains(err.Error(), "free") {
				t.Errorf("message does not name the dir and the free space: %v", err)
			}
		})
	}
}

// TestDiskGuard_freshness: far from the reserve a reading is kept for a
// quarter second; near it, every check reads again, so a filling disk is
// seen at once.
func TestDiskGuard_freshness(t *testing.T) {
	const reserve = 1 << 20
	d := &fakeDisk{}
	d.free.Store(100 * reserve)
	g := newDiskGuard(Config{DataDir: "/data", DiskReserve: reserve, DiskFree: d.statfs})
	for range 1000 {
		if err := g.check(); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.calls.Load(); n != 1 {
		t.Fatalf("far from the reserve: %d statfs calls for 1000 checks, want 1", n)
	}

	d.free.Store(3 * reserve) // near: within four reserves
	g.failed()                // as after a failed write: read again now
	calls := d.calls.Load()
	for range 10 {
		if err := g.check(); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.calls.Load() - calls; n != 10 {
		t.Fatalf("near the reserve: %d statfs calls for 10 checks, want 10", n)
	}
	d.free.Store(reserve - 1)
	if err := g.check(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("near the reserve, the first check after the disk filled = %v, want ErrDiskFull", err)
	}
	d.free.Store(100 * reserve)
	if err := g.check(); err != nil {
		t.Fatalf("after space was freed: %v", err)
	}
	if !g.degraded() {
		t.Error("not degraded within the grace after a failed write")
	}
}

func TestApplyError(t *testing.T) {
	enospc := &fs.PathError{Op: "write", Path: "/data/raft.db", Err: syscall.ENOSPC}
	eio := &fs.PathError{Op: "write", Path: "/data/raft.db", Err: syscall.EIO}
	for _, tc := range []struct {
		in    error
		want  error
		retry time.Duration
	}{
		{raft.ErrNotLeader, ErrNotLeader, time.Second},
		{raft.ErrLeadershipLost, ErrNotLeader, time.Second},
		{raft.ErrLeadershipTransferInProgress, ErrNotLeader, time.Second},
		{raft.ErrRaftShutdown, ErrClosed, time.Second},
		{raft.ErrEnqueueTimeout, ErrTimeout, time.Second},
		{enospc, ErrDiskFull, 10 * time.Second},
		{fmt.Errorf("commit: %w", enospc), ErrDiskFull, 10 * time.Second},
		{eio, ErrStorage, 5 * time.Second},
		{errors.New("something else the log store said"), ErrStorage, 5 * time.Second},
	} {
		t.Run(tc.in.Error(), func(t *testing.T) {
			got := applyError(tc.in)
			if !errors.Is(got, tc.want) {
				t.Fatalf("applyError(%v) = %v, want %v", tc.in, got, tc.want)
			}
			var hint interface {
				Unavailable() bool
				UnavailableReason() string
				RetryAfter() time.Duration
			}
			if !errors.As(got, &hint) || !hint.Unavailable() || hint.UnavailableReason() == "" || hint.RetryAfter() != tc.retry {
				t.Fatalf("applyError(%v) = %v carries no retry hint of %s", tc.in, got, tc.retry)
			}
			if strings.Contains(hint.UnavailableReason(), "/data") {
				t.Errorf("the reason for clients names a path: %q", hint.UnavailableReason())
			}
			if (tc.want == ErrStorage || tc.want == ErrDiskFull) && tc.in != nil && !errors.Is(got, tc.in) {
				t.Errorf("applyError dropped the cause: %v", got)
			}
		})
	}
}

// TestNode_DiskFull: with the data dir's filesystem below the reserve,
// Apply refuses before Raft (nothing is appended, the leader keeps its
// term and stays ready), Writable and Degraded say so, and once space is
// back writes go on; nothing acknowledged is lost across a restart.
func TestNode_DiskFull(t *testing.T) {
	d := &fakeDisk{}
	d.free.Store(1 << 30)
	cfg := testConfig(t, t.TempDir())
	cfg.DiskReserve, cfg.DiskFree = 64<<20, d.statfs
	n, cat := openReady(t, cfg)
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}}})
	mustApply(t, n, registerCmd("i1", "svc", 8001))
	if n.Degraded() != "" || n.Writable() != nil {
		t.Fatalf("Degraded() = %q, Writable() = %v with space free", n.Degraded(), n.Writable())
	}

	d.free.Store(10 << 20)
	// Far from the reserve, the guard keeps its last reading for a
	// quarter second.
	time.Sleep(diskFreshFar + 50*time.Millisecond)
	last, term := n.raft.LastIndex(), n.raft.CurrentTerm()
	for i := range 20 {
		_, err := n.Apply(context.Background(), registerCmd(fmt.Sprintf("full%d", i), "svc", 9000+i))
		if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), cfg.DataDir) {
			t.Fatalf("Apply on a full disk = %v, want ErrDiskFull naming %s", err, cfg.DataDir)
		}
	}
	if !errors.Is(n.Writable(), ErrDiskFull) || n.Degraded() != "disk" {
		t.Fatalf("Writable() = %v, Degraded() = %q on a full disk", n.Writable(), n.Degraded())
	}
	if n.raft.LastIndex() != last || n.raft.CurrentTerm() != term || !n.IsReady() {
		t.Fatalf("a refused write reached Raft: last index %d → %d, term %d → %d, ready %v",
			last, n.raft.LastIndex(), term, n.raft.CurrentTerm(), n.IsReady())
	}
	if inst, ok := cat.Instance("i1"); !ok || inst.Address != "127.0.0.1" {
		t.Fatal("the catalog lost an instance")
	}

	d.free.Store(1 << 30)
	mustApply(t, n, registerCmd("i2", "svc", 8002))
	if n.Degraded() != "" {
		t.Fatalf("Degraded() = %q after space was freed", n.Degraded())
	}
	want := cat.Snapshot()
	n.Close()

	n2, cat2 := openReady(t, cfg)
	defer n2.Close()
	if !snapshotsEqual(t, want, cat2.Snapshot()) {
		t.Fatal("the catalog after restart differs")
	}
	for _, id := range []string{"i1", "i2"} {
		if _, ok := cat2.Instance(id); !ok {
			t.Errorf("acknowledged %s lost", id)
		}
	}
}
