package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds of a read.
const (
	// DefaultLimit is how many records a query returns when it names no
	// limit; MaxLimit the most it may ask for.
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Query selects records of this node's audit trail.
type Query struct {
	// Since, when set, starts the read at the first record at or after
	// it (records from before commands carried their time have none, and
	// are left out). Without Since or After the read gives the newest
	// records.
	Since time.Time
	// After, when set, starts the read after the records a previous
	// read answered (its Page.Next). It overrides Since.
	After *Cursor
	// Service, Action and Outcome, when set, keep only the records that
	// name them.
	Service string
	Action  Action
	Outcome Outcome
	// Limit is the most records returned: 1 to MaxLimit; 0 means
	// DefaultLimit.
	Limit int
	// Scope, when set, keeps only the records whose service it holds
	// (it is given "" for a record that names none): what a token of
	// limited scope may read.
	Scope func(service string) bool
}

// Validate reports a malformed query; its errors wrap ErrBadQuery.
func (q Query) Validate() error {
	if q.Limit < 0 || q.Limit > MaxLimit {
		return fmt.Errorf("%w: limit must be between 1 and %d", ErrBadQuery, MaxLimit)
	}
	if q.Action != "" {
		if _, ok := ParseAction(string(q.Action)); !ok {
			return fmt.Errorf("%w: unknown action %q", ErrBadQuery, cut(string(q.Action), 64))
		}
	}
	if q.Outcome != "" {
		if _, ok := ParseOutcome(string(q.Outcome)); !ok {
			return fmt.Errorf("%w: unknown outcome %q", ErrBadQuery, cut(string(q.Outcome), 64))
		}
	}
	if len(q.Service) > maxName || strings.ContainsAny(q.Service, "\"\\") {
		return fmt.Errorf("%w: service name %q", ErrBadQuery, cut(q.Service, 64))
	}
	return nil
}

// Page is what a read found.
type Page struct {
	// Records are oldest first: the two journals merged by time.
	Records []Record
	// Next goes on after the records answered (After); in a read of the
	// newest records, it is where the journals ended.
	Next Cursor
	// More is set when the read stopped at its limit or its budget of
	// bytes before the journals' end: reading again After Next gives
	// more now.
	More bool
	// Partial is set when a read of the newest records spent its budget
	// of bytes before the start of a journal without finding its limit
	// of records: older records it did not reach may match. A read with
	// Since finds them.
	Partial bool
}

// Pos is a place in one journal: a file's number and the offset of a
// line in it.
type Pos struct {
	File uint64
	Off  int64
}

// Cursor is a place in both journals of one node, from which a read
// goes on. Another node's journals are other files: a cursor is only
// meaningful to the node that gave it, which Node names.
type Cursor struct {
	Applied, Local Pos
	// Node is the tag of the node whose journals the cursor is a place
	// in (eight hex digits of a hash of its ID); empty in a cursor of
	// the four-number form, which any node takes.
	Node string
}

// String is the cursor's wire form: four decimal numbers (applied file,
// offset, local file, offset) and the node's tag, joined by dots.
func (c Cursor) String() string {
	s := fmt.Sprintf("%d.%d.%d.%d", c.Applied.File, c.Applied.Off, c.Local.File, c.Local.Off)
	if c.Node != "" {
		s += "." + c.Node
	}
	return s
}

// ParseCursor reads a cursor's wire form, strictly: exactly what String
// writes (no sign, no leading zero, no space), with or without the
// node's tag.
func ParseCursor(s string) (Cursor, error) {
	bad := fmt.Errorf("%w: a cursor is four numbers and a tag joined by dots, as a read's next gives it", ErrBadQuery)
	parts := strings.Split(s, ".")
	if len(s) > 100 || len(parts) != 4 && len(parts) != 5 {
		return Cursor{}, bad
	}
	var c Cursor
	if len(parts) == 5 {
		if c.Node = parts[4]; !validTag(c.Node) {
			return Cursor{}, bad
		}
	}
	var n [4]uint64
	for i, p := range parts[:4] {
		v, err := strconv.ParseUint(p, 10, 63)
		if err != nil || strconv.FormatUint(v, 10) != p {
			return Cursor{}, bad
		}
		n[i] = v
	}
	c.Applied, c.Local = Pos{File: n[0], Off: int64(n[1])}, Pos{File: n[2], Off: int64(n[3])}
	return c, nil
}

// nodeTag is the tag of node ID id in its cursors.
func nodeTag(id string) string {
	h := sha256.Sum256([]byte("muster audit cursor\x00" + id))
	return hex.EncodeToString(h[:4])
}

func validTag(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Query reads records. At most Config.MaxReaders run at once; one that
// waits longer than Config.ReadWait for its turn fails with ErrBusy. It
// reads at most Config.ReadBudget bytes of the journals, and stops
// there with More set.
func (l *Log) Query(ctx context.Context, q Query) (Page, error) {
	if err := q.Validate(); err != nil {
		return Page{}, err
	}
	if l == nil {
		return Page{}, nil
	}
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	select {
	case l.readers <- struct{}{}:
	default:
		t := time.NewTimer(l.cfg.ReadWait)
		select {
		case l.readers <- struct{}{}:
			t.Stop()
		case <-t.C:
			return Page{}, ErrBusy
		case <-ctx.Done():
			t.Stop()
			return Page{}, ctx.Err()
		}
	}
	defer func() { <-l.readers }()
	defer l.reportDamage()
	budget := l.cfg.ReadBudget
	m := matcher(q)
	if q.After == nil && q.Since.IsZero() {
		return l.newest(m, q.Limit, &budget)
	}
	a, la := l.applied.snapshot(), l.local.snapshot()
	var from Cursor
	if q.After != nil {
		// A cursor names its node; one without a tag is taken only by a
		// node that has none (a log not yet given its node's ID), or when
		// it is the start, 0.0.0.0, which is every node's.
		start := q.After.Applied == (Pos{}) && q.After.Local == (Pos{})
		if q.After.Node != l.tag() && !(q.After.Node == "" && start) {
			return Page{}, ErrCursorOtherNode
		}
		if q.After.Applied.File == 0 && q.After.Applied.Off != 0 || q.After.Local.File == 0 && q.After.Local.Off != 0 {
			return Page{}, ErrCursorOtherNode // files are numbered from 1: no read gives such a place
		}
		if beyond(a, q.After.Applied) || beyond(la, q.After.Local) {
			return Page{}, ErrCursorBeyond
		}
		if !l.applied.lineStart(a, q.After.Applied) || !l.local.lineStart(la, q.After.Local) {
			return Page{}, ErrCursorOtherNode
		}
		from = Cursor{Applied: clampPos(a, q.After.Applied), Local: clampPos(la, q.After.Local)}
	} else {
		from = Cursor{Applied: l.applied.seek(a, q.Since, &budget), Local: l.local.seek(la, q.Since, &budget)}
	}
	sa := &stream{fw: newForward(l.applied, a, from.Applied, &budget), m: m}
	sl := &stream{fw: newForward(l.local, la, from.Local, &budget), m: m}
	defer sa.fw.close()
	defer sl.fw.close()
	var p Page
	for len(p.Records) < q.Limit {
		ra, oka := sa.peek()
		rl, okl := sl.peek()
		switch {
		case !oka && !okl:
			p.More = sa.fw.exhausted || sl.fw.exhausted
			p.Next = Cursor{Applied: sa.pos(), Local: sl.pos(), Node: l.tag()}
			return p, errors.Join(sa.err, sl.err)
		case oka && (!okl || !rl.Time.Before(ra.Time)):
			p.Records = append(p.Records, sa.take())
		default:
			p.Records = append(p.Records, sl.take())
		}
	}
	_, oka := sa.peek()
	_, okl := sl.peek()
	p.More = oka || okl || sa.fw.exhausted || sl.fw.exhausted
	p.Next = Cursor{Applied: sa.pos(), Local: sl.pos(), Node: l.tag()}
	return p, errors.Join(sa.err, sl.err)
}

// newest reads the newest records matching m, up to limit, each journal
// from its end backwards, and merges them.
func (l *Log) newest(m matchFunc, limit int, budget *int64) (Page, error) {
	var found [2][]Record // newest first
	var next Cursor
	var errs []error
	partial := false
	// Each journal gets half the budget, and the local journal what the
	// applied one left of its half too: a filter that matches few records
	// of a large applied journal must not spend the whole budget there and
	// never look at the local journal, which holds every refusal.
	whole := *budget
	shares := [2]int64{whole / 2}
	for i, j := range []*journal{l.applied, l.local} {
		if i == 1 {
			shares[1] = whole - whole/2 + max(0, shares[0])
		}
		files := j.snapshot()
		end := Pos{}
		if n := len(files); n > 0 {
			end = Pos{File: files[n-1].seq, Off: files[n-1].size}
		}
		if i == 0 {
			next.Applied = end
		} else {
			next.Local = end
		}
		b := newBackward(j, files, &shares[i])
		for len(found[i]) < limit {
			line, ok, err := b.next()
			if err != nil {
				errs = append(errs, err)
			}
			if !ok {
				break
			}
			r, ok, bad := m(line)
			if ok {
				found[i] = append(found[i], r)
			} else if bad {
				j.damaged.Add(1)
			}
		}
		b.close()
		partial = partial || (b.cut && len(found[i]) < limit)
	}
	*budget = shares[1]
	// Merge newest first; the page is oldest first.
	out := make([]Record, 0, min(limit, len(found[0])+len(found[1])))
	a, b := found[0], found[1]
	for len(out) < limit && (len(a) > 0 || len(b) > 0) {
		if len(a) > 0 && (len(b) == 0 || !a[0].Time.Before(b[0].Time)) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	slices.Reverse(out)
	next.Node = l.tag()
	return Page{Records: out, Next: next, Partial: partial}, errors.Join(errs...)
}

// matchFunc is a filter over lines: the record a line holds and true if
// it is one the filter selects; bad when the line was decoded and is not
// a record.
type matchFunc func(line []byte) (r Record, ok, bad bool)

// matcher returns the filter of q over lines. A line is checked for the fields' bytes before it
// is decoded (a JSON string cannot hold `"key":"value"` unescaped, so
// the check is exact) and most lines of a filtered read are never
// decoded.
func matcher(q Query) matchFunc {
	var needles [][]byte
	if q.Service != "" {
		needles = append(needles, []byte(`"service":"`+q.Service+`"`))
	}
	if q.Action != "" {
		needles = append(needles, []byte(`"action":"`+string(q.Action)+`"`))
	}
	if q.Outcome != "" {
		needles = append(needles, []byte(`"outcome":"`+string(q.Outcome)+`"`))
	}
	since := q.Since
	if q.After != nil {
		since = time.Time{}
	}
	return func(line []byte) (Record, bool, bool) {
		for _, n := range needles {
			if !bytes.Contains(line, n) {
				return Record{}, false, false
			}
		}
		r, err := parseLine(line)
		if err != nil {
			return Record{}, false, true
		}
		if (q.Service != "" && r.Service != q.Service) || (q.Action != "" && r.Action != q.Action) ||
			(q.Outcome != "" && r.Outcome != q.Outcome) || (!since.IsZero() && r.Time.Before(since)) ||
			(q.Scope != nil && !q.Scope(r.Service)) {
			return Record{}, false, false
		}
		return r, true, false
	}
}

// stream is a forward read of one journal through a filter, one record
// ahead.
type stream struct {
	fw     *forward
	m      matchFunc
	head   Record
	has    bool
	before Pos // where the head's line begins
	err    error
}

// peek returns the next record that matches, without taking it.
func (s *stream) peek() (Record, bool) {
	for !s.has {
		before := s.fw.pos()
		line, ok, err := s.fw.next()
		if err != nil && s.err == nil {
			s.err = err
		}
		if !ok {
			return Record{}, false
		}
		r, ok, bad := s.m(line)
		if ok {
			s.head, s.has, s.before = r, true, before
		} else if bad {
			s.fw.j.damaged.Add(1)
		}
	}
	return s.head, true
}

// take returns the record peek found and moves past it.
func (s *stream) take() Record {
	s.has = false
	return s.head
}

// pos is where the stream goes on: before a record peeked and not taken.
func (s *stream) pos() Pos {
	if s.has {
		return s.before
	}
	return s.fw.pos()
}

// lineStart reports whether p, inside files, is where a line begins (a
// read gives no other place): its file's start, or just after a newline.
// A place in a file rotated away, or that cannot be read, passes: the
// read goes on from the oldest file there is.
func (j *journal) lineStart(files []fileInfo, p Pos) bool {
	if p.Off == 0 || !slices.ContainsFunc(files, func(f fileInfo) bool { return f.seq == p.File }) {
		return true
	}
	f, err := os.Open(j.path(p.File))
	if err != nil {
		return true
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], p.Off-1); err != nil {
		return true
	}
	return b[0] == '\n'
}

// beyond reports whether p is past the end of files: a place no read of
// this node's journals gave (files only grow, and rotate to higher
// numbers).
func beyond(files []fileInfo, p Pos) bool {
	if p == (Pos{}) {
		return false
	}
	if len(files) == 0 {
		return true
	}
	last := files[len(files)-1]
	return p.File > last.seq || p.File == last.seq && p.Off > last.size
}

// clampPos makes p a place in files: in a file deleted since (rotated
// away), the start of the oldest; beyond the newest (which Query
// refuses; Wait may see it), its end.
func clampPos(files []fileInfo, p Pos) Pos {
	if len(files) == 0 {
		return Pos{}
	}
	first, last := files[0], files[len(files)-1]
	switch {
	case p.File < first.seq:
		return Pos{File: first.seq}
	case p.File > last.seq:
		return Pos{File: last.seq, Off: last.size}
	}
	for _, f := range files {
		if f.seq == p.File {
			return Pos{File: f.seq, Off: min(max(p.Off, 0), f.size)}
		}
	}
	return Pos{File: p.File} // a gap in the numbers: newForward moves on
}

// readWindow is how much a probe of a search reads: a line and more.
const readWindow = 2 * MaxLine

// seek returns where the first record at or after t is in files: the
// file is the newest whose first record is not after t, and the line a
// binary search of it by offset finds (times in a journal rise but for
// the clocks of different leaders).
func (j *journal) seek(files []fileInfo, t time.Time, budget *int64) Pos {
	if len(files) == 0 {
		return Pos{}
	}
	pick := files[0]
	for i := len(files) - 1; i >= 0; i-- {
		if ft := j.firstTime(files[i], budget); !ft.IsZero() && !ft.After(t) {
			pick = files[i]
			break
		}
	}
	f, err := os.Open(j.path(pick.seq))
	if err != nil {
		return Pos{File: pick.seq}
	}
	defer f.Close()
	buf := make([]byte, readWindow)
	// lineAt returns the first line that begins at or after off, and
	// where it begins (size when none does).
	lineAt := func(off int64) (int64, []byte) {
		start := off
		if off > 0 {
			start = off - 1
		}
		n, _ := f.ReadAt(buf[:min(int64(len(buf)), pick.size-start)], start)
		*budget -= int64(n)
		b := buf[:n]
		if off > 0 {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return pick.size, nil
			}
			start, b = start+int64(i)+1, b[i+1:]
		}
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return start, b[:i]
		}
		return start, b
	}
	lo, hi := int64(0), pick.size
	for lo < hi && *budget > 0 {
		mid := lo + (hi-lo)/2
		start, line := lineAt(mid)
		if start >= pick.size || !lineTime(line).Before(t) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	start, _ := lineAt(lo)
	return Pos{File: pick.seq, Off: start}
}

// firstTime is the time of the first record of file, cached once read.
func (j *journal) firstTime(file fileInfo, budget *int64) time.Time {
	if v, ok := j.firstTimes.Load(file.seq); ok {
		return v.(time.Time)
	}
	if file.size == 0 {
		return time.Time{}
	}
	f, err := os.Open(j.path(file.seq))
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	buf := make([]byte, min(int64(MaxLine), file.size))
	n, _ := io.ReadFull(f, buf)
	*budget -= int64(n)
	i := bytes.IndexByte(buf[:n], '\n')
	if i < 0 {
		return time.Time{}
	}
	t := lineTime(buf[:i])
	j.firstTimes.Store(file.seq, t)
	return t
}

// forward reads whole lines of a journal from a place on, within the
// files' sizes when the read began and a budget of bytes.
type forward struct {
	j         *journal
	files     []fileInfo
	i         int // the file being read
	f         *os.File
	r         *bufio.Reader
	off       int64 // of the next unread byte in files[i]
	budget    *int64
	exhausted bool // the budget ran out before the end
}

func newForward(j *journal, files []fileInfo, from Pos, budget *int64) *forward {
	fw := &forward{j: j, files: files, budget: budget}
	fw.i = len(files)
	for i, f := range files {
		if f.seq >= from.File {
			fw.i = i
			if f.seq == from.File {
				fw.off = from.Off
			}
			break
		}
	}
	return fw
}

// pos is where the read goes on.
func (fw *forward) pos() Pos {
	if fw.i >= len(fw.files) {
		if n := len(fw.files); n > 0 {
			return Pos{File: fw.files[n-1].seq, Off: fw.files[n-1].size}
		}
		return Pos{}
	}
	return Pos{File: fw.files[fw.i].seq, Off: fw.off}
}

// next returns the next whole line (without its newline), or false at
// the end or when the budget is spent. A line longer than MaxLine is
// damage and skipped.
func (fw *forward) next() ([]byte, bool, error) {
	for fw.i < len(fw.files) {
		if *fw.budget <= 0 {
			fw.exhausted = true
			return nil, false, nil
		}
		file := fw.files[fw.i]
		if fw.off >= file.size {
			fw.closeFile()
			fw.i++
			fw.off = 0
			continue
		}
		if fw.f == nil {
			f, err := os.Open(fw.j.path(file.seq))
			if err != nil {
				fw.i++ // rotated away meanwhile
				fw.off = 0
				if !errors.Is(err, os.ErrNotExist) {
					return nil, false, fmt.Errorf("audit: %w", err)
				}
				continue
			}
			fw.f = f
			fw.r = bufio.NewReaderSize(io.NewSectionReader(f, fw.off, file.size-fw.off), 32<<10)
		}
		line, err := fw.r.ReadSlice('\n')
		n := int64(len(line))
		long := errors.Is(err, bufio.ErrBufferFull)
		for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of it
			var more []byte
			more, err = fw.r.ReadSlice('\n')
			n += int64(len(more))
		}
		fw.off += n
		*fw.budget -= n
		if err != nil { // the end of the file's whole lines
			fw.off = file.size
			continue
		}
		if long || n > MaxLine {
			fw.j.damaged.Add(1)
			continue
		}
		return line[:len(line)-1], true, nil
	}
	return nil, false, nil
}

func (fw *forward) closeFile() {
	if fw.f != nil {
		fw.f.Close()
		fw.f, fw.r = nil, nil
	}
}

func (fw *forward) close() { fw.closeFile() }

// backward reads whole lines of a journal from its end towards its
// start, within a budget of bytes.
type backward struct {
	j      *journal
	files  []fileInfo
	i      int // the file being read
	f      *os.File
	start  int64  // the offset of pend in files[i]
	pend   []byte // the unread bytes of files[i] from start, whole lines
	budget *int64
	cut    bool // the budget ran out before the journal's start
}

func newBackward(j *journal, files []fileInfo, budget *int64) *backward {
	return &backward{j: j, files: files, i: len(files), budget: budget}
}

// next returns the previous whole line, or false at the start or when
// the budget is spent.
func (b *backward) next() ([]byte, bool, error) {
	for {
		if b.f == nil {
			if b.i--; b.i < 0 {
				return nil, false, nil
			}
			f, err := os.Open(b.j.path(b.files[b.i].seq))
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return nil, false, fmt.Errorf("audit: %w", err)
			}
			b.f, b.start, b.pend = f, b.files[b.i].size, nil
		}
		if n := len(b.pend); n > 0 {
			if i := bytes.LastIndexByte(b.pend[:n-1], '\n'); i >= 0 || b.start == 0 {
				line := b.pend[i+1 : n-1]
				b.pend = b.pend[:i+1]
				if len(line) > MaxLine {
					b.j.damaged.Add(1)
					continue
				}
				return line, true, nil
			}
			if n > 2*MaxLine { // no line begins in it: damage
				b.j.damaged.Add(1)
				b.pend = nil
			}
		}
		if b.start == 0 || *b.budget <= 0 {
			b.f.Close()
			b.f = nil
			if *b.budget <= 0 {
				b.cut = b.start > 0 || b.i > 0
				return nil, false, nil
			}
			continue
		}
		from := max(0, b.start-64<<10)
		chunk := make([]byte, b.start-from, int(b.start-from)+len(b.pend))
		if _, err := b.f.ReadAt(chunk, from); err != nil && !errors.Is(err, io.EOF) {
			b.f.Close()
			b.f = nil
			return nil, false, fmt.Errorf("audit: %w", err)
		}
		*b.budget -= int64(len(chunk))
		b.pend = append(chunk, b.pend...)
		b.start = from
	}
}

func (b *backward) close() {
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
}

// Wait returns once the journals hold something after cur (a read's
// Page.Next), or ctx ends. A wake-up means "read again": what was
// written may not match the read's filters.
func (l *Log) Wait(ctx context.Context, cur Cursor) {
	if l == nil {
		<-ctx.Done()
		return
	}
	for {
		ch := l.Changed()
		if l.after(cur) {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// after reports whether either journal holds bytes after its place in
// cur.
func (l *Log) after(cur Cursor) bool {
	for _, c := range []struct {
		j *journal
		p Pos
	}{{l.applied, cur.Applied}, {l.local, cur.Local}} {
		files := c.j.snapshot()
		if len(files) == 0 {
			continue
		}
		if p := clampPos(files, c.p); p.File < files[len(files)-1].seq || p.Off < files[len(files)-1].size {
			return true
		}
	}
	return false
}
