package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/testutil"
)

// openLog opens a log over a fresh dir (or the one mutate's config
// names) with the defaults and mutate's changes.
func openLog(tb testing.TB, mutate func(*audit.Config)) (*audit.Log, string) {
	tb.Helper()
	cfg := audit.DefaultConfig()
	cfg.Dir = filepath.Join(tb.TempDir(), "audit")
	cfg.Logger = testutil.Logger(tb)
	if mutate != nil {
		mutate(&cfg)
	}
	l, err := audit.Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l, cfg.Dir
}

func reopen(tb testing.TB, dir string, mutate func(*audit.Config)) *audit.Log {
	tb.Helper()
	l, _ := openLog(tb, func(c *audit.Config) {
		c.Dir = dir
		if mutate != nil {
			mutate(c)
		}
	})
	return l
}

func closeLog(tb testing.TB, l *audit.Log) {
	tb.Helper()
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
}

// journalText is every line of a journal's files, oldest first.
func journalText(tb testing.TB, dir, name string) string {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, name+"-*.jsonl"))
	slices.Sort(files)
	var all strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		all.Write(b)
	}
	return all.String()
}

// applyN records n commands, index from..from+n-1, as the FSM would.
func applyN(l *audit.Log, from, n int) {
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("i%d", i)
		in := &catalog.Instance{ID: id, Service: "web", KeyID: "key_1"}
		l.Applied(uint64(i), catalog.Command{Op: catalog.OpRegister, Instance: in, Reason: "api",
			Origin: &catalog.Origin{Time: time.Unix(int64(i), 0), Node: "n1"}}, catalog.Result{Instance: in})
	}
}

// appliedIndexes are the indexes of the applied journal's records, in
// order, read through Query.
func appliedIndexes(tb testing.TB, l *audit.Log) []uint64 {
	tb.Helper()
	if err := l.Durable(context.Background()); err != nil {
		tb.Fatal(err)
	}
	var out []uint64
	var cur *audit.Cursor
	for {
		p, err := l.Query(context.Background(), audit.Query{After: orStart(cur), Limit: audit.MaxLimit})
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range p.Records {
			if r.Index > 0 {
				out = append(out, r.Index)
			}
		}
		if !p.More {
			return out
		}
		cur = &p.Next
	}
}

func orStart(c *audit.Cursor) *audit.Cursor {
	if c == nil {
		return &audit.Cursor{}
	}
	return c
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestLog_AppliedOnceAcrossRestart: the log Raft replays after a
// restart (the entries after the latest snapshot, some of them recorded
// already) is recorded from where the journal ends, each index once.
func TestLog_AppliedOnceAcrossRestart(t *testing.T) {
	l, dir := openLog(t, nil)
	applyN(l, 1, 10)
	closeLog(t, l)
	l = reopen(t, dir, nil)
	applyN(l, 4, 12) // a snapshot at 3; the replay reaches 15
	if got := appliedIndexes(t, l); !slices.Equal(got, seq(1, 15)) {
		t.Fatalf("indexes recorded = %v, want 1 to 15 once each", got)
	}
}

// TestLog_TornLastLine: a line a crash cut short is cut off when the
// journal opens, and the next record begins a line of its own.
func TestLog_TornLastLine(t *testing.T) {
	l, dir := openLog(t, nil)
	applyN(l, 1, 3)
	closeLog(t, l)
	files, _ := filepath.Glob(filepath.Join(dir, "applied-*.jsonl"))
	f, err := os.OpenFile(files[len(files)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Longer than the record written after it: what the crash left must
	// go, not only be written over.
	f.WriteString(`{"time":"2026-12-10T09:00:00Z","action":"register","outcome":"ok","reason":"` + strings.Repeat("x", 600))
	f.Close()
	l = reopen(t, dir, nil)
	applyN(l, 3, 2) // 3 is on disk; 4 is new
	closeLog(t, l)
	text := journalText(t, dir, "applied")
	lines := strings.Split(text, "\n")
	if len(lines) != 5 || lines[4] != "" || strings.Contains(text, "xxx") {
		t.Fatalf("journal after a torn line:\n%s", text)
	}
	for _, line := range lines[:4] {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
	}
	l = reopen(t, dir, nil)
	if got := appliedIndexes(t, l); !slices.Equal(got, seq(1, 4)) {
		t.Fatalf("indexes = %v", got)
	}
}

// TestLog_RotationKeepsTheNewest: a journal past its size bound begins a
// new file, and keeps MaxFiles besides it: the newest records stay, the
// oldest go. Files are 0600 in a 0700 directory.
func TestLog_RotationKeepsTheNewest(t *testing.T) {
	cfg := func(c *audit.Config) { c.MaxFileSize, c.MaxFiles, c.SyncEvery = audit.MaxLine, 2, time.Millisecond }
	l, dir := openLog(t, cfg)
	const n = 200
	for i := 1; i <= n; i++ {
		l.Record(audit.Record{Action: audit.ActionHeartbeat, Outcome: audit.OutcomeRefused, Instance: fmt.Sprintf("i%03d", i), Caller: "192.0.2.9:1"})
		if i%10 == 0 && !l.WaitLocalSynced(uint64(i)) { // in batches of 10, so that every file fills
			t.Fatalf("%d records not written", i)
		}
	}
	closeLog(t, l)
	files, _ := filepath.Glob(filepath.Join(dir, "local-*.jsonl"))
	if len(files) != 3 {
		t.Fatalf("%d files kept, want 3 (2 besides the current): %v", len(files), files)
	}
	text := journalText(t, dir, "local")
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	var first int
	for i, line := range lines { // what is kept is the newest, in order, without a gap, to the last
		var k int
		if _, err := fmt.Sscanf(line[strings.Index(line, `"instance_id":"i`)+len(`"instance_id":"i`):], "%03d", &k); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if i == 0 {
			first = k
		} else if k != first+i {
			t.Fatalf("line %d holds i%03d, want i%03d:\n%s", i, k, first+i, text)
		}
	}
	if first+len(lines)-1 != n || first == 1 {
		t.Fatalf("kept i%03d to i%03d, want the newest up to i%03d and not the oldest", first, first+len(lines)-1, n)
	}
	for _, f := range files {
		fi, _ := os.Stat(f)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("%s is %v, want 0700", dir, fi.Mode().Perm())
	}
	l = reopen(t, dir, cfg)
	p, err := l.Query(context.Background(), audit.Query{Limit: 3})
	if err != nil || len(p.Records) != 3 || p.Records[2].Instance != "i200" || p.Records[0].Instance != "i198" {
		t.Fatalf("the newest 3 after a reopen = %+v, %v", p.Records, err)
	}
}

// TestLog_Restored: a snapshot that puts the catalog above the journal's
// highest index (the node never applied what it covers) is a record of
// its own, and the log goes on from it; the node's own snapshot at a
// restart, at an index the journal reaches, is not.
func TestLog_Restored(t *testing.T) {
	l, _ := openLog(t, nil)
	applyN(l, 1, 3)
	l.Restored(2, "n1") // a restart's own snapshot: covered
	l.Restored(40, "n1")
	applyN(l, 30, 15) // replayed before 40 by nobody: skipped; 41.. recorded
	if err := l.Durable(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, err := l.Query(context.Background(), audit.Query{After: &audit.Cursor{}, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range p.Records {
		got = append(got, fmt.Sprintf("%s@%d", r.Action, r.Index))
	}
	want := []string{"register@1", "register@2", "register@3", "snapshot_installed@40", "register@41", "register@42", "register@43", "register@44"}
	if !slices.Equal(got, want) {
		t.Fatalf("records = %v\nwant %v", got, want)
	}
	if r := p.Records[3]; r.Node != "n1" || r.Outcome != audit.OutcomeOK || !strings.Contains(r.Reason, "end at index 3") {
		t.Errorf("the snapshot's record = %+v", r)
	}
}

// TestLog_Durable: Durable returns once what was queued is fsynced, even
// when the periodic fsync is far off.
func TestLog_Durable(t *testing.T) {
	l, _ := openLog(t, func(c *audit.Config) { c.SyncEvery = time.Hour })
	applyN(l, 1, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := l.Durable(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Durable took %s", d)
	}
	if !l.Synced(50) {
		t.Error("Durable returned before the records were fsynced")
	}
}

// TestLog_NilRecordsNothing: a nil log is a log that keeps nothing.
func TestLog_NilRecordsNothing(t *testing.T) {
	var l *audit.Log
	l.Record(audit.Record{Action: audit.ActionRegister})
	l.Applied(1, catalog.Command{Op: catalog.OpDrain, ID: "x"}, catalog.Result{})
	l.Restored(1, "n")
	if err := l.Durable(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, err := l.Query(context.Background(), audit.Query{}); err != nil || len(p.Records) != 0 {
		t.Fatal(p, err)
	}
	if l.Close() != nil || l.Stats() != (audit.Stats{}) || l.Node() != "" {
		t.Fatal("nil log")
	}
}

func TestConfig_Validate(t *testing.T) {
	good := audit.DefaultConfig()
	good.Dir = t.TempDir()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*audit.Config){
		"no dir":         func(c *audit.Config) { c.Dir = "" },
		"tiny files":     func(c *audit.Config) { c.MaxFileSize = 100 },
		"no files kept":  func(c *audit.Config) { c.MaxFiles = 0 },
		"no sync":        func(c *audit.Config) { c.SyncEvery = 0 },
		"no queue":       func(c *audit.Config) { c.LocalQueue = 0 },
		"no readers":     func(c *audit.Config) { c.MaxReaders = 0 },
		"tiny budget":    func(c *audit.Config) { c.ReadBudget = 10 },
		"negative waits": func(c *audit.Config) { c.ApplyWait = -1 },
	} {
		c := good
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("%s: valid", name)
		}
	}
}

// TestLog_DamagedLinesCounted: a line in the middle of a journal that is
// not a record (a disk's damage, an edit) is skipped by reads, counted,
// and the log says so.
func TestLog_DamagedLinesCounted(t *testing.T) {
	logs := &testutil.Buffer{}
	l, dir := openLog(t, nil)
	applyN(l, 1, 3)
	closeLog(t, l)
	files, _ := filepath.Glob(filepath.Join(dir, "applied-*.jsonl"))
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	first, rest, _ := strings.Cut(string(b), "\n")
	damaged := first + "\n" + `{"time":"2026-12-10T09:00:00Z","act` + "\n" + "\x00\x00garbage\n" + rest
	if err := os.WriteFile(files[0], []byte(damaged), 0o600); err != nil {
		t.Fatal(err)
	}
	l = reopen(t, dir, func(c *audit.Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	if got := appliedIndexes(t, l); !slices.Equal(got, seq(1, 3)) {
		t.Fatalf("indexes = %v, want 1 to 3", got)
	}
	if n := l.Stats().Damaged; n < 2 {
		t.Fatalf("Stats().Damaged = %d, want at least the 2 damaged lines", n)
	}
	if !strings.Contains(logs.String(), "lines that are not records") {
		t.Fatalf("the damage is not logged:\n%s", logs)
	}
}

// TestLog_CursorBeyondRefused: a cursor past the end of the journals (of
// another node, or of a trail begun anew) is refused, not read as "now".
func TestLog_CursorBeyondRefused(t *testing.T) {
	l, _ := openLog(t, nil)
	applyN(l, 1, 3)
	if err := l.Durable(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, err := l.Query(context.Background(), audit.Query{After: &audit.Cursor{}})
	if err != nil || len(p.Records) != 3 {
		t.Fatalf("read from the start: %d records, %v", len(p.Records), err)
	}
	if _, err := l.Query(context.Background(), audit.Query{After: &p.Next}); err != nil {
		t.Fatalf("read from the end: %v", err)
	}
	for _, c := range []audit.Cursor{
		{Applied: audit.Pos{File: p.Next.Applied.File, Off: p.Next.Applied.Off + 1}},
		{Applied: audit.Pos{File: p.Next.Applied.File + 1}},
		{Applied: p.Next.Applied, Local: audit.Pos{File: 7, Off: 1}},
	} {
		if _, err := l.Query(context.Background(), audit.Query{After: &c}); !errors.Is(err, audit.ErrCursorBeyond) || !errors.Is(err, audit.ErrBadQuery) {
			t.Errorf("cursor %s: %v, want ErrCursorBeyond", c, err)
		}
	}
}

// TestLog_WholeLastRecordWithoutNewlineKept: a crash between a record's
// last byte and its newline leaves a whole record; it is kept, and the
// next record begins a line of its own.
func TestLog_WholeLastRecordWithoutNewlineKept(t *testing.T) {
	for _, zeros := range []bool{false, true} {
		t.Run(fmt.Sprintf("zeros after it %v", zeros), func(t *testing.T) { wholeLastRecord(t, zeros) })
	}
}

func wholeLastRecord(t *testing.T, zeros bool) {
	l, dir := openLog(t, nil)
	l.Record(audit.Record{Action: audit.ActionKeyList, Outcome: audit.OutcomeOK, Reason: "first"})
	l.Record(audit.Record{Action: audit.ActionKeyList, Outcome: audit.OutcomeOK, Reason: "second"})
	if !l.WaitLocalSynced(2) {
		t.Fatal("not written")
	}
	closeLog(t, l)
	files, _ := filepath.Glob(filepath.Join(dir, "local-*.jsonl"))
	fi, _ := os.Stat(files[0])
	if err := os.Truncate(files[0], fi.Size()-1); err != nil { // the newline
		t.Fatal(err)
	}
	if zeros {
		f, err := os.OpenFile(files[0], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(make([]byte, 4096)) // a power loss's zeroed block
		f.Close()
	}
	l = reopen(t, dir, nil)
	l.Record(audit.Record{Action: audit.ActionKeyList, Outcome: audit.OutcomeOK, Reason: "third"})
	if !l.WaitLocalSynced(1) {
		t.Fatal("not written")
	}
	closeLog(t, l)
	text := journalText(t, dir, "local")
	if lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n"); len(lines) != 3 || !strings.Contains(lines[1], "second") || !strings.Contains(lines[2], "third") {
		t.Fatalf("journal:\n%s", text)
	}
}

// TestLog_CursorOfAnotherNodeRefused: a cursor names the node that gave
// it; another node's, within this node's bounds or not, and a place
// inside a line (no read gives one), are refused, not read from a place
// that means nothing here (an outside review had one node's cursor skip
// another's records) and without counting damage.
func TestLog_CursorOfAnotherNodeRefused(t *testing.T) {
	l, _ := openLog(t, nil)
	l.SetNode("n1")
	applyN(l, 1, 5)
	if err := l.Durable(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, err := l.Query(context.Background(), audit.Query{After: &audit.Cursor{}, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	next := p.Next
	if next.Node == "" || !strings.HasSuffix(next.String(), "."+next.Node) {
		t.Fatalf("the cursor %s does not name its node", next)
	}
	if c, err := audit.ParseCursor(next.String()); err != nil || c != next {
		t.Fatalf("ParseCursor(%s) = %+v, %v", next, c, err)
	}
	if _, err := l.Query(context.Background(), audit.Query{After: &next}); err != nil {
		t.Fatalf("this node's own cursor: %v", err)
	}
	other := next
	other.Node = "0badc0de"
	midLine := audit.Cursor{Applied: audit.Pos{File: next.Applied.File, Off: next.Applied.Off - 3}, Node: next.Node}
	for name, c := range map[string]audit.Cursor{"another node's": other, "inside a line": midLine} {
		if _, err := l.Query(context.Background(), audit.Query{After: &c}); !errors.Is(err, audit.ErrCursorOtherNode) {
			t.Errorf("%s cursor %s: %v, want ErrCursorOtherNode", name, c, err)
		}
	}
	if n := l.Stats().Damaged; n != 0 {
		t.Errorf("%d damaged lines counted for a bad cursor", n)
	}
	// The four-number form gives no node: refused by a node that has one
	// (muster audit --follow then starts from the newest records), as is
	// a place in file 0, which no read gives.
	untagged := next
	untagged.Node = ""
	fileZero := audit.Cursor{Local: audit.Pos{File: 0, Off: 99}, Node: next.Node}
	for name, c := range map[string]audit.Cursor{"untagged": untagged, "file 0": fileZero} {
		if _, err := l.Query(context.Background(), audit.Query{After: &c}); !errors.Is(err, audit.ErrCursorOtherNode) {
			t.Errorf("%s cursor %s: %v, want ErrCursorOtherNode", name, c, err)
		}
	}
}
