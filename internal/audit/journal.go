package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/internal/durable"
)

// A journal is one sequence of files of JSON lines, NAME-NNNNNNNN.jsonl
// (NNNNNNNN counting up from 1), the newest of which is being appended
// to. Records reach it through a bounded queue; one goroutine (run)
// owns the open file: it writes each batch as soon as it is queued, so
// that a kill of the process loses only what the queue still held, and
// fsyncs at least every Config.SyncEvery, or at once when Durable asks.
// When the current file would pass Config.MaxFileSize it is closed and
// a new one begun, and files beyond the newest Config.MaxFiles besides
// the current one are deleted.
type journal struct {
	name      string
	dir       string
	maxSize   int64
	keep      int
	syncEvery time.Duration
	log       *slog.Logger
	// wake is called after every write, for readers that follow.
	wake func()

	q       *queue
	syncReq chan struct{} // one pending request to fsync now
	stop    chan struct{}
	done    chan struct{}
	closed  atomic.Bool

	// accepted counts the records queued; synced those written and
	// fsynced, in queue order: every record accepted before synced
	// reached n is on disk once synced >= n.
	accepted atomic.Uint64
	synced   atomic.Uint64
	dropped  atomic.Uint64
	errors   atomic.Uint64
	// damaged counts the lines reads found that are not records (a
	// disk's damage, an edit) and skipped.
	damaged atomic.Uint64
	// room, when set, reports whether the disk has room for this
	// journal's records; while it does not, they are dropped and counted
	// (see Log.SetRoom).
	room    atomic.Pointer[func() bool]
	roomLog time.Time // when dropping for room was last logged (run's)
	// overflowing is set when a record waited for room in vain; until
	// the queue has emptied to half, no record waits (see put).
	overflowing atomic.Bool
	// syncedCh is closed and replaced each time synced grows.
	syncMu   sync.Mutex
	syncedCh chan struct{}

	// files are the journal's files for readers, oldest first, with the
	// bytes of whole lines each holds (the last one grows). Under mu.
	mu    sync.RWMutex
	files []fileInfo
	// firstTimes caches the time of each file's first record (a file's
	// first line never changes), for a read's search by time.
	firstTimes sync.Map // uint64 → time.Time

	// Owned by run (and by open before it starts).
	f        *os.File
	seq      uint64
	size     int64
	written  uint64 // records written to files, in queue order
	unsynced bool
	lastSync time.Time
	errLog   time.Time // when a write error was last logged
}

// fileInfo is one file of a journal as readers see it.
type fileInfo struct {
	seq  uint64
	size int64
}

// fileName is the name of a journal's file number seq.
func fileName(name string, seq uint64) string {
	return fmt.Sprintf("%s-%08d.jsonl", name, seq)
}

// parseFileName returns the number of a file of journal name, and
// false for any other file.
func parseFileName(name, file string) (uint64, bool) {
	s, ok := strings.CutPrefix(file, name+"-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".jsonl")
	if !ok || len(s) < 8 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n > 0
}

// path is the path of file number seq.
func (j *journal) path(seq uint64) string { return filepath.Join(j.dir, fileName(j.name, seq)) }

// openJournal opens (or begins) the journal name in cfg.Dir, cutting a
// line the last write left unfinished, and starts its writer.
func openJournal(name string, cfg Config, queue int, wake func()) (*journal, error) {
	j := &journal{name: name, dir: cfg.Dir, maxSize: cfg.MaxFileSize, keep: cfg.MaxFiles, syncEvery: cfg.SyncEvery,
		log: cfg.Logger.With("journal", name), wake: wake,
		q: newQueue(queue), syncReq: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		syncedCh: make(chan struct{})}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var seqs []uint64
	for _, e := range entries {
		if n, ok := parseFileName(name, e.Name()); ok && e.Type().IsRegular() {
			seqs = append(seqs, n)
		}
	}
	slices.Sort(seqs)
	for _, n := range seqs {
		p := j.path(n)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if _, err := durable.PrivateFile(p); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		j.files = append(j.files, fileInfo{seq: n, size: fi.Size()})
	}
	if len(j.files) == 0 {
		if err := j.begin(1); err != nil {
			return nil, err
		}
	} else {
		last := &j.files[len(j.files)-1]
		f, err := os.OpenFile(j.path(last.seq), os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		whole, err := wholeLines(f, last.size)
		if err == nil && whole != last.size && last.size-whole <= 2*MaxLine {
			// A record whole but for its newline (the crash came
			// between them; a power loss may leave zero bytes after it)
			// is kept: its newline is added, and what follows is cut
			// off below.
			tail := make([]byte, last.size-whole)
			if _, rerr := f.ReadAt(tail, whole); rerr == nil {
				rec := bytes.TrimRight(tail, "\x00")
				if _, perr := parseLine(rec); perr == nil {
					end := whole + int64(len(rec))
					if _, err = f.WriteAt([]byte{'\n'}, end); err == nil {
						err = f.Sync()
						whole = end + 1
						if whole > last.size {
							last.size = whole
						}
					}
				}
			}
		}
		if err == nil && whole != last.size {
			// A crash cut the last line short: what is left of it is
			// no record, and the next one must begin a line.
			j.log.Warn("cut off an unfinished last line of the audit journal", "file", f.Name(), "bytes", last.size-whole)
			if err = f.Truncate(whole); err == nil {
				err = f.Sync()
			}
		}
		if err == nil {
			_, err = f.Seek(whole, io.SeekStart)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: %w", err)
		}
		j.f, j.seq, j.size, last.size = f, last.seq, whole, whole
		j.prune()
	}
	j.lastSync = time.Now()
	go j.run()
	return j, nil
}

// wholeLines returns the length of f's first size bytes up to the end of
// their last newline: what whole lines hold.
func wholeLines(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// begin creates file number seq (0600), makes it current and durable in
// its directory, and publishes it. Called by open and run.
func (j *journal) begin(seq uint64) error {
	f, err := os.OpenFile(j.path(seq), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	err = f.Chmod(0o600) // whatever the umask
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("audit: %w", err)
	}
	j.f, j.seq, j.size = f, seq, 0
	j.mu.Lock()
	j.files = append(j.files, fileInfo{seq: seq})
	j.mu.Unlock()
	return nil
}

// syncDir fsyncs dir, so that a file created in it stays after a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// prune deletes the oldest files beyond the current one and keep more.
func (j *journal) prune() {
	j.mu.Lock()
	var gone []uint64
	for len(j.files) > j.keep+1 {
		gone = append(gone, j.files[0].seq)
		j.files = j.files[1:]
	}
	j.mu.Unlock()
	for _, seq := range gone {
		j.firstTimes.Delete(seq)
		if err := os.Remove(j.path(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			j.log.Error("could not delete an old audit file", "file", j.path(seq), "err", err)
		}
	}
}

// snapshot returns the journal's files as readers may read them now.
func (j *journal) snapshot() []fileInfo {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return slices.Clone(j.files)
}

// put queues r. When the queue is full it waits up to wait for room,
// unless a record has already waited in vain since the queue was last
// half empty; then r is dropped and counted. It reports whether r was
// queued.
func (j *journal) put(r Record, wait time.Duration) bool {
	if j.closed.Load() {
		j.dropped.Add(1)
		return false
	}
	ok, room := j.q.push(r)
	if ok {
		j.accepted.Add(1)
		return true
	}
	if wait > 0 && !j.overflowing.Load() {
		t := time.NewTimer(wait)
		defer t.Stop()
	retry:
		for {
			select {
			case <-room:
				if ok, room = j.q.push(r); ok {
					j.accepted.Add(1)
					return true
				}
			case <-t.C:
				j.overflowing.Store(true)
				break retry
			}
		}
	}
	if j.dropped.Add(1) == 1 || j.dropped.Load()%10000 == 0 {
		j.log.Warn("the audit journal's queue is full: records are dropped (their count is in /v1/audit's dropped)", "dropped", j.dropped.Load())
	}
	return false
}

// durable waits until every record queued before the call is written
// and fsynced, or done is closed (then it returns false).
func (j *journal) durable(done <-chan struct{}) bool {
	want := j.accepted.Load()
	for {
		j.syncMu.Lock()
		ch := j.syncedCh
		j.syncMu.Unlock()
		if j.synced.Load() >= want {
			return true
		}
		select {
		case j.syncReq <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-done:
			return false
		case <-j.done:
			return j.synced.Load() >= want
		}
	}
}

// maxBatch bounds the records written at once.
const maxBatch = 1024

// run is the writer: it owns the open file. It ends once close has
// stopped it and what was queued is written.
func (j *journal) run() {
	defer close(j.done)
	tick := time.NewTicker(j.syncEvery)
	defer tick.Stop()
	var (
		batch    []Record
		buf      []byte
		wantSync bool
	)
	for {
		stopping, ticked := false, false
		select {
		case <-j.q.ready:
		case <-j.syncReq:
			wantSync = true
		case <-tick.C:
			ticked = true // what was written since the last fsync waited less than SyncEvery
		case <-j.stop:
			stopping = true
		}
		batch = j.q.take(batch, maxBatch-len(batch))
		select {
		case <-j.syncReq:
			wantSync = true
		default:
		}
		if len(batch) > 0 && !j.hasRoom() {
			// Counted as handled, so that no one waits for them.
			j.dropped.Add(uint64(len(batch)))
			j.written += uint64(len(batch))
			if !j.unsynced { // else the next fsync counts them
				j.synced.Store(j.written)
			}
			if now := time.Now(); now.Sub(j.roomLog) >= time.Minute {
				j.roomLog = now
				j.log.Warn("the data dir's disk is nearly full: this journal's records are dropped (and counted), so that they never take the room the catalog's writes keep",
					"dropped", j.dropped.Load())
			}
			batch = batch[:0]
		}
		if len(batch) > 0 {
			var err error
			if buf, err = j.write(buf[:0], batch); err != nil {
				if stopping {
					j.dropped.Add(uint64(len(batch)))
					batch = batch[:0]
				} else {
					j.failed(err)
					select { // try again in a while; the queue fills meanwhile
					case <-time.After(time.Second):
					case <-j.stop:
						stopping = true
					}
					continue
				}
			} else {
				batch = batch[:0]
			}
		}
		if j.overflowing.Load() && j.q.len() < j.q.max/2 {
			j.overflowing.Store(false)
		}
		if j.unsynced && (wantSync || stopping || ticked || time.Since(j.lastSync) >= j.syncEvery) {
			if err := j.sync(); err != nil {
				j.failed(err)
			}
			wantSync = false
		}
		if stopping && j.q.len() == 0 {
			if j.f != nil {
				if err := j.f.Close(); err != nil {
					j.failed(err)
				}
				j.f = nil
			}
			return
		}
	}
}

// hasRoom reports whether the disk has room for records (true when no
// one said how to tell).
func (j *journal) hasRoom() bool {
	f := j.room.Load()
	return f == nil || (*f)()
}

// write appends the batch to the current file, beginning a new one
// first when the batch would take it past the size bound, and tells
// readers. A failed write is cut off the file, so that the next one
// begins a line. It returns the buffer it used.
func (j *journal) write(buf []byte, batch []Record) ([]byte, error) {
	for _, r := range batch {
		var err error
		if buf, err = appendLine(buf, r); err != nil {
			j.failed(err) // cannot happen with strings; the record is lost
		}
	}
	if j.f == nil { // a rotation failed to begin the next file: again
		if err := j.begin(j.seq + 1); err != nil {
			return buf, err
		}
	}
	if j.size > 0 && j.size+int64(len(buf)) > j.maxSize {
		if err := j.rotate(); err != nil {
			return buf, err
		}
	}
	if _, err := j.f.Write(buf); err != nil {
		if terr := j.f.Truncate(j.size); terr == nil {
			_, _ = j.f.Seek(j.size, io.SeekStart)
		}
		return buf, fmt.Errorf("audit: write %s: %w", j.f.Name(), err)
	}
	j.size += int64(len(buf))
	j.written += uint64(len(batch))
	j.unsynced = true
	j.mu.Lock()
	j.files[len(j.files)-1].size = j.size
	j.mu.Unlock()
	j.wake()
	return buf, nil
}

// rotate fsyncs and closes the current file and begins the next, then
// deletes the files beyond the bound.
func (j *journal) rotate() error {
	if err := j.sync(); err != nil {
		return err
	}
	if err := j.f.Close(); err != nil {
		return fmt.Errorf("audit: close %s: %w", j.path(j.seq), err)
	}
	j.f = nil
	if err := j.begin(j.seq + 1); err != nil {
		return err
	}
	j.prune()
	return nil
}

// sync fsyncs the current file and counts what it made durable.
func (j *journal) sync() error {
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("audit: fsync %s: %w", j.f.Name(), err)
	}
	j.unsynced = false
	j.lastSync = time.Now()
	j.synced.Store(j.written)
	j.syncMu.Lock()
	close(j.syncedCh)
	j.syncedCh = make(chan struct{})
	j.syncMu.Unlock()
	return nil
}

// failed counts a write or fsync error and logs it, at most every 10 s.
func (j *journal) failed(err error) {
	j.errors.Add(1)
	if now := time.Now(); now.Sub(j.errLog) >= 10*time.Second {
		j.errLog = now
		j.log.Error("writing the audit journal failed; records wait in its queue, and are dropped (and counted) once it is full", "err", err, "errors", j.errors.Load())
	}
}

// close stops the writer once what is queued is written and fsynced, or
// after timeout, and closes the file.
func (j *journal) close(timeout time.Duration) error {
	if j.closed.Swap(true) {
		<-j.done
		return nil
	}
	close(j.stop)
	select {
	case <-j.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("audit: the %s journal's writer did not finish within %s", j.name, timeout)
	}
}
