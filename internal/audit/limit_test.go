package audit_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/audit"
)

// fakeClock is a clock a test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestLog_RefusalsLimitedPerNetwork: a network that floods refusals has
// its burst recorded one by one, then its rate; the rest are one summary
// record naming the network and the count. Another network's records are
// written whatever the flood.
func TestLog_RefusalsLimitedPerNetwork(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)}
	l, _ := openLog(t, func(c *audit.Config) { c.Now = clock.now })
	refuse := func(caller string, n int) {
		for i := range n {
			l.Record(audit.Record{Action: audit.ActionDrain, Outcome: audit.OutcomeRefused, Reason: "wrong token",
				Caller: fmt.Sprintf(caller, i%250+1)})
		}
	}
	refuse("192.0.2.%d:5000", 1000) // one /24, many hosts
	clock.add(time.Second)          // 20 more
	refuse("192.0.2.%d:5001", 1000)
	refuse("[2001:db8:1:%x::1]:80", 10) // another network
	l.Record(audit.Record{Action: audit.ActionKeyList, Outcome: audit.OutcomeOK, Caller: "198.51.100.9:1"})
	l.Summarize()
	if !l.WaitLocalSynced(200 + 20 + 10 + 1 + 1) {
		t.Fatal("the records were not written")
	}
	count := func(q audit.Query) []audit.Record {
		p, err := l.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		return p.Records
	}
	if n := len(count(audit.Query{Action: audit.ActionDrain, Limit: audit.MaxLimit})); n != 230 {
		t.Errorf("%d refusals recorded one by one, want the burst (200), a second's rate (20) and the other network's 10", n)
	}
	sums := count(audit.Query{Action: audit.ActionSuppressed})
	if len(sums) != 1 || sums[0].Caller != "192.0.2.0/24" || !strings.Contains(sums[0].Reason, "1780 records of requests (the first a drain)") {
		t.Fatalf("summaries: %+v", sums)
	}
	if len(count(audit.Query{Action: audit.ActionKeyList})) != 1 {
		t.Error("a decision carried out was not recorded")
	}
	l.Summarize() // nothing more suppressed: no summary
	time.Sleep(50 * time.Millisecond)
	if n := len(count(audit.Query{Action: audit.ActionSuppressed})); n != 1 {
		t.Errorf("%d summaries after a quiet window, want 1", n)
	}
}

// TestLog_NoRoomDropsLocalRecords: while the disk has no room for them,
// this node's own records are dropped and counted, and the applied log's
// records are still written.
func TestLog_NoRoomDropsLocalRecords(t *testing.T) {
	l, dir := openLog(t, nil)
	var full sync.Mutex
	room := true
	l.SetRoom(func() bool { full.Lock(); defer full.Unlock(); return room })
	l.Record(audit.Record{Action: audit.ActionKeyList, Outcome: audit.OutcomeOK, Reason: "before"})
	if !l.WaitLocalSynced(1) {
		t.Fatal("not written")
	}
	full.Lock()
	room = false
	full.Unlock()
	for range 5 {
		l.Record(audit.Record{Action: audit.ActionKeyList, Outcome: audit.OutcomeOK, Reason: "while full"})
	}
	applyN(l, 1, 3)
	if !l.WaitLocalSynced(6) {
		t.Fatal("the dropped records are waited for")
	}
	closeLog(t, l)
	if local := journalText(t, dir, "local"); strings.Contains(local, "while full") || !strings.Contains(local, "before") {
		t.Fatalf("local journal:\n%s", local)
	}
	if l.Stats().Dropped != 5 {
		t.Errorf("dropped = %d, want 5", l.Stats().Dropped)
	}
	if got := strings.Count(journalText(t, dir, "applied"), "\n"); got != 3 {
		t.Errorf("%d applied records, want 3", got)
	}
}

// TestLog_RecordsLimitedInAll: records that were carried out count too (a
// no-op drain, an admin's read), and many networks together are held to
// the total rate: past it, the rest are summarised.
func TestLog_RecordsLimitedInAll(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)}
	l, _ := openLog(t, func(c *audit.Config) { c.Now = clock.now })
	for n := range 30 { // 30 networks of 100 records each: 3000 > the total burst
		for i := range 100 {
			l.Record(audit.Record{Action: audit.ActionDrain, Outcome: audit.OutcomeOK, Reason: "already draining",
				Caller: fmt.Sprintf("10.%d.0.%d:80", n, i+1)})
		}
	}
	l.Summarize()
	if !l.WaitLocalSynced(2000) {
		t.Fatal("not written")
	}
	time.Sleep(50 * time.Millisecond)
	p, err := l.Query(context.Background(), audit.Query{Action: audit.ActionDrain, Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(p.Records); n != audit.MaxLimit {
		t.Fatalf("%d records on the first page, want a full page", n)
	}
	all, sums := 0, 0
	for _, r := range everyRecord(t, l) {
		switch r.Action {
		case audit.ActionDrain:
			all++
		case audit.ActionSuppressed:
			sums++
		}
	}
	if all != 2000 || sums == 0 {
		t.Fatalf("%d records written one by one (want the total burst, 2000), %d summaries", all, sums)
	}
}

// TestLog_SummariesBounded: a flood from thousands of networks writes at
// most 64 summaries of single networks a window (those that sent the
// most) and one for all the others, and every suppressed record is
// counted in one of them.
func TestLog_SummariesBounded(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)}
	l, _ := openLog(t, func(c *audit.Config) { c.Now = clock.now })
	sent := 0
	for n := range 3000 { // 3000 /24s: past the total burst, each is suppressed
		k := 1
		if n >= 2990 {
			k = 50 // the last ten networks send the most
		}
		for i := range k {
			l.Record(audit.Record{Action: audit.ActionDrain, Outcome: audit.OutcomeRefused, Reason: "wrong token",
				Caller: fmt.Sprintf("10.%d.%d.%d:80", n/256, n%256, i+1)})
			sent++
		}
	}
	l.Summarize()
	if !l.WaitLocalSynced(2000) {
		t.Fatal("not written")
	}
	time.Sleep(100 * time.Millisecond)
	var sums []audit.Record
	one := 0
	for _, r := range everyRecord(t, l) {
		switch r.Action {
		case audit.ActionDrain:
			one++
		case audit.ActionSuppressed:
			sums = append(sums, r)
		}
	}
	if len(sums) != 65 {
		t.Fatalf("%d summaries, want 64 networks' and one for the rest", len(sums))
	}
	counted := 0
	for _, r := range sums {
		var n int
		fmt.Sscanf(r.Reason, "%d records", &n)
		counted += n
	}
	if one+counted != sent {
		t.Fatalf("%d written one by one and %d in summaries, of %d", one, counted, sent)
	}
	if last := sums[len(sums)-1]; last.Caller != "other networks" {
		t.Fatalf("the last summary is %+v, want the others'", last)
	}
	for _, r := range sums[:10] { // the heaviest first, in the order written
		if !strings.HasPrefix(r.Reason, "50 records") {
			t.Errorf("summary %q: want the networks that sent the most first", r.Reason)
		}
	}
}

// everyRecord reads the whole trail, page after page from the start.
func everyRecord(t *testing.T, l *audit.Log) []audit.Record {
	t.Helper()
	var out []audit.Record
	after := &audit.Cursor{}
	for {
		p, err := l.Query(context.Background(), audit.Query{After: after, Limit: audit.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Records...)
		if !p.More {
			return out
		}
		after = &p.Next
	}
}
