//go:build linux

package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/musterhq/muster/internal/catalog"
)

// residentKB is the resident size, in kB, of this process's mappings of
// the file at path (by inode), from /proc/self/smaps.
func residentKB(t *testing.T, path string) int {
	t.Helper()
	id, ok := fileIDOf(path)
	if !ok {
		t.Fatalf("no identity for %s", path)
	}
	ino := id.ino
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	kb, in := 0, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			i, _ := strconv.ParseUint(f[4], 10, 64)
			in = i == ino
			continue
		}
		if in && len(f) >= 2 && f[0] == "Rss:" {
			n, _ := strconv.Atoi(f[1])
			kb += n
		}
	}
	return kb
}

// openLog opens a raft.db in a new data dir as a node does, wrapped as
// the node wraps it.
func openLog(t *testing.T) (contiguousLog, string) {
	t.Helper()
	dir := t.TempDir()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	st, err := openStore(Config{DataDir: dir, Logger: log}, snaps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.store.Close() })
	path := filepath.Join(dir, raftDBFile)
	return contiguousLog{BoltStore: st.store, guard: newWriteGuard(path, log)}, path
}

// entry is log entry i, its data telling its index.
func entry(i uint64) *raft.Log {
	data := make([]byte, 700)
	for j := 0; j+8 <= len(data); j += 8 {
		binary.BigEndian.PutUint64(data[j:], i)
	}
	return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data}
}

func storeRange(t *testing.T, l contiguousLog, from, to uint64) {
	t.Helper()
	batch := make([]*raft.Log, 0, 64)
	for i := from; i <= to; i++ {
		batch = append(batch, entry(i))
		if len(batch) == cap(batch) || i == to {
			if err := l.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

func checkRange(t *testing.T, l contiguousLog, from, to uint64) {
	t.Helper()
	var got raft.Log
	for i := from; i <= to; i++ {
		if err := l.GetLog(i, &got); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if want := entry(i); got.Index != i || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("entry %d reads back as index %d with other data", i, got.Index)
		}
	}
}

// TestLog_CompactionDropsResidentPages: the log's compaction reads every
// page of the entries it deletes through bbolt's mapping, which used to
// keep them in the process's resident set (tens of MB after a bulk
// load). After a DeleteRange the mapping holds next to nothing, and
// every entry kept, and every one stored after, reads back as written.
func TestLog_CompactionDropsResidentPages(t *testing.T) {
	l, path := openLog(t)
	const n = 30000
	storeRange(t, l, 1, n)
	if err := l.DeleteRange(1, n-3000); err != nil {
		t.Fatal(err)
	}
	if kb := residentKB(t, path); kb > 1024 {
		t.Fatalf("raft.db's mapping holds %d kB resident after the compaction; want it dropped", kb)
	}
	if g := l.guard.shed; g.times != 1 || g.err != nil || g.ranges < 1 {
		t.Fatalf("%d drops, the last over %d mappings with error %v; want 1 over at least one, without error", g.times, g.ranges, g.err)
	}
	checkRange(t, l, n-2999, n)
	storeRange(t, l, n+1, n+5000)
	checkRange(t, l, n-2999, n+5000)
	if first, err := l.FirstIndex(); err != nil || first != n-2999 {
		t.Fatalf("first index %d (%v), want %d", first, err, n-2999)
	}
	t.Logf("resident after reading the kept entries back and storing more: %d kB", residentKB(t, path))
}

// TestLog_DropsRaceWithNothing: entries stored by one goroutine, as
// Raft's leader loop does, compactions by another, as its snapshots do
// (each dropping the resident pages), and reads of the latest entries by
// a third; every entry read is the one written. Run with -race.
func TestLog_DropsRaceWithNothing(t *testing.T) {
	l, _ := openLog(t)
	const n = 20000
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		last  uint64
		errs  = make(chan error, 3)
		wrote = make(chan struct{}) // closed when the writer ends, however
	)
	latest := func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		defer close(wrote)
		for i := uint64(1); i <= n; i += 64 {
			batch := make([]*raft.Log, 0, 64)
			for j := i; j < i+64 && j <= n; j++ {
				batch = append(batch, entry(j))
			}
			if err := l.StoreLogs(batch); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			last = batch[len(batch)-1].Index
			mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for done := uint64(0); ; runtime.Gosched() {
			select {
			case <-wrote:
				return
			default:
			}
			if upto := latest(); upto > done+2000 {
				if err := l.DeleteRange(done+1, upto-1000); err != nil {
					errs <- err
					return
				}
				if err := l.guard.shed.err; err != nil {
					errs <- fmt.Errorf("dropping the pages: %w", err)
					return
				}
				done = upto - 1000
			}
		}
	}()
	go func() {
		defer wg.Done()
		var got raft.Log
		for ; ; runtime.Gosched() {
			select {
			case <-wrote:
				return
			default:
			}
			i := latest()
			if i == 0 {
				continue
			}
			if err := l.GetLog(i, &got); err != nil || !bytes.Equal(got.Data, entry(i).Data) {
				errs <- fmt.Errorf("entry %d: %v", i, err)
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if l.guard.shed.times == 0 {
		t.Fatal("no compaction dropped the resident pages")
	}
	checkRange(t, l, n-999, n)
}

// TestLog_WritesWaitForTheGuard: every way the node writes raft.db
// (Raft's log and stable store: StoreLog, StoreLogs, DeleteRange, Set,
// SetUint64) waits while the guard is held, as a drop of the pages holds
// it: a write inherited from the store unwrapped could map the file
// again in the middle of a drop.
func TestLog_WritesWaitForTheGuard(t *testing.T) {
	l, _ := openLog(t)
	storeRange(t, l, 1, 100)
	var s raft.StableStore = l
	var ls raft.LogStore = l
	writes := map[string]func() error{
		"StoreLog":    func() error { return ls.StoreLog(entry(101)) },
		"StoreLogs":   func() error { return ls.StoreLogs([]*raft.Log{entry(102)}) },
		"DeleteRange": func() error { return ls.DeleteRange(1, 10) },
		"Set":         func() error { return s.Set([]byte("k"), []byte("v")) },
		"SetUint64":   func() error { return s.SetUint64([]byte("n"), 7) },
	}
	for name, write := range writes {
		l.guard.mu.Lock()
		done := make(chan error, 1)
		go func() { done <- write() }()
		select {
		case err := <-done:
			l.guard.mu.Unlock()
			t.Fatalf("%s wrote while the guard was held (%v)", name, err)
		case <-time.After(50 * time.Millisecond):
		}
		l.guard.mu.Unlock()
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if v, err := l.GetUint64([]byte("n")); err != nil || v != 7 {
		t.Fatalf("SetUint64 reads back %d, %v", v, err)
	}
}

// TestNode_ShedResident: a node at rest after a burst of writes keeps
// the pages of the entries written since its last compaction resident
// until the next one; ShedResident drops them, every write after it
// commits, the catalog reopens whole, and after Close it does nothing.
func TestNode_ShedResident(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.RaftAddr = ""
	cfg.SnapshotThreshold = 1 << 20 // no compaction during the burst
	n, _ := openReady(t, cfg)
	path := filepath.Join(dir, raftDBFile)
	mustApply(t, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc"}}})
	const burst = 3000
	var wg sync.WaitGroup
	errs := make(chan error, burst)
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < burst; i += 32 {
				if res, err := n.Apply(context.Background(), registerCmd(fmt.Sprintf("i%05d", i), "svc", 1000+i)); err != nil || res.Err != nil {
					errs <- fmt.Errorf("register %d: %v %v", i, err, res.Err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	before := residentKB(t, path)
	if before < 256 {
		t.Fatalf("raft.db's mapping holds only %d kB resident after %d writes; the test no longer sees what it drops", before, burst)
	}
	n.ShedResident()
	if err := n.guard.shed.err; err != nil {
		t.Fatal(err)
	}
	if after := residentKB(t, path); after > 64 {
		t.Fatalf("raft.db's mapping holds %d kB resident after ShedResident (%d kB before); want it dropped", after, before)
	}
	t.Logf("raft.db resident: %d kB after the burst, dropped", before)
	mustApply(t, n, registerCmd("after", "svc", 9999))
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n.ShedResident() // closed: nothing to drop, nothing to break

	n2, cat := openReady(t, cfg)
	defer n2.Close()
	if got := len(cat.Instances()); got != burst+1 {
		t.Fatalf("reopened with %d instances, want %d", got, burst+1)
	}
}
