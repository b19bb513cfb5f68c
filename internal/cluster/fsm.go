package cluster

import (
	"io"

	"github.com/hashicorp/raft"

	"github.com/musterhq/muster/internal/catalog"
)

// fsm adapts a catalog to raft.FSM. Apply is deterministic because the
// catalog's Apply is; every catalog mutation goes through here.
type fsm struct{ cat *catalog.Catalog }

var _ raft.FSM = (*fsm)(nil)

// Apply decodes one log entry and applies it at the entry's index. Entries
// that do not decode still advance nothing but are answered with an error,
// so a bad entry cannot stall the log.
func (f *fsm) Apply(l *raft.Log) interface{} {
	cmd, err := catalog.DecodeCommand(l.Data)
	if err != nil {
		return catalog.Result{Index: l.Index, Err: err}
	}
	return f.cat.Apply(l.Index, cmd)
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{s: f.cat.Snapshot()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.cat.Restore(rc)
}

type fsmSnapshot struct{ s *catalog.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
