package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/musterhq/muster/internal/catalog"
)

// fsm adapts a catalog to raft.FSM. Apply is deterministic because the
// catalog's Apply is; every catalog mutation goes through here.
//
// The rule for entries: one that is malformed in a way every replica sees
// alike (catalog.ErrBadCommand: a version-2 entry whose checksum matches
// but which does not parse, or whose command fails Command.Validate) is
// answered with that error and the log goes on, so a bad entry cannot
// stall it. Two kinds halt the replica: an entry this version cannot
// apply as its proposer meant (catalog.ErrUnsupported: an unknown
// operation, encoding or rules version, written by a newer muster), and
// an entry that is not what its proposer wrote (catalog.ErrCorrupt: a
// checksum mismatch, or a version-1 entry, which has no checksum, that
// does not parse or fails validation). Halting, it applies nothing more,
// refuses to snapshot (so the entry is never compacted away unapplied),
// and calls halt once, which stops Raft and reports the error, with the
// entry's index, to the operator. Restarted as it is, it halts again at
// the same entry; upgraded (unsupported) or with its data dir restored
// (corrupt), it goes on.
//
// Validation comes before Apply so that a damaged field that still
// parses (an address with a '/' in it) is never served; an unknown
// operation or a newer rules version skips it and is judged by Apply.
type fsm struct {
	cat  *catalog.Catalog
	log  *slog.Logger
	halt func(error)
	// restored, if not nil, is called after the catalog was restored
	// from a snapshot (Node.markState: a snapshot installed by a leader
	// is Raft state).
	restored func()
	halted   atomic.Bool
	// obs, if not nil, is told of every command applied and every
	// snapshot restored (the audit trail); node is this node's ID.
	obs  Observer
	node string
	// durableWait bounds the waits for obs (the const durableWait).
	durableWait time.Duration
}

// Observer learns of what the FSM applies; *audit.Log implements it (the
// audit trail, which records every replica's applied log alike).
type Observer interface {
	// Applied is called on the FSM goroutine after each command the
	// catalog applied or refused (a command every replica refuses alike
	// included), in log order, with its index and result. It must
	// return within a bounded time: the FSM waits for it.
	Applied(index uint64, cmd catalog.Command, res catalog.Result)
	// Restored is called on the FSM goroutine after a snapshot replaced
	// the catalog (at the node's start, a leader's snapshot installed, a
	// backup restored), with the catalog's index and this node's ID.
	Restored(index uint64, node string)
	// Durable returns once what Applied and Restored were given so far
	// is on disk, or an error once ctx ends. A snapshot is persisted only
	// after it returns nil: Raft replays only the entries after its
	// latest snapshot, so what the observer derived from those before
	// must be kept by then.
	Durable(ctx context.Context) error
}

// durableWait bounds how long a snapshot, or a restore, waits for the
// observer (Observer.Durable). A snapshot that cannot wait is abandoned
// (Raft keeps its log and tries again later); a restore goes on.
const durableWait = 10 * time.Second

var _ raft.FSM = (*fsm)(nil)

// Apply decodes one log entry and applies it at the entry's index.
func (f *fsm) Apply(l *raft.Log) interface{} {
	if f.halted.Load() {
		return catalog.Result{Index: l.Index, Err: ErrHalted}
	}
	cmd, err := catalog.DecodeCommand(l.Data)
	if err == nil {
		err = cmd.Validate()
	}
	if err == nil {
		res := f.cat.Apply(l.Index, cmd)
		if !errors.Is(res.Err, catalog.ErrUnsupported) {
			if errors.Is(res.Err, catalog.ErrSkipped) {
				f.log.Warn("skipped a log entry this version does not know; its proposer marked it safe to skip", "index", l.Index, "op", cmd.Op)
			}
			f.observe(l.Index, cmd, res)
			return res
		}
		err = res.Err
	}
	if errors.Is(err, catalog.ErrUnsupported) || errors.Is(err, catalog.ErrCorrupt) {
		f.halted.Store(true)
		f.halt(fmt.Errorf("log entry %d: %w", l.Index, err))
		return catalog.Result{Index: l.Index, Err: ErrHalted}
	}
	res := catalog.Result{Index: l.Index, Err: err}
	if errors.Is(err, catalog.ErrBadCommand) && cmd.Op != "" { // parsed, and refused alike everywhere
		f.observe(l.Index, cmd, res)
	}
	return res
}

func (f *fsm) observe(index uint64, cmd catalog.Command, res catalog.Result) {
	if f.obs != nil {
		f.obs.Applied(index, cmd, res)
	}
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if f.halted.Load() {
		return nil, ErrHalted
	}
	return &fsmSnapshot{s: f.cat.Snapshot(), obs: f.obs, log: f.log, wait: f.durableWait}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if f.obs != nil {
		// What was derived from the entries applied so far is kept before
		// they may go: a snapshot replaces them.
		ctx, cancel := context.WithTimeout(context.Background(), f.durableWait)
		if err := f.obs.Durable(ctx); err != nil {
			f.log.Error("restoring a snapshot without the audit records of the entries applied before it on disk", "err", err)
		}
		cancel()
	}
	if err := f.cat.Restore(rc); err != nil {
		return err
	}
	if f.obs != nil {
		f.obs.Restored(f.cat.Index(), f.node)
	}
	if f.restored != nil {
		f.restored()
	}
	return nil
}

type fsmSnapshot struct {
	s    *catalog.Snapshot
	obs  Observer
	log  *slog.Logger
	wait time.Duration
}

// Persist writes the snapshot in the catalog's binary format (version 2,
// or 3 once a key is a token), which restores several times
// faster than the JSON of backups; Restore reads every version, so
// snapshots written before still restore. It first
// waits (up to durableWait) until the observer has kept what it derived
// from the entries the snapshot covers: once the snapshot is persisted,
// a restart replays only the entries after it. If the observer cannot,
// the snapshot is abandoned, and Raft keeps the log and tries later.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if s.obs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.wait)
		err := s.obs.Durable(ctx)
		cancel()
		if err != nil {
			sink.Cancel()
			s.log.Error("snapshot abandoned: the audit records of the entries it covers are not on disk; the log is kept, and the snapshot tried again later", "err", err)
			return fmt.Errorf("cluster: snapshot abandoned: %w", err)
		}
	}
	if _, err := s.s.WriteBinary(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
