package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// maxBackupIndex is above any index a log reaches. A backup's index is
// where the log goes on after a restore; one near the top of uint64
// would make Raft's next index wrap to 0.
const maxBackupIndex = 1 << 62

// MaxSnapshotSize is the largest snapshot ReadBackup reads: 1 GiB, some
// twenty times the snapshot of a catalog of 100,000 instances. It bounds
// what a restore into a running registry holds in memory, wherever the
// bytes come from (the API, or a member forwarding them to its leader).
const MaxSnapshotSize = 1 << 30

var (
	// ErrBadSnapshot means a backup is not a catalog snapshot of a
	// version this muster reads, or a damaged one: it does not parse,
	// holds a field this version does not know (a newer muster wrote it),
	// trails other data, has an index no log reaches, or breaks a rule
	// every snapshot meets (see Restore). ReadBackup returns it wrapped
	// with what was wrong.
	ErrBadSnapshot = errors.New("catalog: not a muster catalog snapshot, or a damaged one")
	// ErrSnapshotTooLarge means a backup is larger than MaxSnapshotSize.
	ErrSnapshotTooLarge = errors.New("catalog: the snapshot is larger than 1 GiB")
)

// Backup is a catalog snapshot read back and checked in full
// (ReadBackup): a backup on its way into a running catalog. Every
// replica restores the bytes its WriteTo writes, so they, not the
// backup's own, decide what the catalog becomes. A Backup is never
// modified; Rebased returns a new one.
type Backup struct {
	st state
	// cas are the CAs a restore into the running registry keeps (see
	// WithCAs); never read from a backup.
	cas []*CA
}

// BackupSummary counts what a Backup holds.
type BackupSummary struct {
	// Index is the catalog's index the snapshot was taken at (or, for a
	// rebased backup, the index it will be restored at).
	Index     uint64
	Instances int
	// Services counts the services with at least one instance, as
	// muster services does.
	Services  int
	Keys      int
	Evictions int
}

// ReadBackup reads one snapshot, as Snapshot.WriteTo writes it (what
// GET /v1/snapshot answers), from r, and checks it in full, as Restore
// would, with rules more: a field this version does not know and data
// after the snapshot are refused, so that nothing in a backup is dropped
// unseen, and so is an index no log reaches. It reads at most
// MaxSnapshotSize bytes. Errors wrap
// ErrBadSnapshot or ErrSnapshotTooLarge, or are r's own.
func ReadBackup(r io.Reader) (*Backup, error) {
	return readBackup(r, MaxSnapshotSize)
}

func readBackup(r io.Reader, max int64) (*Backup, error) {
	br := &boundedReader{r: r, left: max + 1}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	var st state
	err := dec.Decode(&st)
	if err == nil {
		if _, err = dec.Token(); err == nil {
			return nil, fmt.Errorf("%w: data follows the snapshot", ErrBadSnapshot)
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	switch {
	case err == nil:
	case br.tooLarge:
		return nil, ErrSnapshotTooLarge
	case br.err != nil: // the reader's fault, not the snapshot's
		return nil, fmt.Errorf("catalog: reading the snapshot: %w", br.err)
	default:
		return nil, fmt.Errorf("%w: %s", ErrBadSnapshot, decodeProblem(err))
	}
	if st.Version != snapshotVersion && st.Version != snapshotVersion4 && st.Version != snapshotVersion6 {
		return nil, fmt.Errorf("%w: snapshot version %d, this muster reads %d, %d and %d", ErrBadSnapshot, st.Version, snapshotVersion, snapshotVersion4, snapshotVersion6)
	}
	if err := st.checkVersion(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if st.Instances == nil || st.Keys == nil {
		// WriteTo always writes both, empty or not: a document without
		// them is not a backup, and restoring it would empty the catalog.
		return nil, fmt.Errorf("%w: it has no instances or no keys field: not a snapshot muster wrote (muster snapshot save writes one)", ErrBadSnapshot)
	}
	if st.Index > maxBackupIndex {
		return nil, fmt.Errorf("%w: its index %d is beyond any log's", ErrBadSnapshot, st.Index)
	}
	if err := st.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	return &Backup{st: st}, nil
}

// decodeProblem says what is wrong with a snapshot that did not decode.
func decodeProblem(err error) string {
	var syn *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return "it is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "it is truncated"
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	}
	return err.Error()
}

// boundedReader reads r up to left-1 bytes and fails with
// ErrSnapshotTooLarge when there are more. It keeps the error r
// returned, other than io.EOF, to tell a reader's fault from a damaged
// snapshot.
type boundedReader struct {
	r        io.Reader
	left     int64
	tooLarge bool
	err      error
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.tooLarge = true
		return 0, ErrSnapshotTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	if b.left -= int64(n); b.left <= 0 {
		b.tooLarge = true
		return n, ErrSnapshotTooLarge
	}
	if err != nil && !errors.Is(err, io.EOF) {
		b.err = err
	}
	return n, err
}

// Index is the catalog's index the backup was taken at, or the one
// Rebased gave it.
func (b *Backup) Index() uint64 { return b.st.Index }

// Summary counts what the backup holds.
func (b *Backup) Summary() BackupSummary {
	services := map[string]bool{}
	for _, inst := range b.st.Instances {
		services[inst.Service] = true
	}
	return BackupSummary{Index: b.st.Index, Instances: len(b.st.Instances), Services: len(services),
		Keys: len(b.st.Keys), Evictions: len(b.st.Bars)}
}

// Rebased returns the backup to be restored at index: the catalog's
// index, and that of every service it holds and of every service in
// also (those of the catalog it replaces), become index. A catalog
// restored from it therefore moves forward, never back: a blocking query
// or a cache that holds an index of the catalog replaced sees every
// service change, including those the backup empties. Instances, keys
// and bars keep the indexes they were written at.
func (b *Backup) Rebased(index uint64, also []string) *Backup {
	st := b.st
	st.Index = index
	st.Services = make(map[string]uint64, len(b.st.Services)+len(also))
	for name := range b.st.Services {
		st.Services[name] = index
	}
	for _, inst := range b.st.Instances {
		st.Services[inst.Service] = index
	}
	for _, name := range also {
		st.Services[name] = index
	}
	return &Backup{st: st, cas: b.cas}
}

// WithCAs returns the backup with the CAs cas: a backup holds no CA (it
// would hold the CA's private key), so a restore into the running
// registry gives it the running catalog's CAs, and the registry goes on
// signing with the same CA. The CAs are written by WriteSnapshot only.
func (b *Backup) WithCAs(cas []*CA) *Backup {
	return &Backup{st: b.st, cas: slices.Clone(cas)}
}

// WriteSnapshot writes the backup, and its CAs (WithCAs), in the format
// of Raft's snapshots (Snapshot.WriteBinary), for the Raft snapshot a
// restore into the running registry installs. Like WriteTo, it writes
// the same bytes for the same backup.
func (b *Backup) WriteSnapshot(w io.Writer) (int64, error) {
	st := b.st
	s := &Snapshot{index: st.Index, services: st.Services, keyed: st.Keyed, cas: b.cas,
		instances: make([]*Instance, len(st.Instances)), keys: make([]*Key, len(st.Keys))}
	for i, r := range st.Instances {
		s.instances[i] = r.toInstance()
	}
	for i, r := range st.Keys {
		s.keys[i] = r.toKey()
	}
	for _, r := range st.Bars {
		s.bars = append(s.bars, &Bar{Service: r.Service, Address: r.Address, Port: r.Port, Instance: r.Instance, Reason: r.Reason, Until: r.Until, Index: r.Index})
	}
	return s.WriteBinary(w)
}

// WriteTo writes the backup in the format it was read in, which Restore
// reads.
func (b *Backup) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	err := json.NewEncoder(cw).Encode(&b.st)
	return cw.n, err
}
