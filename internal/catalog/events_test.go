package catalog_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// eventLine is an event as a test compares it.
func eventLine(e *catalog.Event) string {
	s := fmt.Sprintf("%d %s %s %s", e.Index, e.Type, e.Instance.ID, e.Instance.Status)
	if e.Instance.Draining {
		s += " draining"
	}
	if e.Replaced != nil {
		s += " replaced=" + e.Replaced.ID
	}
	if e.Reason != "" {
		s += " reason=" + e.Reason
	}
	return s
}

func eventLines(evs []*catalog.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, eventLine(e))
	}
	return out
}

func TestEvents_oneEventPerInstanceChange(t *testing.T) {
	l := newReplica()
	l.must(t, createKey(newKey("k1", "*")))                                                                                        // 1: keys make no event
	l.must(t, register(newInstance("a", "web", "10.0.0.1", 80)))                                                                   // 2
	l.must(t, register(newInstance("b", "web", "10.0.0.1", 80)))                                                                   // 3: replaces a
	l.must(t, catalog.Command{Op: catalog.OpDrain, ID: "b"})                                                                       // 4
	l.must(t, catalog.Command{Op: catalog.OpDrain, ID: "b"})                                                                       // 5: already draining: no event
	l.must(t, catalog.Command{Op: catalog.OpSetStatus, ID: "b", Status: catalog.StatusCritical, IfStatus: catalog.StatusDraining}) // 6
	l.must(t, catalog.Command{Op: catalog.OpDeregister, ID: "b", IfStatus: catalog.StatusCritical})                                // 7: the sweep's removal
	l.must(t, register(newInstance("c", "db", "10.0.0.2", 5432)))                                                                  // 8
	l.must(t, catalog.Command{Op: catalog.OpEvict, ID: "c", Until: t0.Add(time.Hour), Reason: "bad"})                              // 9
	l.must(t, register(newInstance("d", "db", "10.0.0.3", 5432)))                                                                  // 10
	l.must(t, catalog.Command{Op: catalog.OpDeregister, ID: "d"})                                                                  // 11
	if res := l.apply(catalog.Command{Op: catalog.OpDeregister, ID: "d"}); res.Err == nil {                                        // 12: refused: no event
		t.Fatal("second deregister succeeded")
	}

	evs, ok, _ := l.c.Events(0, 0, nil)
	if !ok {
		t.Fatal("Events(0) not ok on a fresh catalog")
	}
	want := []string{
		"2 registered a passing",
		"3 registered b passing replaced=a",
		"4 status b passing draining",
		"6 status b critical draining",
		"7 deregistered b critical draining reason=expired",
		"8 registered c passing",
		"9 deregistered c passing reason=evicted",
		"10 registered d passing",
		"11 deregistered d passing reason=deregistered",
	}
	got := eventLines(evs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}

	// Resuming after any index gives exactly the events above it.
	for after := uint64(0); after <= 12; after++ {
		evs, ok, _ := l.c.Events(after, 0, nil)
		if !ok {
			t.Fatalf("Events(%d) not ok", after)
		}
		var wantAfter []string
		for i, w := range want {
			var idx uint64
			fmt.Sscan(w, &idx)
			if idx > after {
				wantAfter = want[i:]
				break
			}
		}
		if fmt.Sprint(eventLines(evs)) != fmt.Sprint(wantAfter) {
			t.Fatalf("Events(%d) = %q, want %q", after, eventLines(evs), wantAfter)
		}
	}
	// A limit takes the oldest first.
	if evs, _, _ := l.c.Events(3, 2, nil); fmt.Sprint(eventLines(evs)) != fmt.Sprint(want[2:4]) {
		t.Fatalf("Events(3, max 2) = %q", eventLines(evs))
	}
	// An index above the catalog's is not this catalog's: start again.
	if _, ok, _ := l.c.Events(13, 0, nil); ok {
		t.Fatal("Events after the catalog's index reported ok")
	}
}

func TestEvents_boundedHistory(t *testing.T) {
	l := &replica{c: catalog.New(catalog.WithEventHistory(4))}
	l.must(t, createKey(newKey("k1", "*")))
	for i := range 10 {
		l.must(t, register(newInstance(fmt.Sprint("i", i), "web", "10.0.0.1", 1000+i))) // indexes 2..11
	}
	evs, ok, _ := l.c.Events(7, 0, nil)
	if !ok || len(evs) != 4 || evs[0].Index != 8 || evs[3].Index != 11 {
		t.Fatalf("Events(7) = %q, %v; want the last 4", eventLines(evs), ok)
	}
	// Event 7 was dropped: a reader that stopped at 6 has lost it.
	if _, ok, _ := l.c.Events(6, 0, nil); ok {
		t.Fatal("Events(6) reported ok after event 7 was dropped")
	}
	if _, ok, _ := l.c.Events(11, 0, nil); !ok {
		t.Fatal("Events at the newest index not ok")
	}
}

func TestEvents_restoreStartsHistoryAtTheSnapshot(t *testing.T) {
	src := newReplica()
	src.must(t, createKey(newKey("k1", "*")), register(newInstance("a", "web", "10.0.0.1", 80)), register(newInstance("b", "web", "10.0.0.2", 80)))
	snap := snapshotJSON(t, src.c)

	dst := newReplica()
	dst.must(t, createKey(newKey("k1", "*")))
	_, _, next := dst.c.Events(1, 0, nil)
	if err := dst.c.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-next:
	default:
		t.Fatal("Restore did not wake those waiting for events")
	}
	if _, ok, _ := dst.c.Events(1, 0, nil); ok {
		t.Fatal("Events before the snapshot's index reported ok after Restore")
	}
	evs, ok, _ := dst.c.Events(3, 0, nil)
	if !ok || len(evs) != 0 {
		t.Fatalf("Events(3) after Restore = %q, %v", eventLines(evs), ok)
	}
	index, views := dst.c.SnapshotOf(nil)
	if index != 3 || len(views) != 1 || len(views[0].Instances) != 2 {
		t.Fatalf("SnapshotOf = %d, %d views", index, len(views))
	}
	dst.idx = 3
	dst.must(t, catalog.Command{Op: catalog.OpDrain, ID: "a"})
	if evs, ok, _ := dst.c.Events(3, 0, nil); !ok || fmt.Sprint(eventLines(evs)) != "[4 status a passing draining]" {
		t.Fatalf("Events(3) = %q, %v", eventLines(evs), ok)
	}
}

func TestEvents_nextClosesOnTheNextEventOnly(t *testing.T) {
	l := newReplica()
	l.must(t, createKey(newKey("k1", "*")))
	_, _, next := l.c.Events(0, 0, nil)
	l.must(t, createKey(newKey("k2", "*"))) // no instance changed
	select {
	case <-next:
		t.Fatal("a key's creation woke event readers")
	default:
	}
	l.must(t, register(newInstance("a", "web", "10.0.0.1", 80)))
	select {
	case <-next:
	default:
		t.Fatal("a registration did not wake event readers")
	}
}

func TestSnapshotOf_namedServices(t *testing.T) {
	l := newReplica()
	l.must(t, createKey(newKey("k1", "*")), register(newInstance("a", "web", "10.0.0.1", 80)), register(newInstance("b", "db", "10.0.0.1", 81)))
	index, views := l.c.SnapshotOf([]string{"web", "nope"})
	if index != 3 || len(views) != 1 || views[0].Name != "web" {
		t.Fatalf("SnapshotOf(web, nope) = %d, %v", index, views)
	}
	if _, views := l.c.SnapshotOf(nil); len(views) != 2 || views[0].Name != "db" {
		t.Fatalf("SnapshotOf(nil) = %v", views)
	}
}

// TestEvents_Recent: a service's newest events, newest first, at most
// as many as asked, from what the bounded history still holds.
func TestEvents_Recent(t *testing.T) {
	l := &replica{c: catalog.New(catalog.WithEventHistory(6))}
	l.must(t, createKey(newKey("k1", "*")))
	for i := range 5 {
		l.must(t, register(newInstance(fmt.Sprint("w", i), "web", "10.0.0.1", 1000+i))) // 2..6
		l.must(t, register(newInstance(fmt.Sprint("d", i), "db", "10.0.0.2", 1000+i)))  // 3..11, odd
	}
	got := l.c.Recent("web", 10)
	if len(got) != 3 || got[0].Instance.ID != "w4" || got[2].Instance.ID != "w2" {
		t.Fatalf("Recent(web) = %q; want w4, w3, w2 (the history holds the last 6 events)", eventLines(got))
	}
	if got := l.c.Recent("db", 2); len(got) != 2 || got[0].Instance.ID != "d4" || got[1].Instance.ID != "d3" {
		t.Fatalf("Recent(db, 2) = %q", eventLines(got))
	}
	if got := l.c.Recent("none", 5); len(got) != 0 {
		t.Fatalf("Recent(none) = %q", eventLines(got))
	}
}
