package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrDamaged means raft.db is not a consistent bbolt file or not a
// consistent Raft log. Open returns it, wrapped in one line that names
// the file, what is wrong and what to do, instead of handing the file to
// bbolt and Raft, which would crash on it (a fault reading past the end
// of the file, an assertion, a panic reading a missing entry).
var ErrDamaged = errors.New("cluster: raft.db is damaged")

// damagedError is ErrDamaged with the file, the damage found and the
// remedy, on one line. It unwraps to ErrDamaged and to the damage.
type damagedError struct {
	path      string
	cause     error
	snapshots int
}

func (e *damagedError) Error() string {
	remedy := "an empty catalog (snapshots/ holds no snapshot)"
	if e.snapshots > 0 {
		remedy = "the catalog of the latest snapshot in snapshots/, which is kept apart from raft.db (the writes after it are lost)"
	}
	msg := strings.Join(strings.Fields(e.cause.Error()), " ") // one line, whatever the cause said
	return fmt.Sprintf("%v: %s: %s. Restore raft.db from a backup, or move it aside and start once with "+
		"force-new-cluster (muster server --force-new-cluster) to come back with %s", ErrDamaged, e.path, msg, remedy)
}

func (e *damagedError) Unwrap() []error { return []error{ErrDamaged, e.cause} }

func damaged(path string, cause error, snapshots int) error {
	return &damagedError{path: path, cause: cause, snapshots: snapshots}
}

// errPanicked marks damage found by a panic or memory fault that guarded
// recovered, rather than by a check.
var errPanicked = errors.New("reading it failed")

// guarded runs f on a goroutine of its own on which a memory fault (as
// reading a memory-mapped file past its end) is a panic rather than a
// crash (debug.SetPanicOnFault), and turns any panic of f into an error.
func guarded(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if r := recover(); r != nil {
				ch <- fmt.Errorf("%w: %v", errPanicked, r)
			}
		}()
		ch <- f()
	}()
	return <-ch
}

// checkStore checks the bbolt file at path before raft-boltdb opens it
// for writing. It holds bbolt's shared lock (a read-only open, guarded)
// while it checks the file's structure itself, reading the file with
// ReadAt and never following a reference it has not checked
// (checkBoltFile), and then walks every bucket and key through bbolt.
// It returns berrors.ErrTimeout (wrapped) if another process holds the
// file, and any other error means the file is damaged.
//
// bbolt's own Tx.Check is not used: it runs on a goroutine of its own,
// where a panic or fault cannot be recovered, and it recurses without a
// bound through a tree whose pages refer back to each other.
func checkStore(path string, lockTimeout time.Duration) error {
	return guarded(func() error {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: lockTimeout})
		if err != nil {
			if errors.Is(err, berrors.ErrTimeout) {
				return err
			}
			return fmt.Errorf("bbolt cannot open it: %w", err)
		}
		defer db.Close()
		if err := checkBoltFile(path); err != nil {
			return err
		}
		return db.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bbolt.Bucket) error { return walkBucket(b, 0) })
		})
	})
}

// walkBucket reads every key and value of b and its sub-buckets.
func walkBucket(b *bbolt.Bucket, depth int) error {
	if depth > maxBucketDepth {
		return errors.New("buckets are nested too deep")
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			sub := b.Bucket(k)
			if sub == nil {
				return fmt.Errorf("bucket %q cannot be opened", k)
			}
			if err := walkBucket(sub, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// The bbolt file format (version 2), as bbolt v1.4 writes it. Integers
// are in the machine's byte order: a bbolt file is not portable across
// byte orders, and bbolt reads it in native order too.
const (
	pageHeaderSize = 16 // id u64, flags u16, count u16, overflow u32
	elementSize    = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	metaSize       = 64 // magic, version, page size, flags, root bucket (root, sequence), freelist, pgid, txid, checksum
	bucketSize     = 16 // root u64, sequence u64

	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01

	boltMagic   = 0xED0CDAED
	boltVersion = 2
	noFreelist  = ^uint64(0)

	maxTreeDepth   = 32
	maxBucketDepth = 8
)

var ne = binary.NativeEndian

// boltMeta is the part of a meta page the check uses.
type boltMeta struct {
	pageSize uint32
	root     uint64 // page of the root bucket
	freelist uint64
	pgid     uint64 // high water mark: pages [0, pgid) are in use or free
	txid     uint64
}

// parseMeta reads and validates the meta record that starts 16 bytes into
// page 0 or 1, as bbolt's Meta.Validate does.
func parseMeta(b []byte) (boltMeta, error) {
	if len(b) < metaSize {
		return boltMeta{}, errors.New("too short")
	}
	h := fnv.New64a()
	h.Write(b[:56])
	switch {
	case ne.Uint32(b[0:]) != boltMagic:
		return boltMeta{}, errors.New("not a bbolt meta page (bad magic)")
	case ne.Uint32(b[4:]) != boltVersion:
		return boltMeta{}, fmt.Errorf("bbolt format version %d, not %d", ne.Uint32(b[4:]), boltVersion)
	case ne.Uint64(b[56:]) != h.Sum64():
		return boltMeta{}, errors.New("checksum mismatch")
	}
	return boltMeta{
		pageSize: ne.Uint32(b[8:]),
		root:     ne.Uint64(b[16:]),
		freelist: ne.Uint64(b[32:]),
		pgid:     ne.Uint64(b[40:]),
		txid:     ne.Uint64(b[48:]),
	}, nil
}

// boltFile reads a bbolt file page by page, checking every reference
// before it follows it.
type boltFile struct {
	f       io.ReaderAt
	size    int64
	ps      uint64 // page size
	hwm     uint64 // pages [0, hwm) exist
	reached []bool // pages of the free list and of every bucket's tree
	free    []bool // pages the free list names

	// The Raft log, as the walk meets it.
	buckets   map[string]bool // top-level buckets met
	logs      int
	lastIndex uint64
}

// checkBoltFile checks the structure of the bbolt file at path: both meta
// pages valid, the pages they name inside the file, the free list, and
// every bucket's B+tree (each page within the file, of the right type,
// reached once and not free, its elements laid out as bbolt lays them
// out, its keys in order and within its parent's bounds), every page
// either in use or free; and the Raft buckets: log keys of 8 bytes
// numbering the entries without a gap, and terms of 8 bytes.
//
// A meta page that fails validation is damage here, although bbolt would
// fall back to the other one: that one may be a transaction older, and
// falling back would silently drop the last entries Raft acknowledged.
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return checkBolt(f, fi.Size())
}

func checkBolt(f io.ReaderAt, size int64) error {
	r := &boltFile{f: f, size: size, buckets: map[string]bool{}}
	m, err := r.readMetas()
	if err != nil {
		return err
	}
	if m.pgid < 2 || m.pgid > uint64(size)/r.ps {
		return fmt.Errorf("the file is %d bytes but its pages reach byte %d: it was cut short", size, m.pgid*r.ps)
	}
	r.hwm = m.pgid
	r.reached = make([]bool, r.hwm)
	r.free = make([]bool, r.hwm)
	r.reached[0], r.reached[1] = true, true
	if err := r.readFreelist(m.freelist); err != nil {
		return err
	}
	if err := r.walkTree(m.root, 0, nil, nil, nil, 0); err != nil {
		return err
	}
	if m.freelist != noFreelist {
		for id := uint64(2); id < r.hwm; id++ {
			if !r.reached[id] && !r.free[id] {
				return fmt.Errorf("page %d is neither in use nor free", id)
			}
		}
	}
	switch {
	case r.buckets["logs"] && r.buckets["conf"]:
	case len(r.buckets) == 0 && r.logs == 0:
		// A bbolt file raft-boltdb has not set up yet.
	default:
		return errors.New("it lacks one of Raft's buckets (logs, conf)")
	}
	return nil
}

// readMetas reads both meta pages and returns the current one (the higher
// transaction ID, as bbolt chooses).
func (r *boltFile) readMetas() (boltMeta, error) {
	var b [pageHeaderSize + metaSize]byte
	if _, err := r.f.ReadAt(b[:], 0); err != nil {
		return boltMeta{}, fmt.Errorf("meta page 0 cannot be read (%v): the file was cut short", err)
	}
	m0, err := parseMeta(b[pageHeaderSize:])
	if err != nil {
		return boltMeta{}, fmt.Errorf("meta page 0 is invalid: %v", err)
	}
	ps := uint64(m0.pageSize)
	if ps < 1024 || ps > 1<<16 || ps&(ps-1) != 0 {
		return boltMeta{}, fmt.Errorf("meta page 0 gives a page size of %d", ps)
	}
	if _, err := r.f.ReadAt(b[:], int64(ps)); err != nil {
		return boltMeta{}, fmt.Errorf("meta page 1 cannot be read (%v): the file was cut short", err)
	}
	m1, err := parseMeta(b[pageHeaderSize:])
	if err != nil {
		return boltMeta{}, fmt.Errorf("meta page 1 is invalid: %v", err)
	}
	if m1.pageSize != m0.pageSize {
		return boltMeta{}, fmt.Errorf("the meta pages disagree on the page size (%d, %d)", m0.pageSize, m1.pageSize)
	}
	r.ps = ps
	m := m0
	if m1.txid > m0.txid {
		m = m1
	}
	if m.root < 2 || m.root >= m.pgid {
		return boltMeta{}, fmt.Errorf("the root bucket is on page %d, outside pages 2 to %d", m.root, m.pgid)
	}
	if m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid) {
		return boltMeta{}, fmt.Errorf("the free list is on page %d, outside pages 2 to %d", m.freelist, m.pgid)
	}
	return m, nil
}

// span reads the page id and its overflow pages, after checking they lie
// within the file, and marks them reached.
func (r *boltFile) span(id uint64) ([]byte, error) {
	if id < 2 || id >= r.hwm {
		return nil, fmt.Errorf("a reference to page %d, outside pages 2 to %d", id, r.hwm)
	}
	var h [pageHeaderSize]byte
	if _, err := r.f.ReadAt(h[:], int64(id*r.ps)); err != nil {
		return nil, fmt.Errorf("page %d cannot be read: %v", id, err)
	}
	if got := ne.Uint64(h[0:]); got != id {
		return nil, fmt.Errorf("page %d is labelled page %d", id, got)
	}
	overflow := uint64(ne.Uint32(h[12:]))
	if overflow >= r.hwm-id {
		return nil, fmt.Errorf("page %d runs %d pages past the file's last page", id, overflow-(r.hwm-id)+1)
	}
	for i := id; i <= id+overflow; i++ {
		if r.reached[i] {
			return nil, fmt.Errorf("page %d is reached twice", i)
		}
		if r.free[i] {
			return nil, fmt.Errorf("page %d is in use and also listed as free", i)
		}
		r.reached[i] = true
	}
	p := make([]byte, (overflow+1)*r.ps)
	if _, err := r.f.ReadAt(p, int64(id*r.ps)); err != nil {
		return nil, fmt.Errorf("page %d cannot be read: %v", id, err)
	}
	return p, nil
}

func (r *boltFile) readFreelist(id uint64) error {
	if id == noFreelist {
		return nil // bbolt rebuilds it from the tree
	}
	p, err := r.span(id)
	if err != nil {
		return fmt.Errorf("free list: %v", err)
	}
	if flags := ne.Uint16(p[8:]); flags != freelistPageFlag {
		return fmt.Errorf("the free list's page %d has type %#x", id, flags)
	}
	count, skip := uint64(ne.Uint16(p[10:])), uint64(0)
	room := uint64(len(p)-pageHeaderSize) / 8
	if count == 0xFFFF {
		count, skip = ne.Uint64(p[pageHeaderSize:]), 1
	}
	if count > room-skip {
		return fmt.Errorf("the free list on page %d claims %d pages, more than its page holds", id, count)
	}
	for i := range count {
		free := ne.Uint64(p[pageHeaderSize+(skip+i)*8:])
		if free < 2 || free >= r.hwm {
			return fmt.Errorf("the free list names page %d, outside pages 2 to %d", free, r.hwm)
		}
		if r.free[free] {
			return fmt.Errorf("the free list names page %d twice", free)
		}
		r.free[free] = true
	}
	return nil
}

// element is one entry of a branch or leaf page.
type element struct {
	flags uint32 // leaf: bucketLeafFlag for a sub-bucket
	key   []byte
	value []byte // leaf only
	child uint64 // branch only
}

// elements parses the count elements of page p (a branch or leaf, its
// header first), checking they lie where bbolt puts them: the element
// headers after the page header, then each key (and value) packed one
// after the other in order. A count, position or size changed by damage
// breaks that layout.
func elements(p []byte, leaf bool) ([]element, error) {
	count := uint64(ne.Uint16(p[10:]))
	off := pageHeaderSize + count*elementSize
	if off > uint64(len(p)) {
		return nil, fmt.Errorf("%d elements do not fit in the page", count)
	}
	els := make([]element, count)
	for i := range count {
		e := p[pageHeaderSize+i*elementSize:]
		var pos, ksize, vsize uint64
		if leaf {
			els[i].flags = ne.Uint32(e[0:])
			pos, ksize, vsize = uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		} else {
			pos, ksize = uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))
			els[i].child = ne.Uint64(e[8:])
		}
		if at := pageHeaderSize + i*elementSize + pos; at != off {
			return nil, fmt.Errorf("element %d is at byte %d, not %d where its page's layout puts it", i, at, off)
		}
		if ksize == 0 {
			return nil, fmt.Errorf("element %d has an empty key", i)
		}
		end := off + ksize + vsize
		if end > uint64(len(p)) {
			return nil, fmt.Errorf("element %d runs past the end of its page", i)
		}
		els[i].key = p[off : off+ksize]
		if leaf {
			els[i].value = p[off+ksize : end]
		}
		off = end
	}
	return els, nil
}

// walkTree checks the B+tree of a bucket from page id down. Its keys must
// lie in [lo, hi) (nil: unbounded); path names the bucket. It returns the
// greatest key under id.
func (r *boltFile) walkTree(id uint64, depth int, lo, hi []byte, path []string, bdepth int) error {
	_, err := r.walkPage(id, depth, lo, hi, path, bdepth)
	return err
}

func (r *boltFile) walkPage(id uint64, depth int, lo, hi []byte, path []string, bdepth int) ([]byte, error) {
	if depth > maxTreeDepth {
		return nil, fmt.Errorf("the tree through page %d is deeper than %d pages", id, maxTreeDepth)
	}
	p, err := r.span(id)
	if err != nil {
		return nil, err
	}
	switch flags := ne.Uint16(p[8:]); flags {
	case branchPageFlag:
		els, err := elements(p, false)
		if err != nil {
			return nil, fmt.Errorf("branch page %d: %v", id, err)
		}
		if len(els) == 0 {
			return nil, fmt.Errorf("branch page %d is empty", id)
		}
		last := lo
		for i, e := range els {
			if err := keyInRange(e.key, last, i > 0, hi); err != nil {
				return nil, fmt.Errorf("branch page %d, key %d: %v", id, i, err)
			}
			childHi := hi
			if i+1 < len(els) {
				childHi = els[i+1].key
			}
			max, err := r.walkPage(e.child, depth+1, e.key, childHi, path, bdepth)
			if err != nil {
				return nil, err
			}
			if max != nil {
				last = max
			}
		}
		return last, nil
	case leafPageFlag:
		return r.walkLeaf(id, p, lo, hi, path, bdepth)
	default:
		return nil, fmt.Errorf("page %d has type %#x where a branch or leaf page belongs", id, flags)
	}
}

// keyInRange checks key against the key before it (after: strictly
// greater; else greater or equal, for the first key under a bound) and
// below hi.
func keyInRange(key, prev []byte, strict bool, hi []byte) error {
	if prev != nil {
		c := bytes.Compare(key, prev)
		if c < 0 || (strict && c == 0) {
			return errors.New("keys out of order")
		}
	}
	if hi != nil && bytes.Compare(key, hi) >= 0 {
		return errors.New("a key beyond its parent's bound")
	}
	return nil
}

// walkLeaf checks a leaf page (p holds it, header first; id is 0 for an
// inline bucket's page) and the buckets it holds.
func (r *boltFile) walkLeaf(id uint64, p []byte, lo, hi []byte, path []string, bdepth int) ([]byte, error) {
	els, err := elements(p, true)
	if err != nil {
		return nil, fmt.Errorf("leaf page %d: %v", id, err)
	}
	prev := lo
	for i, e := range els {
		if err := keyInRange(e.key, prev, i > 0, hi); err != nil {
			return nil, fmt.Errorf("leaf page %d, key %d: %v", id, i, err)
		}
		prev = e.key
		if e.flags&bucketLeafFlag == 0 {
			if err := r.entry(path, e.key, e.value); err != nil {
				return nil, err
			}
			continue
		}
		if err := r.bucket(append(path[:len(path):len(path)], string(e.key)), e.value, bdepth+1); err != nil {
			return nil, err
		}
	}
	if len(els) == 0 {
		return nil, nil
	}
	return els[len(els)-1].key, nil
}

// bucket checks the sub-bucket whose header is v: its own tree, or the
// page inline in v.
func (r *boltFile) bucket(path []string, v []byte, bdepth int) error {
	if bdepth > maxBucketDepth {
		return errors.New("buckets are nested too deep")
	}
	if len(path) == 1 {
		r.buckets[path[0]] = true
	}
	if len(path) > 1 && (path[0] == "logs" || path[0] == "conf") {
		return fmt.Errorf("the Raft bucket %s holds a bucket", path[0])
	}
	if len(v) < bucketSize {
		return fmt.Errorf("the header of bucket %q is %d bytes", strings.Join(path, "/"), len(v))
	}
	root := ne.Uint64(v[0:])
	if root != 0 {
		return r.walkTree(root, 0, nil, nil, path, bdepth)
	}
	inline := v[bucketSize:]
	if len(inline) < pageHeaderSize {
		return fmt.Errorf("inline bucket %q is %d bytes", strings.Join(path, "/"), len(inline))
	}
	if flags := ne.Uint16(inline[8:]); flags != leafPageFlag {
		return fmt.Errorf("inline bucket %q has a page of type %#x", strings.Join(path, "/"), flags)
	}
	_, err := r.walkLeaf(0, inline, nil, nil, path, bdepth)
	return err
}

// entry checks one key and value against what raft-boltdb stores.
func (r *boltFile) entry(path []string, k, v []byte) error {
	if len(path) != 1 {
		return nil
	}
	switch path[0] {
	case "logs":
		if len(k) != 8 {
			return fmt.Errorf("a log key of %d bytes, not 8", len(k))
		}
		idx := binary.BigEndian.Uint64(k)
		if r.logs > 0 && idx != r.lastIndex+1 {
			return fmt.Errorf("the log skips from entry %d to entry %d", r.lastIndex, idx)
		}
		if len(v) == 0 {
			return fmt.Errorf("log entry %d is empty", idx)
		}
		r.logs++
		r.lastIndex = idx
	case "conf":
		if (string(k) == "CurrentTerm" || string(k) == "LastVoteTerm") && len(v) != 8 {
			return fmt.Errorf("the stored %s is %d bytes, not 8", k, len(v))
		}
	}
	return nil
}

// keyCurrentTerm is where Raft keeps its current term in the stable store.
var keyCurrentTerm = []byte("CurrentTerm")

// raftState reports whether the store holds any Raft state (a term or a
// log entry). A store raft-boltdb has just created holds none.
func raftState(store *raftboltdb.BoltStore) (bool, error) {
	term, err := store.GetUint64(keyCurrentTerm)
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return false, err
	}
	last, err := store.LastIndex()
	if err != nil {
		return false, err
	}
	return term != 0 || last != 0, nil
}

// checkLog reads every entry of the log through raft-boltdb, as Raft
// will, and checks what Raft relies on without checking: each entry
// decodes, is the entry its key says, has a known type, and a term no
// lower than the entry before it and no higher than the current term; a
// configuration entry decodes (Raft panics on one that does not); the
// log starts no later than right after the latest snapshot (Raft panics
// reading an entry it expects). It returns the latest configuration, from
// the log or the latest snapshot. The command inside an entry is the
// catalog's to check.
func checkLog(store *raftboltdb.BoltStore, snaps []*raft.SnapshotMeta) (raft.Configuration, error) {
	var latest raft.Configuration
	var latestIndex uint64
	err := guarded(func() error {
		term, err := store.GetUint64(keyCurrentTerm)
		if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
			return err
		}
		first, err := store.FirstIndex()
		if err != nil {
			return err
		}
		last, err := store.LastIndex()
		if err != nil {
			return err
		}
		var snapIndex uint64
		if len(snaps) > 0 {
			snapIndex = snaps[0].Index
			latest, latestIndex = snaps[0].Configuration, snaps[0].ConfigurationIndex
		}
		if first > snapIndex+1 {
			return fmt.Errorf("the log starts at entry %d, but the entries after %d are not in a snapshot", first, snapIndex)
		}
		var prevTerm uint64
		for i := first; i != 0 && i <= last; i++ {
			var l raft.Log
			if err := store.GetLog(i, &l); err != nil {
				return fmt.Errorf("log entry %d cannot be read: %v", i, err)
			}
			switch {
			case l.Index != i:
				return fmt.Errorf("log entry %d says it is entry %d", i, l.Index)
			case l.Term < prevTerm:
				return fmt.Errorf("log entry %d has term %d, lower than the term %d before it", i, l.Term, prevTerm)
			case l.Term > term:
				return fmt.Errorf("log entry %d has term %d, past the current term %d", i, l.Term, term)
			}
			switch l.Type {
			case raft.LogCommand:
			case raft.LogNoop, raft.LogBarrier:
				// Raft writes these empty. One with data is a command
				// whose type changed, and would be skipped unapplied.
				if len(l.Data) > 0 {
					return fmt.Errorf("log entry %d is marked type %d, which Raft writes empty, but holds %d bytes (a command whose type byte changed?)", i, l.Type, len(l.Data))
				}
			case raft.LogConfiguration:
				c, err := decodeConfiguration(l.Data)
				if err != nil {
					return fmt.Errorf("log entry %d: configuration: %v", i, err)
				}
				if i > latestIndex {
					latest, latestIndex = c, i
				}
			default:
				return fmt.Errorf("log entry %d has type %d, which muster never writes", i, l.Type)
			}
			prevTerm = l.Term
		}
		return nil
	})
	return latest, err
}

// decodeConfiguration is raft.DecodeConfiguration, which panics on bytes
// it cannot decode, returning an error instead.
func decodeConfiguration(b []byte) (c raft.Configuration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return raft.DecodeConfiguration(b), nil
}
