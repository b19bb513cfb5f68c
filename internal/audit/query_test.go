package audit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
)

var t0 = time.Date(2026, 12, 10, 9, 0, 0, 0, time.UTC)

// fill writes a trail of n decisions, one a second from t0: the even
// ones from the applied log (registrations of service web or api), the
// odd ones refusals of this node, and waits until they are written.
func fill(tb testing.TB, l *audit.Log, n int) {
	tb.Helper()
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		svc := []string{"web", "api"}[i/2%2]
		if i%2 == 0 {
			in := &catalog.Instance{ID: fmt.Sprintf("i%d", i), Service: svc, KeyID: "key_1"}
			l.Applied(uint64(i+1), catalog.Command{Op: catalog.OpRegister, Instance: in, Reason: "api", Origin: &catalog.Origin{Time: at, Node: "n1"}},
				catalog.Result{Instance: in})
		} else {
			l.Record(audit.Record{Time: at, Action: audit.ActionRegister, Outcome: audit.OutcomeRefused, Reason: "unknown key",
				Service: svc, Instance: fmt.Sprintf("i%d", i), Caller: "192.0.2.1:1"})
		}
	}
	if err := l.Durable(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if !l.WaitLocalSynced(uint64(n / 2)) {
		tb.Fatal("local records not written")
	}
}

func ids(rs []audit.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Instance)
	}
	return out
}

func ii(from, to, step int) []string {
	var out []string
	for i := from; i <= to; i += step {
		out = append(out, fmt.Sprintf("i%d", i))
	}
	return out
}

func TestLog_Query(t *testing.T) {
	l, _ := openLog(t, nil)
	fill(t, l, 40)
	ctx := context.Background()
	cases := []struct {
		name string
		q    audit.Query
		want []string
		more bool
	}{
		{"the newest, both journals merged by time", audit.Query{Limit: 5}, ii(35, 39, 1), false},
		{"the newest of one outcome", audit.Query{Limit: 3, Outcome: audit.OutcomeRefused}, ii(35, 39, 2), false},
		{"the newest of one service", audit.Query{Limit: 4, Service: "api"}, []string{"i34", "i35", "i38", "i39"}, false},
		{"since a time", audit.Query{Since: t0.Add(30 * time.Second), Limit: 100}, ii(30, 39, 1), false},
		{"since a time, up to the limit", audit.Query{Since: t0.Add(10 * time.Second), Limit: 4}, ii(10, 13, 1), true},
		{"since a time between records", audit.Query{Since: t0.Add(30*time.Second + time.Millisecond), Limit: 3}, ii(31, 33, 1), true},
		{"since before everything", audit.Query{Since: t0.Add(-time.Hour), Limit: 2}, ii(0, 1, 1), true},
		{"since after everything", audit.Query{Since: t0.Add(time.Hour)}, nil, false},
		{"since, of one action and outcome", audit.Query{Since: t0.Add(30 * time.Second), Action: audit.ActionRegister, Outcome: audit.OutcomeOK}, ii(30, 38, 2), false},
		{"an action none has", audit.Query{Action: audit.ActionEvict}, nil, false},
		{"from the start", audit.Query{After: &audit.Cursor{}, Limit: 3}, ii(0, 2, 1), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := l.Query(ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(p.Records); !slices.Equal(got, c.want) || p.More != c.more {
				t.Errorf("records %v more %v, want %v more %v", got, p.More, c.want, c.more)
			}
		})
	}
}

// TestLog_QueryPages: reading page after page from the start (After)
// gives every record once, in order; a read whose budget of bytes runs
// out says so (More) and the next goes on from where it stopped; the
// cursor of the newest records goes on with what is written after.
func TestLog_QueryPages(t *testing.T) {
	for _, budget := range []int64{2 * audit.MaxLine, 8 << 20} {
		t.Run(fmt.Sprintf("budget %d", budget), func(t *testing.T) {
			l, _ := openLog(t, func(c *audit.Config) { c.ReadBudget = budget })
			fill(t, l, 300)
			var got []string
			cur := audit.Cursor{}
			pages := 0
			for {
				p, err := l.Query(context.Background(), audit.Query{After: &cur, Limit: 7})
				if err != nil {
					t.Fatal(err)
				}
				pages++
				got = append(got, ids(p.Records)...)
				cur = p.Next
				if !p.More {
					break
				}
				if pages > 1000 {
					t.Fatal("no end")
				}
			}
			if want := ii(0, 299, 1); !slices.Equal(got, want) {
				t.Fatalf("paged through %v", got)
			}
			// Nothing more, until more is written.
			if p, err := l.Query(context.Background(), audit.Query{After: &cur}); err != nil || len(p.Records) != 0 || p.More {
				t.Fatalf("after the end: %+v, %v", p, err)
			}
			newest, err := l.Query(context.Background(), audit.Query{Limit: 1})
			if err != nil || newest.Next != cur {
				t.Fatalf("the newest read's cursor %v, the end %v (%v)", newest.Next, cur, err)
			}
			l.Record(audit.Record{Action: audit.ActionKeyList, Outcome: audit.OutcomeOK, Instance: "late"})
			if !l.WaitLocalSynced(151) {
				t.Fatal("not written")
			}
			if p, err := l.Query(context.Background(), audit.Query{After: &cur}); err != nil || !slices.Equal(ids(p.Records), []string{"late"}) {
				t.Fatalf("after the end, once more was written: %+v, %v", p, err)
			}
		})
	}
}

// TestLog_QueryBusy: no more than MaxReaders reads run at once; the
// next waits ReadWait, then fails with ErrBusy.
func TestLog_QueryBusy(t *testing.T) {
	l, _ := openLog(t, func(c *audit.Config) { c.MaxReaders, c.ReadWait = 1, 50*time.Millisecond })
	release := l.HoldReader()
	start := time.Now()
	if _, err := l.Query(context.Background(), audit.Query{}); !errors.Is(err, audit.ErrBusy) {
		t.Fatalf("a read while the one slot is held: %v", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond || d > 2*time.Second {
		t.Errorf("it waited %s", d)
	}
	release()
	if _, err := l.Query(context.Background(), audit.Query{}); err != nil {
		t.Fatal(err)
	}
}

// TestLog_Wait: Wait returns at once when the journals hold more than the
// cursor; otherwise at the next write, or when ctx ends.
func TestLog_Wait(t *testing.T) {
	l, _ := openLog(t, nil)
	fill(t, l, 4)
	p, _ := l.Query(context.Background(), audit.Query{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	l.Wait(ctx, p.Next)
	if time.Since(start) < 40*time.Millisecond {
		t.Fatal("Wait returned with nothing new")
	}
	done := make(chan struct{})
	go func() {
		l.Wait(context.Background(), p.Next)
		close(done)
	}()
	time.Sleep(20 * time.Millisecond)
	l.Record(audit.Record{Action: audit.ActionKeyList, Outcome: audit.OutcomeOK})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after a write")
	}
	l.Wait(context.Background(), audit.Cursor{}) // there is something after the start: at once
}

func TestQuery_Validate(t *testing.T) {
	for _, q := range []audit.Query{
		{Limit: -1}, {Limit: audit.MaxLimit + 1}, {Action: "drop_tables"}, {Outcome: "maybe"}, {Service: `a"b`},
	} {
		if err := q.Validate(); !errors.Is(err, audit.ErrBadQuery) {
			t.Errorf("%+v: %v", q, err)
		}
	}
	for _, a := range audit.Actions() {
		if err := (audit.Query{Action: a, Limit: audit.MaxLimit}).Validate(); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
}

func TestCursor_String(t *testing.T) {
	c := audit.Cursor{Applied: audit.Pos{File: 3, Off: 12345}, Local: audit.Pos{File: 1, Off: 0}}
	s := c.String()
	if s != "3.12345.1.0" {
		t.Fatalf("String = %q", s)
	}
	back, err := audit.ParseCursor(s)
	if err != nil || back != c {
		t.Fatalf("ParseCursor(%q) = %+v, %v", s, back, err)
	}
	for _, bad := range []string{"", "1.2.3", "1.2.3.4.5", "1.2.3.-4", "01.2.3.4", "1.2.3.4 ", "+1.2.3.4", "a.b.c.d", "1..3.4", "99999999999999999999.0.0.0"} {
		if _, err := audit.ParseCursor(bad); !errors.Is(err, audit.ErrBadQuery) {
			t.Errorf("ParseCursor(%q): %v", bad, err)
		}
	}
}

// TestLog_NewestReachesTheLocalJournal: a read of the newest records
// whose filter matches nothing in a large applied journal still reads
// the local journal, which holds every refusal: the budget is shared, not
// spent on the first journal. And a read that could not reach a
// journal's start says so (Partial).
func TestLog_NewestReachesTheLocalJournal(t *testing.T) {
	l, _ := openLog(t, func(c *audit.Config) { c.ReadBudget = 64 << 10 })
	l.Record(audit.Record{Time: t0, Action: audit.ActionRegister, Outcome: audit.OutcomeRefused, Reason: "unknown key",
		Service: "web", Instance: "refused", Caller: "192.0.2.1:1"})
	for i := range 2000 { // about 500 KB: eight budgets' worth
		in := &catalog.Instance{ID: fmt.Sprintf("i%d", i), Service: "api", KeyID: "key_1"}
		l.Applied(uint64(i+1), catalog.Command{Op: catalog.OpRegister, Instance: in, Reason: "api",
			Origin: &catalog.Origin{Time: t0.Add(time.Duration(i+1) * time.Second), Node: "n1"}}, catalog.Result{Instance: in})
	}
	if err := l.Durable(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !l.WaitLocalSynced(1) {
		t.Fatal("local record not written")
	}
	p, err := l.Query(context.Background(), audit.Query{Outcome: audit.OutcomeRefused, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(p.Records); !slices.Equal(got, []string{"refused"}) {
		t.Fatalf("the newest refusals: %v, want the one in the local journal", got)
	}
	if !p.Partial {
		t.Fatal("the applied journal was not read to its start, and the page does not say so")
	}
	// Everything read within the budget: not partial.
	p, err = l.Query(context.Background(), audit.Query{Service: "api", Limit: 5})
	if err != nil || len(p.Records) != 5 || p.Partial {
		t.Fatalf("the newest 5 of api: %d records, partial %v (%v)", len(p.Records), p.Partial, err)
	}
}
