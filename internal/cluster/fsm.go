package cluster

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

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
}

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
			return res
		}
		err = res.Err
	}
	if errors.Is(err, catalog.ErrUnsupported) || errors.Is(err, catalog.ErrCorrupt) {
		f.halted.Store(true)
		f.halt(fmt.Errorf("log entry %d: %w", l.Index, err))
		return catalog.Result{Index: l.Index, Err: ErrHalted}
	}
	return catalog.Result{Index: l.Index, Err: err}
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if f.halted.Load() {
		return nil, ErrHalted
	}
	return &fsmSnapshot{s: f.cat.Snapshot()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.cat.Restore(rc); err != nil {
		return err
	}
	if f.restored != nil {
		f.restored()
	}
	return nil
}

type fsmSnapshot struct{ s *catalog.Snapshot }

// Persist writes the snapshot in the catalog's binary format (version 2),
// which restores several times faster than the JSON of backups; Restore
// reads both, so snapshots written before it still restore.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteBinary(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
