package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/redact"
)

// Config configures a Log.
type Config struct {
	// Dir holds the journals' files (0700; the files 0600).
	Dir string
	// MaxFileSize is the size past which a journal begins a new file.
	MaxFileSize int64
	// MaxFiles is how many files each journal keeps besides the one it
	// appends to; older ones are deleted.
	MaxFiles int
	// SyncEvery is the longest a written record waits for its fsync.
	SyncEvery time.Duration
	// AppliedQueue and LocalQueue bound the records waiting for each
	// journal's writer.
	AppliedQueue, LocalQueue int
	// ApplyWait is the longest Applied waits for room in a full queue
	// (the FSM goroutine waits with it) before it drops the record.
	ApplyWait time.Duration
	// MaxReaders bounds the reads (Query) running at once; ReadWait is
	// how long one waits for its turn before ErrBusy.
	MaxReaders int
	ReadWait   time.Duration
	// ReadBudget bounds the bytes of the journals one Query reads.
	ReadBudget int64

	// Logger receives the log's own lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock of local records; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the production settings (Dir is the caller's).
func DefaultConfig() Config {
	return Config{
		MaxFileSize: 32 << 20, MaxFiles: 4, SyncEvery: 100 * time.Millisecond,
		AppliedQueue: 32768, LocalQueue: 8192, ApplyWait: 250 * time.Millisecond,
		MaxReaders: 4, ReadWait: time.Second, ReadBudget: 8 << 20,
	}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("audit: a directory is required"))
	}
	if c.MaxFileSize < MaxLine {
		errs = append(errs, fmt.Errorf("audit: the file size bound must be at least %d bytes", MaxLine))
	}
	if c.MaxFiles < 1 {
		errs = append(errs, errors.New("audit: at least one file besides the current must be kept"))
	}
	if c.SyncEvery <= 0 || c.ApplyWait < 0 || c.ReadWait < 0 {
		errs = append(errs, errors.New("audit: the fsync interval must be positive, the waits not negative"))
	}
	if c.AppliedQueue < 1 || c.LocalQueue < 1 || c.MaxReaders < 1 {
		errs = append(errs, errors.New("audit: the queues and the readers must hold at least one"))
	}
	if c.ReadBudget < 2*MaxLine {
		errs = append(errs, fmt.Errorf("audit: a read's budget must be at least %d bytes", 2*MaxLine))
	}
	return errors.Join(errs...)
}

// Journal names: the records from the applied log, and this node's own.
const (
	appliedJournal = "applied"
	localJournal   = "local"
)

// Log is a node's audit trail: the applied journal, which the FSM feeds
// (Applied, Restored) on every node alike, and the local journal, which
// the registry feeds (Record) with what the node decided alone. Its
// methods are safe for concurrent use; Applied and Restored are called
// from one goroutine at a time, in log order. A nil *Log records nothing
// and reads nothing.
type Log struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	applied *journal
	local   *journal
	node    atomic.Pointer[string]
	nodeTag atomic.Pointer[string] // node's tag in cursors (see Cursor.Node)
	// secrets are the secrets this node holds in the clear, withheld
	// from every record (see Withhold).
	secrets atomic.Pointer[redact.Known]
	// last is the highest Raft index the applied journal holds a record
	// of: read from disk at Open, then kept by Applied and Restored on
	// the FSM goroutine. A record at or below it was written already.
	last atomic.Uint64

	// damageReported is the count of damaged lines last logged, at
	// damageLogged (under damageMu).
	damageReported atomic.Uint64
	damageMu       sync.Mutex
	damageLogged   time.Time

	// limit bounds the records each client network has written one by
	// one (limit.go); summarize writes its summaries.
	limit     *recordLimiter
	summaries chan struct{} // closed by Close: ends summarize
	closeOnce sync.Once

	readers chan struct{}
	// changed is closed and replaced after every write of either
	// journal: the wake-up of every read that follows.
	changedMu sync.Mutex
	changed   chan struct{}
}

// Errors of reads.
var (
	// ErrBusy means Config.MaxReaders reads are running, and none ended
	// within Config.ReadWait.
	ErrBusy = errors.New("audit: too many reads of the audit trail at once")
	// ErrBadQuery means a query is malformed (see Query.Validate).
	ErrBadQuery = errors.New("audit: bad query")
	// ErrCursorOtherNode is an ErrBadQuery: Query.After names another
	// node, or a place no read of this node's journals gave.
	ErrCursorOtherNode = fmt.Errorf("%w: after is a cursor of another server's audit trail (each server keeps its own); "+
		"read this one again without after", ErrBadQuery)
	// ErrCursorBeyond is an ErrBadQuery: Query.After is past the end of
	// this node's journals, a place no read of them gave.
	ErrCursorBeyond = fmt.Errorf("%w: after is beyond the end of this node's audit trail: a cursor of another node's, "+
		"or of this node's trail before it was begun anew; read again without after", ErrBadQuery)
)

// Open opens (or begins) the audit trail in cfg.Dir and starts its
// writers. It reads the highest Raft index the applied journal holds,
// so that the log Raft replays is recorded from there on, once.
func Open(cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	repaired, err := durable.PrivateDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if repaired {
		cfg.Logger.Warn("the audit trail's directory was open to others; made it the owner's alone (0700)", "dir", cfg.Dir)
	}
	l := &Log{cfg: cfg, log: cfg.Logger, now: cfg.Now, readers: make(chan struct{}, cfg.MaxReaders), changed: make(chan struct{}),
		limit: newRecordLimiter(cfg.Now), summaries: make(chan struct{})}
	if l.applied, err = openJournal(appliedJournal, cfg, cfg.AppliedQueue, l.wake); err != nil {
		return nil, err
	}
	if l.local, err = openJournal(localJournal, cfg, cfg.LocalQueue, l.wake); err != nil {
		l.applied.close(time.Second)
		return nil, err
	}
	last, err := l.highestIndex()
	if err != nil {
		l.Close()
		return nil, err
	}
	l.last.Store(last)
	go l.summarize()
	return l, nil
}

// summarize writes, every suppressEvery, a record for each network whose
// refusals were suppressed, until Close.
func (l *Log) summarize() {
	t := time.NewTicker(suppressEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.summaries:
			return
		}
		for _, r := range l.limit.summaries(l.Node()) {
			l.local.put(bound(r), 0)
		}
	}
}

// SetRoom tells the log how to know whether the data dir's disk has room
// for records of this node's own (refusals, admin reads): while room
// reports false they are dropped and counted, so that a stranger's
// refusals never take the room the catalog's writes keep. The server
// reports no room below twice the data dir's reserve, above the point
// where Raft's writes are refused. Records of the applied log are
// written whatever it says: they are the catalog's decisions, as bounded
// as its writes.
func (l *Log) SetRoom(room func() bool) {
	if l != nil {
		l.local.room.Store(&room)
	}
}

// highestIndex is the highest index a record of the applied journal
// holds, read from its newest records backwards.
func (l *Log) highestIndex() (uint64, error) {
	budget := int64(1 << 62)
	b := newBackward(l.applied, l.applied.snapshot(), &budget)
	defer b.close()
	for {
		line, ok, err := b.next()
		if err != nil || !ok {
			return 0, err
		}
		r, err := parseLine(line)
		if err != nil {
			l.applied.damaged.Add(1)
		} else if r.Index > 0 {
			return r.Index, nil
		}
	}
}

// SetNode names the node whose records this log keeps: local records
// carry it. Set once the node's ID is known, before the registry serves.
func (l *Log) SetNode(id string) {
	if l != nil {
		tag := nodeTag(id)
		l.node.Store(&id)
		l.nodeTag.Store(&tag)
	}
}

// tag is this node's tag in its cursors (see Cursor.Node); empty until
// SetNode.
func (l *Log) tag() string {
	if t := l.nodeTag.Load(); t != nil {
		return *t
	}
	return ""
}

// Node returns the ID SetNode gave, or "".
func (l *Log) Node() string {
	if l == nil {
		return ""
	}
	if p := l.node.Load(); p != nil {
		return *p
	}
	return ""
}

// Withhold names the secrets this node holds in the clear (the admin
// token, the metrics token): a record's field that holds one is
// withheld, whatever its form (see bound for the forms withheld anyway).
// It replaces the secrets named before.
func (l *Log) Withhold(secrets ...string) {
	if l == nil {
		return
	}
	k := redact.NewKnown(secrets...)
	l.secrets.Store(&k)
}

func (l *Log) known() redact.Known {
	if k := l.secrets.Load(); k != nil {
		return *k
	}
	return redact.Known{}
}

// Record queues r, a decision this node made alone (nothing of it went
// through Raft), for the local journal. It never blocks: when the queue
// is full, r is dropped and counted. An empty Time is now, an empty Node
// this node.
func (l *Log) Record(r Record) {
	if l == nil {
		return
	}
	if r.Time.IsZero() {
		r.Time = l.now()
	}
	if r.Node == "" {
		r.Node = l.Node()
	}
	if r.Caller != "" && !l.limit.allow(r.Caller, r.Action) {
		return // counted; its network's summary says how many
	}
	l.local.put(bound(withhold(l.known(), r)), 0)
}

// Applied records a command applied at index on this node (see
// FromCommand), once: a command at or below the highest index already
// recorded (the log replayed after a restart) is skipped. It is called
// by the FSM after each command, in log order; it waits at most
// Config.ApplyWait for room in the queue (see journal.put).
func (l *Log) Applied(index uint64, cmd catalog.Command, res catalog.Result) {
	if l == nil || index <= l.last.Load() {
		return
	}
	l.last.Store(index)
	if r, ok := fromCommand(index, cmd, res); ok {
		l.applied.put(bound(withhold(l.known(), r)), l.cfg.ApplyWait)
	}
}

// Restored is told that a snapshot replaced the catalog of node, which
// now stands at index (the catalog's: that of the last command the
// snapshot holds). When index is above the highest recorded, this node
// never applied the commands in between and has no record of them: the
// snapshot is itself a record (ActionSnapshotInstalled), and the log
// goes on from index. At a restart, the node's own latest snapshot is
// restored, at an index its records already reach.
func (l *Log) Restored(index uint64, node string) {
	if l == nil || index <= l.last.Load() {
		return
	}
	from := l.last.Swap(index)
	reason := fmt.Sprintf("a snapshot replaced the catalog at index %d (a backup restored, or the leader's snapshot installed); "+
		"this node's records of the log before it end at index %d", index, from)
	if from == 0 {
		reason = fmt.Sprintf("the catalog stands at index %d, from a snapshot, and this node's trail holds no record of the log "+
			"before it: a new member sent the leader's snapshot, or the trail's applied journal was removed", index)
		l.log.Info("the audit trail holds no record of the Raft log before the catalog's snapshot: if this server is not new, "+
			"its applied journal was removed", "index", index)
	}
	l.applied.put(bound(Record{Time: l.now(), Action: ActionSnapshotInstalled, Outcome: OutcomeOK, Node: node, Index: index,
		Reason: reason}), l.cfg.ApplyWait)
}

// StartedOver is told, before the node replays anything, that its Raft
// log starts over (muster server --force-new-cluster, after raft.db lost
// its state): the new log's indexes begin again below those the applied
// journal holds, and the records of its commands must not be taken for
// replays of records already written. The journal keeps its records;
// from here on a command is recorded at any index (the snapshot the node
// starts from, if any, is a snapshot_installed record first).
func (l *Log) StartedOver() {
	if l == nil {
		return
	}
	if from := l.last.Swap(0); from > 0 {
		l.log.Warn("the Raft log starts over (force-new-cluster): the audit trail records its commands from its first index again; "+
			"the records before hold the old log's indexes", "old_last_index", from)
	}
}

// Durable returns once every record Applied and Restored queued before
// the call is written and fsynced, or an error when ctx ends first. The
// FSM calls it before a snapshot is persisted: Raft replays only the
// entries after its latest snapshot, so the records of those before
// must be on disk by then.
func (l *Log) Durable(ctx context.Context) error {
	if l == nil {
		return nil
	}
	if !l.applied.durable(ctx.Done()) {
		return fmt.Errorf("audit: the applied journal is not on disk: %w", ctx.Err())
	}
	return nil
}

// Stats are a log's counters since it was opened.
type Stats struct {
	// Dropped counts the records lost because a queue was full (or the
	// log closed).
	Dropped uint64
	// WriteErrors counts failed writes and fsyncs (each retried).
	WriteErrors uint64
	// Damaged counts the lines reads found that are not records and
	// skipped (a disk's damage, an edit; a line a crash cut short at a
	// file's end is cut off when the journal is opened, and not
	// counted). A line is counted each time a read passes it.
	Damaged uint64
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	return Stats{Dropped: l.applied.dropped.Load() + l.local.dropped.Load(),
		WriteErrors: l.applied.errors.Load() + l.local.errors.Load(), Damaged: l.damaged()}
}

func (l *Log) damaged() uint64 { return l.applied.damaged.Load() + l.local.damaged.Load() }

// reportDamage logs, at most once a minute, that reads have passed
// damaged lines since it last did.
func (l *Log) reportDamage() {
	n := l.damaged()
	if n == l.damageReported.Load() {
		return
	}
	now := l.now()
	l.damageMu.Lock()
	defer l.damageMu.Unlock()
	if now.Sub(l.damageLogged) < time.Minute || n == l.damageReported.Load() {
		return
	}
	l.damageLogged = now
	l.damageReported.Store(n)
	l.log.Warn("the audit trail holds lines that are not records (a disk's damage, or an edit); reads skip them",
		"dir", l.cfg.Dir, "damaged_lines_passed", n)
}

// Changed returns a channel closed at the next write of either journal.
func (l *Log) Changed() <-chan struct{} {
	if l == nil {
		return nil
	}
	l.changedMu.Lock()
	defer l.changedMu.Unlock()
	return l.changed
}

func (l *Log) wake() {
	l.changedMu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.changedMu.Unlock()
}

// Close writes and fsyncs what the queues hold (within a few seconds)
// and closes the journals. Records given after Close are dropped.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.closeOnce.Do(func() { close(l.summaries) })
	return errors.Join(l.applied.close(5*time.Second), l.local.close(5*time.Second))
}
