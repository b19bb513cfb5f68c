package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/musterhq/muster/internal/catalog"
)

// storeFixture is a data dir whose raft.db a node wrote: a key, 120
// instances registered, some deregistered, a snapshot in the middle; so
// its log spans many leaf pages under branch pages, and bbolt's free list
// is not empty.
type storeFixture struct {
	dir  string // the pristine data dir
	db   []byte // its raft.db
	want []byte // the catalog it holds, as a snapshot
	// values are the byte ranges of log entries' values in db (every
	// copy, live or stale). A change inside one can leave the file's
	// structure intact and change a command: checksums in the command
	// encoding are the catalog's job, not this check's.
	values [][2]int
	pages  map[uint64]string // page ID → bbolt's page type
	ps     int
}

func fastConfig(tb testing.TB, dir string) Config {
	cfg := testConfig(tb, dir)
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 20*time.Millisecond, 20*time.Millisecond
	return cfg
}

func buildStoreFixture(tb testing.TB) *storeFixture {
	tb.Helper()
	dir := tb.TempDir()
	n, cat := openReady(tb, fastConfig(tb, dir))
	mustApply(tb, n, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k1", SecretHash: hash("s"), Services: []string{"svc*"}}})
	for i := range 120 {
		mustApply(tb, n, registerCmd(fmt.Sprintf("inst%03d", i), fmt.Sprintf("svc%d", i%7), 1000+i))
		if i == 60 {
			if err := n.Snapshot(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	for i := 0; i < 120; i += 9 {
		mustApply(tb, n, catalog.Command{Op: catalog.OpDeregister, ID: fmt.Sprintf("inst%03d", i)})
	}
	var want bytesBuffer
	cat.Snapshot().WriteTo(&want)
	if err := n.Close(); err != nil {
		tb.Fatal(err)
	}
	db, err := os.ReadFile(filepath.Join(dir, raftDBFile))
	if err != nil {
		tb.Fatal(err)
	}
	fx := &storeFixture{dir: dir, db: db, want: want, pages: map[uint64]string{}}

	// The pages and values, read through bbolt from a copy of the
	// healthy file.
	cp := filepath.Join(tb.TempDir(), "copy.db")
	os.WriteFile(cp, db, 0o600)
	bdb, err := bbolt.Open(cp, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer bdb.Close()
	fx.ps = bdb.Info().PageSize
	err = bdb.View(func(tx *bbolt.Tx) error {
		for id := 0; ; id++ {
			info, err := tx.Page(id)
			if err != nil {
				return err
			}
			if info == nil {
				break
			}
			fx.pages[uint64(id)] = info.Type
		}
		return tx.Bucket([]byte("logs")).ForEach(func(k, v []byte) error {
			for from := 0; ; {
				i := bytes.Index(db[from:], v)
				if i < 0 {
					break
				}
				fx.values = append(fx.values, [2]int{from + i, from + i + len(v)})
				from += i + 1
			}
			return nil
		})
	})
	if err != nil {
		tb.Fatal(err)
	}
	return fx
}

// pagesOf returns the IDs of pages of a type, in order.
func (fx *storeFixture) pagesOf(typ string) []uint64 {
	var ids []uint64
	for id := uint64(0); id < uint64(len(fx.pages)); id++ {
		if fx.pages[id] == typ {
			ids = append(ids, id)
		}
	}
	return ids
}

// inValue reports whether any of the changed byte ranges touches a log
// entry's value.
func (fx *storeFixture) inValue(changed [][2]int) bool {
	for _, c := range changed {
		for _, v := range fx.values {
			if c[0] < v[1] && v[0] < c[1] {
				return true
			}
		}
	}
	return false
}

// outcome of opening a damaged copy.
type outcome int

const (
	refused outcome = iota // Open failed with the clear error
	opened                 // Open succeeded, with the right catalog (or a halt on a damaged command)
)

// openDamaged opens a copy of the fixture's data dir whose raft.db is db,
// and checks the rule: Open either fails with one clear line (ErrDamaged
// or ErrStateLost, naming raft.db) found by a check rather than by a
// recovered panic, or opens and serves the catalog the node wrote.
// changed says which bytes were damaged: if they touch a log entry's
// value, the catalog may differ (or the node may halt on the command).
func (fx *storeFixture) openDamaged(t *testing.T, db []byte, changed [][2]int) outcome {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(dir, os.DirFS(fx.dir)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, raftDBFile)
	if err := os.WriteFile(path, db, 0o600); err != nil {
		t.Fatal(err)
	}
	cat := catalog.New()
	n, err := Open(fastConfig(t, dir), cat)
	if err != nil {
		msg := err.Error()
		switch {
		case !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrStateLost):
			t.Fatalf("Open failed with an error that is not ErrDamaged or ErrStateLost: %v", err)
		case errors.Is(err, errPanicked):
			t.Fatalf("damage was found by a recovered panic, not by the check: %v", err)
		case strings.Contains(msg, "\n") || !strings.Contains(msg, path) || !strings.Contains(msg, "force-new-cluster"):
			t.Fatalf("the error is not one line naming %s and the remedy: %q", path, msg)
		}
		t.Log(msg)
		return refused
	}
	defer n.Close()
	ready, _ := n.Ready()
	lenient := fx.inValue(changed)
	select {
	case <-ready:
	case <-n.Done():
		if !lenient {
			t.Fatalf("the node halted, though no log entry's value was damaged: %v", n.Err())
		}
		return opened
	case <-time.After(10 * time.Second):
		if !lenient {
			t.Fatal("the node opened but never became ready")
		}
		return opened
	}
	var got bytesBuffer
	cat.Snapshot().WriteTo(&got)
	if !lenient && !bytes.Equal(got, fx.want) {
		t.Fatalf("opened with a catalog other than the one written:\n got %s\nwant %s", got, fx.want)
	}
	return opened
}

// field is a field of a page, by its offset, and how a test changes it.
type field struct {
	name string
	off  int
	x    byte
}

// xor returns a copy of db with the byte at off changed by x.
func xor(db []byte, off int, x byte) ([]byte, [][2]int) {
	b := bytes.Clone(db)
	b[off] ^= x
	return b, [][2]int{{off, off + 1}}
}

// TestOpen_DamagedRaftDB: raft.db files damaged in many ways: bytes
// changed in either meta page, in branch, leaf and free-list pages
// (headers, element headers, keys), the file cut at many lengths, and
// random garbage written at random offsets for many seeds. Each either
// opens with the catalog the node wrote, or is refused with the clear
// error; none panics or crashes the process (which would fail the whole
// test binary). The damage that must be refused is marked so.
func TestOpen_DamagedRaftDB(t *testing.T) {
	fx := buildStoreFixture(t)
	ps := fx.ps
	type damage struct {
		name    string
		db      []byte
		changed [][2]int
		must    bool // must be refused
	}
	var cases []damage
	add := func(name string, must bool, db []byte, changed [][2]int) {
		cases = append(cases, damage{name, db, changed, must})
	}

	// Meta pages: every field under the checksum, and the checksum.
	// Either page failing validation is refused (bbolt would fall back to
	// the other, possibly a transaction older). The page header and the
	// rest of the page are not read by bbolt.
	for page := range 2 {
		for _, f := range []struct {
			name string
			off  int
		}{{"magic", 0}, {"version", 4}, {"page size", 8}, {"flags", 12}, {"root", 16}, {"freelist", 32}, {"pgid", 40}, {"txid", 48}, {"checksum", 56}} {
			db, ch := xor(fx.db, page*ps+pageHeaderSize+f.off, 0x01)
			add(fmt.Sprintf("meta %d %s", page, f.name), true, db, ch)
		}
		db, ch := xor(fx.db, page*ps+1000, 0xff)
		add(fmt.Sprintf("meta %d unused bytes", page), false, db, ch)
	}

	// Branch and leaf pages: the header and the first element's header
	// break the page's layout or references; keys and values may or may
	// not.
	branches, leaves := fx.pagesOf("branch"), fx.pagesOf("leaf")
	if len(branches) == 0 || len(leaves) < 3 {
		t.Fatalf("fixture has %d branch and %d leaf pages; the test needs a deeper tree", len(branches), len(leaves))
	}
	for _, id := range append(branches, leaves[0], leaves[len(leaves)/2], leaves[len(leaves)-1]) {
		base := int(id) * ps
		typ := fx.pages[id]
		fields := []field{{"id", 0, 0x01}, {"flags", 8, 0x03}, {"count", 10, 0x01}, {"overflow", 12, 0x01}}
		if count := binary.NativeEndian.Uint16(fx.db[base+10:]); count >= 2 {
			if typ == "branch" {
				fields = append(fields, field{"element pos", 16, 0x01}, field{"element ksize", 20, 0x01}, field{"element child", 24, 0x01})
			} else {
				fields = append(fields, field{"element pos", 20, 0x01}, field{"element ksize", 24, 0x01}, field{"element vsize", 28, 0x01})
			}
		}
		for _, f := range fields {
			db, ch := xor(fx.db, base+f.off, f.x)
			add(fmt.Sprintf("%s page %d %s", typ, id, f.name), true, db, ch)
		}
		pos := int(binary.NativeEndian.Uint32(fx.db[base+16:]))
		if typ == "leaf" {
			pos = int(binary.NativeEndian.Uint32(fx.db[base+20:]))
		}
		for _, k := range []int{0, 7} {
			db, ch := xor(fx.db, base+16+pos+k, 0x10)
			add(fmt.Sprintf("%s page %d key byte %d", typ, id, k), false, db, ch)
		}
		db, ch := xor(fx.db, base+ps-1, 0xff)
		add(fmt.Sprintf("%s page %d last byte", typ, id), false, db, ch)
	}

	// The free list: its count and the IDs it holds.
	for _, id := range fx.pagesOf("freelist") {
		base := int(id) * ps
		if binary.NativeEndian.Uint16(fx.db[base+10:]) == 0 {
			continue
		}
		for _, f := range []struct {
			name string
			off  int
		}{{"count", 10}, {"first id", 16}} {
			db, ch := xor(fx.db, base+f.off, 0x01)
			add(fmt.Sprintf("freelist page %d %s", id, f.name), true, db, ch)
		}
	}

	// Cut short.
	hwm := int(binary.NativeEndian.Uint64(fx.db[pageHeaderSize+40:]))
	if m1 := int(binary.NativeEndian.Uint64(fx.db[ps+pageHeaderSize+40:])); m1 > hwm {
		hwm = m1
	}
	for _, size := range []int{0, 100, ps, ps + 100, 2 * ps, len(fx.db) / 3, len(fx.db) / 2, hwm*ps - 1} {
		add(fmt.Sprintf("cut to %d bytes", size), true, bytes.Clone(fx.db[:size]), [][2]int{{size, len(fx.db)}})
	}
	add("cut after its last page", false, bytes.Clone(fx.db[:hwm*ps]), nil)

	// Random garbage at random offsets.
	seeds := 48
	if testing.Short() {
		seeds = 8
	}
	if s, err := strconv.Atoi(os.Getenv("MUSTER_CORRUPTION_SEEDS")); err == nil {
		seeds = s
	}
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 8))
		db := bytes.Clone(fx.db)
		var changed [][2]int
		for range 1 + rng.IntN(3) {
			off, n := rng.IntN(len(db)), 1+rng.IntN(32)
			end := min(off+n, len(db))
			for i := off; i < end; i++ {
				db[i] = byte(rng.UintN(256))
			}
			changed = append(changed, [2]int{off, end})
		}
		add(fmt.Sprintf("garbage seed %d", seed), false, db, changed)
	}

	counts := map[outcome]int{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := fx.openDamaged(t, c.db, c.changed)
			counts[got]++
			if c.must && got != refused {
				t.Fatal("this damage must be refused, and the node opened")
			}
		})
	}
	t.Logf("%d cases: %d refused, %d opened", len(cases), counts[refused], counts[opened])
}

// FuzzCheckStore: whatever bytes raft.db holds, the checks find the
// damage before bbolt or raft-boltdb trip on it: checkStore and checkLog
// report an error or nil, and never one that a recovered panic or fault
// produced. The corpus is the fixture's raft.db with a few bytes
// replaced at an offset.
func FuzzCheckStore(f *testing.F) {
	fx := buildStoreFixture(f)
	for _, seed := range []struct {
		off  uint32
		junk []byte
	}{
		{0, nil}, {16 + 40, []byte{0xff}}, {uint32(fx.ps) + 16 + 56, []byte{1}},
		{uint32(2*fx.ps + 10), []byte{0x7f}}, {uint32(len(fx.db) / 2), []byte("garbage garbage garbage")},
	} {
		f.Add(seed.off, seed.junk)
	}
	dir := f.TempDir()
	var n int
	f.Fuzz(func(t *testing.T, off uint32, junk []byte) {
		db := bytes.Clone(fx.db)
		if int(off) < len(db) {
			copy(db[off:], junk)
		}
		n++
		path := filepath.Join(dir, fmt.Sprintf("raft-%d.db", n))
		if err := os.WriteFile(path, db, 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)
		if err := checkStore(path, time.Second); err != nil {
			if errors.Is(err, errPanicked) {
				t.Fatalf("checkStore: %v", err)
			}
			return
		}
		store, err := raftboltdb.New(raftboltdb.Options{Path: path})
		if err != nil {
			t.Fatalf("checkStore passed a file raft-boltdb cannot open: %v", err)
		}
		defer store.Close()
		if _, err := checkLog(store, nil); errors.Is(err, errPanicked) {
			t.Fatalf("checkLog: %v", err)
		}
	})
}

// TestCheckBolt_HealthyFiles: the structure check passes every file
// bbolt wrote, including ones from a long life of writes, snapshots and
// log compaction, and agrees with bbolt's own Tx.Check on them.
func TestCheckBolt_HealthyFiles(t *testing.T) {
	check := func(t *testing.T, path string) {
		t.Helper()
		if err := checkBoltFile(path); err != nil {
			t.Fatalf("a healthy file was found damaged: %v", err)
		}
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.View(func(tx *bbolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		}); err != nil {
			t.Fatalf("bbolt's own check fails on the file: %v", err)
		}
	}
	t.Run("legacy data dir", func(t *testing.T) {
		check(t, "../server/testdata/datadir-v1/raft.db")
	})
	t.Run("fixture", func(t *testing.T) {
		fx := buildStoreFixture(t)
		check(t, filepath.Join(fx.dir, raftDBFile))
	})
	t.Run("after log compaction", func(t *testing.T) {
		// A raft-boltdb store taken through appends and DeleteRange, as
		// Raft compacts its log after snapshots.
		path := filepath.Join(t.TempDir(), raftDBFile)
		store, err := raftboltdb.NewBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		var next uint64 = 1
		for round := range 40 {
			var logs []*raft.Log
			for range 1 + rng.IntN(50) {
				logs = append(logs, &raft.Log{Index: next, Term: uint64(round + 1), Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(next)}, rng.IntN(3000))})
				next++
			}
			if err := store.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			if round%5 == 4 {
				first, _ := store.FirstIndex()
				if err := store.DeleteRange(first, first+uint64(rng.IntN(int(next-first)))); err != nil {
					t.Fatal(err)
				}
			}
			if err := store.SetUint64(keyCurrentTerm, uint64(round+1)); err != nil {
				t.Fatal(err)
			}
		}
		store.Close()
		check(t, path)
		if err := checkStore(path, time.Second); err != nil {
			t.Fatal(err)
		}
		store, err = raftboltdb.NewBoltStore(path)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		if _, err := checkLog(store, []*raft.SnapshotMeta{{Index: next}}); err != nil {
			t.Fatal(err)
		}
	})
}
