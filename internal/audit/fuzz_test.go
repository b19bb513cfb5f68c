package audit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/audit"
)

// FuzzParseCursor: no input makes ParseCursor panic, and what it accepts
// is exactly what String writes.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"0.0.0.0", "3.12345.1.0", "1.2.3", "01.2.3.4", "-1.0.0.0", "9223372036854775807.1.1.1", "1.2.3.4\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := audit.ParseCursor(s)
		if err != nil {
			return
		}
		if c.String() != s {
			t.Fatalf("ParseCursor(%q) = %+v, which String writes as %q", s, c, c.String())
		}
		if c.Applied.Off < 0 || c.Local.Off < 0 {
			t.Fatalf("a negative offset: %+v", c)
		}
	})
}

// FuzzJournal: whatever a journal file holds (damage, a line cut short,
// lines of any length, bytes that are no JSON), opening it never fails
// or panics, every read ends, returns only records, and the journal goes
// on recording after it.
func FuzzJournal(f *testing.F) {
	f.Add([]byte(`{"time":"2026-12-10T09:00:00Z","action":"register","outcome":"ok","index":3}` + "\n"))
	f.Add([]byte(`{"time":"2026-12-10T09:00:00Z","action":"register","outcome":"ok","index":3}` + "\n" + `{"time":"20`))
	f.Add([]byte("\n\n\x00\x00\x00"))
	f.Add([]byte(`{"action":"evict","outcome":"refused","index":18446744073709551615}` + "\n"))
	f.Add([]byte(`{"time":"not a time","action":"x"}` + "\n" + `[1,2]` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(t.TempDir(), "audit")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"applied-00000001.jsonl", "local-00000001.jsonl"} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cfg := audit.DefaultConfig()
		cfg.Dir, cfg.ReadBudget, cfg.SyncEvery = dir, 64<<10, time.Millisecond
		l, err := audit.Open(cfg)
		if err != nil {
			t.Fatalf("open over damage: %v", err)
		}
		defer l.Close()
		ctx := context.Background()
		for _, q := range []audit.Query{
			{}, {After: &audit.Cursor{}}, {Since: time.Date(2026, 12, 10, 9, 0, 0, 0, time.UTC)}, {Action: audit.ActionRegister, Service: "web"},
			{After: &audit.Cursor{Applied: audit.Pos{File: 1, Off: int64(len(data) / 2)}, Local: audit.Pos{File: 9, Off: 1 << 40}}},
		} {
			p, err := l.Query(ctx, q)
			if q.After != nil && q.After.Local.File == 9 {
				// Beyond the local journal's end: refused, whatever the data.
				if !errors.Is(err, audit.ErrCursorBeyond) {
					t.Fatalf("%+v: %v, want ErrCursorBeyond", q, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%+v: %v", q, err)
			}
			for _, r := range p.Records {
				if r.Action == "" {
					t.Fatalf("a record without an action: %+v", r)
				}
			}
		}
		l.Record(audit.Record{Action: audit.ActionKeyList, Outcome: audit.OutcomeOK, Instance: "after-damage"})
		if !l.WaitLocalSynced(1) {
			t.Fatal("the journal did not go on after damage")
		}
		p, err := l.Query(ctx, audit.Query{Limit: 1, Action: audit.ActionKeyList})
		if err != nil || len(p.Records) != 1 || p.Records[0].Instance != "after-damage" {
			t.Fatalf("the record written after the damage: %+v, %v", p.Records, err)
		}
	})
}
