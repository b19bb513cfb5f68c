package health

import (
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/musterhq/muster/internal/catalog"
)

// TestTracker_SnapConsistentUnderWrites: a reader without a lock never
// sees a half-written beat. The writer's k-th gap is k ms (beat k at
// k(k+1)/2 ms), so a consistent read whose last beat is beat k holds the
// gaps k, k-1, … down to k-n+1 and no other: a read that mixed one beat's
// last time with another's gaps shows it.
func TestTracker_SnapConsistentUnderWrites(t *testing.T) {
	tr := NewTracker()
	start := time.Now()
	tr.Beat("a", start)
	r := tr.get("a")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := tr.snap(r)
				if !s.ok {
					t.Error("a heard record read as never heard")
					return
				}
				ms := s.last.Sub(start).Milliseconds()
				k := int64(0)
				for k*(k+1)/2 < ms {
					k++
				}
				if k*(k+1)/2 != ms || int64(s.n) != min(k, historyLen) {
					t.Errorf("last beat at %d ms with %d gaps: not a beat the writer made", ms, s.n)
					return
				}
				for i := range s.n {
					if g := s.intervals[i].Milliseconds(); g > k || g <= k-int64(s.n) {
						t.Errorf("after beat %d, a gap of %d ms (gaps %v): a torn read", k, g, s.intervals[:s.n])
						return
					}
				}
			}
		}()
	}
	for k := int64(1); k <= 200000; k++ {
		tr.Beat("a", start.Add(time.Duration(k*(k+1)/2)*time.Millisecond))
	}
	close(stop)
	wg.Wait()
}

// TestLiveness_RecordsFollowTheTracker: a lookup through a view's cached
// records sees each heartbeat; an instance not heard yet reads as never
// heard, and its first heartbeat, recorded after the records were built,
// is seen through them; a record dropped from the tracker (a heartbeat
// racing a removal) is read from the tracker again, not from the cache;
// and a new view of the service gets new records.
func TestLiveness_RecordsFollowTheTracker(t *testing.T) {
	tr := NewTracker()
	l := NewLiveness(LivenessConfig{}, tr, nil, nil)
	now := time.Now()
	a := &catalog.Instance{ID: "a", Service: "web", TTL: 10 * time.Second}
	b := &catalog.Instance{ID: "b", Service: "web", TTL: 10 * time.Second}
	v := &catalog.ServiceView{Name: "web", Index: 1, Instances: []*catalog.Instance{a, b}}
	tr.Beat("a", now.Add(-2*time.Second))
	rs := l.Records(v)
	if l.Records(v) != rs {
		t.Fatal("the records of one view were built twice")
	}
	age := func(i int) time.Duration {
		_, f := l.ViewAt(rs, i, time.Time{}, now)
		return f.Age
	}
	if got := age(0); got != 2*time.Second {
		t.Fatalf("a's age = %v, want 2s", got)
	}
	if got := age(1); got != -1 {
		t.Fatalf("b, never heard, has age %v, want -1", got)
	}
	tr.Beat("b", now.Add(-time.Second))
	if got := age(1); got != time.Second {
		t.Fatalf("b's first heartbeat, after the records were built: age %v, want 1s", got)
	}
	tr.Forget("a")
	tr.Beat("a", now.Add(-500*time.Millisecond))
	if got := age(0); got != 500*time.Millisecond {
		t.Fatalf("a, dropped and heard again: age %v through the cached records, want 500ms", got)
	}
	v2 := &catalog.ServiceView{Name: "web", Index: 2, Instances: []*catalog.Instance{b}}
	if rs2 := l.Records(v2); rs2 == rs || len(rs2.recs) != 1 {
		t.Fatal("a new view of the service kept the old records")
	}
}

// TestTracker_Len: the count of records follows creation by a heartbeat
// or a lookup, Forget and Retain, so that the sweep can tell whether a
// collection would find anything without walking every record.
func TestTracker_Len(t *testing.T) {
	tr := NewTracker()
	now := time.Now()
	tr.Beat("a", now)
	tr.Beat("a", now.Add(time.Second))
	tr.ensure("b") // a lookup asked for it
	tr.Beat("c", now)
	if n := tr.Len(); n != 3 {
		t.Fatalf("Len = %d after three instances, want 3", n)
	}
	tr.Forget("a")
	tr.Forget("a")
	tr.Retain(func(id string) bool { return id != "c" })
	if n := tr.Len(); n != 1 {
		t.Fatalf("Len = %d after dropping two, want 1", n)
	}
}

// TestRecord_Size: there is a record for every instance, and it is kept
// to 128 bytes, a size class of Go's allocator (the next is 144).
func TestRecord_Size(t *testing.T) {
	if n := unsafe.Sizeof(record{}); n > 128 {
		t.Fatalf("a record is %d bytes, over 128", n)
	}
}

// TestRecord_Gaps: gaps are kept to the millisecond, and one longer than
// the longest kept is kept as that.
func TestRecord_Gaps(t *testing.T) {
	var r record
	for i, tc := range []struct{ in, want time.Duration }{
		{3333*time.Millisecond + 999*time.Microsecond, 3333 * time.Millisecond},
		{0, 0},
		{400 * 24 * time.Hour, maxGapMS * time.Millisecond},
	} {
		r.storeGap(uint8(i), tc.in)
		if got := r.gap(i); got != tc.want {
			t.Errorf("gap %v kept as %v, want %v", tc.in, got, tc.want)
		}
	}
}
