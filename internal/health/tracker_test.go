package health_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/health"
)

// epoch is an arbitrary fixed instant; tests express times as offsets from it.
var epoch = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func at(d time.Duration) time.Time { return epoch.Add(d) }

// beats records a heartbeat of id at each offset, in order.
func beats(tb testing.TB, tr *health.Tracker, id string, offsets ...time.Duration) {
	tb.Helper()
	for _, d := range offsets {
		tr.Beat(id, at(d))
	}
}

// every returns n+1 offsets from start, gap apart: n gaps.
func every(start, gap time.Duration, n int) []time.Duration {
	out := make([]time.Duration, 0, n+1)
	for i := 0; i <= n; i++ {
		out = append(out, start+time.Duration(i)*gap)
	}
	return out
}

func TestTracker_Freshness(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name  string
		ttl   time.Duration
		beats []time.Duration
		now   time.Duration
		want  float64
	}{
		// A new instance has no gaps: regularity is 0.5, quality 0.5 × recency.
		{name: "fresh no gaps", ttl: 9 * s, beats: []time.Duration{0}, now: 0, want: 0.5},
		{name: "fresh no gaps at half TTL", ttl: 9 * s, beats: []time.Duration{0}, now: 4500 * time.Millisecond, want: 0.5},
		{name: "fresh no gaps at 0.75 TTL", ttl: 8 * s, beats: []time.Duration{0}, now: 6 * s, want: 0.25},
		{name: "fresh no gaps at full TTL", ttl: 9 * s, beats: []time.Duration{0}, now: 9 * s, want: 0},
		{name: "age beyond TTL", ttl: 9 * s, beats: every(0, 3*s, 8), now: 24*s + 10*s, want: 0},
		{name: "age far beyond TTL", ttl: 9 * s, beats: every(0, 3*s, 8), now: 24*s + time.Hour, want: 0},

		// Heartbeats at TTL/3, as the SDK sends them.
		{name: "8 gaps at TTL/3", ttl: 9 * s, beats: every(0, 3*s, 8), now: 24 * s, want: 1},
		{name: "8 gaps at TTL/3 aged half TTL", ttl: 9 * s, beats: every(0, 3*s, 8), now: 24*s + 4500*time.Millisecond, want: 1},
		{name: "8 regular gaps aged 0.75 TTL", ttl: 8 * s, beats: every(0, 2*s, 8), now: 16*s + 6*s, want: 0.5},
		{name: "4 gaps at TTL/3", ttl: 9 * s, beats: every(0, 3*s, 4), now: 12 * s, want: 0.75},
		{name: "1 gap at TTL/3", ttl: 9 * s, beats: every(0, 3*s, 1), now: 3 * s, want: 0.563}, // (1 + 7×0.5)/8 = 0.5625

		// Gaps at 0.75 TTL score 0.5 each.
		{name: "8 gaps at 0.75 TTL", ttl: 8 * s, beats: every(0, 6*s, 8), now: 48 * s, want: 0.5},
		// A gap of a full TTL scores 0.
		{name: "one missed beat among 8", ttl: 9 * s, beats: append(every(0, 3*s, 7), 21*s+9*s), now: 30 * s, want: 0.875},
		{name: "8 gaps of full TTL", ttl: 9 * s, beats: every(0, 9*s, 8), now: 72 * s, want: 0},

		// Only the last 8 gaps count.
		{name: "old bad gaps forgotten", ttl: 9 * s, beats: append(every(0, 9*s, 8), every(72*s+3*s, 3*s, 7)...), now: 72*s + 24*s, want: 1},
		{name: "half the ring refreshed", ttl: 9 * s, beats: append(every(0, 9*s, 8), every(72*s+3*s, 3*s, 3)...), now: 72*s + 12*s, want: 0.5},

		// Rounding to three decimals.
		{name: "rounds down", ttl: 3 * s, beats: []time.Duration{0}, now: 2 * s, want: 0.333}, // 0.5 × 2/3
		{name: "rounds up", ttl: 7 * s, beats: []time.Duration{0}, now: 4 * s, want: 0.429},   // 0.5 × 6/7
		{name: "rounds tiny to zero", ttl: 10 * s, beats: []time.Duration{0}, now: 10*s - time.Millisecond, want: 0},

		// Degenerate inputs.
		{name: "zero TTL", ttl: 0, beats: []time.Duration{0}, now: 0, want: 0},
		{name: "negative TTL", ttl: -s, beats: []time.Duration{0}, now: 0, want: 0},
		{name: "now before last beat", ttl: 9 * s, beats: []time.Duration{10 * s}, now: 5 * s, want: 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := health.NewTracker()
			beats(t, tr, "i1", tt.beats...)
			got := tr.Freshness("i1", tt.ttl, at(tt.now))
			if got.Quality != tt.want {
				t.Errorf("Quality = %v, want %v", got.Quality, tt.want)
			}
			// Age is the time since the newest beat, never negative.
			if want := max(tt.now-slices.Max(tt.beats), 0); got.Age != want {
				t.Errorf("Age = %v, want %v", got.Age, want)
			}
			if got.Quality < 0 || got.Quality > 1 {
				t.Errorf("Quality %v outside [0,1]", got.Quality)
			}
		})
	}
}

func TestTracker_Freshness_unknown(t *testing.T) {
	tr := health.NewTracker()
	tr.Beat("other", epoch)
	got := tr.Freshness("never", 10*time.Second, epoch)
	if got.Age != -1 || got.Quality != 0 {
		t.Errorf("Freshness(unknown) = %+v, want Age -1, Quality 0", got)
	}
	if _, ok := tr.Seen("never"); ok {
		t.Error("Seen(unknown) = true")
	}
}

func TestTracker_Beat(t *testing.T) {
	const ttl = 9 * time.Second
	tr := health.NewTracker()
	steps := []struct {
		name     string
		beat     time.Duration
		wantSeen time.Duration
		wantQ    float64 // Quality at wantSeen
	}{
		{"first", 10 * time.Second, 10 * time.Second, 0.5},
		{"older beat arrives late", 5 * time.Second, 10 * time.Second, 0.5},
		{"duplicate beat", 10 * time.Second, 10 * time.Second, 0.5},
		// The gap is measured from the newest beat (10s), not the late one
		// (5s): 3s scores 1, so (1 + 7×0.5)/8.
		{"next beat", 13 * time.Second, 13 * time.Second, 0.563},
		{"late again", 11 * time.Second, 13 * time.Second, 0.563},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			tr.Beat("i1", at(st.beat))
			seen, ok := tr.Seen("i1")
			if !ok || !seen.Equal(at(st.wantSeen)) {
				t.Errorf("Seen = %v, %v; want %v", seen, ok, at(st.wantSeen))
			}
			if q := tr.Freshness("i1", ttl, at(st.wantSeen)).Quality; q != st.wantQ {
				t.Errorf("Quality = %v, want %v", q, st.wantQ)
			}
		})
	}
}

func TestTracker_Forget(t *testing.T) {
	const ttl = 9 * time.Second
	tr := health.NewTracker()
	beats(t, tr, "i1", every(0, 3*time.Second, 8)...)
	beats(t, tr, "i2", 0)
	if q := tr.Freshness("i1", ttl, at(24*time.Second)).Quality; q != 1 {
		t.Fatalf("Quality before Forget = %v, want 1", q)
	}

	tr.Forget("i1")
	if _, ok := tr.Seen("i1"); ok {
		t.Error("Seen after Forget = true")
	}
	if f := tr.Freshness("i1", ttl, at(24*time.Second)); f.Age != -1 || f.Quality != 0 {
		t.Errorf("Freshness after Forget = %+v", f)
	}
	if ids := tr.IDs(); !slices.Equal(ids, []string{"i2"}) {
		t.Errorf("IDs() = %v, want [i2]", ids)
	}
	tr.Forget("never") // no-op

	// A later beat starts a new history: no gap back to the forgotten beats.
	tr.Beat("i1", at(30*time.Second))
	if q := tr.Freshness("i1", ttl, at(30*time.Second)).Quality; q != 0.5 {
		t.Errorf("Quality after Forget and one beat = %v, want 0.5", q)
	}
}

func TestTracker_IDs(t *testing.T) {
	tr := health.NewTracker()
	if ids := tr.IDs(); len(ids) != 0 {
		t.Errorf("IDs() of empty tracker = %v", ids)
	}
	for _, id := range []string{"c", "a", "b", "a"} {
		tr.Beat(id, epoch)
	}
	ids := tr.IDs()
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"a", "b", "c"}) {
		t.Errorf("IDs() = %v, want a b c", ids)
	}
}

func TestTracker_concurrent(t *testing.T) {
	// Beat, Seen, Freshness, IDs and Forget race freely; -race checks the
	// locking and the invariant that Seen never goes backwards.
	tr := health.NewTracker()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("i", g%3)
			var last time.Time
			for i := range 500 {
				tr.Beat(id, at(time.Duration(i)*time.Millisecond))
				if g%3 == 0 && i%50 == 0 {
					tr.Forget(id)
					last = time.Time{}
					continue
				}
				_ = tr.Freshness(id, time.Second, at(time.Duration(i)*time.Millisecond))
				_ = tr.IDs()
				if g%3 != 0 {
					seen, ok := tr.Seen(id)
					if ok && seen.Before(last) {
						t.Errorf("Seen(%s) went back from %v to %v", id, last, seen)
						return
					}
					last = seen
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkTracker_Beat(b *testing.B) {
	tr := health.NewTracker()
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x", i)
		tr.Beat(ids[i], epoch)
	}
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)) * 7919
		now := epoch
		for pb.Next() {
			i++
			now = now.Add(time.Millisecond)
			tr.Beat(ids[i%len(ids)], now)
		}
	})
}

func BenchmarkTracker_Freshness(b *testing.B) {
	tr := health.NewTracker()
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x", i)
		beats(b, tr, ids[i], every(0, 3*time.Second, 8)...)
	}
	now := at(25 * time.Second)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		_ = tr.Freshness(ids[i%len(ids)], 9*time.Second, now)
	}
}

// TestTracker_Intervals: the gaps come oldest first, the oldest dropped
// once the history is full; none before a second heartbeat.
func TestTracker_Intervals(t *testing.T) {
	tr := health.NewTracker()
	t0 := time.Unix(1000, 0)
	if got := tr.Intervals("x"); got != nil {
		t.Fatalf("unknown: %v", got)
	}
	tr.Beat("x", t0)
	if got := tr.Intervals("x"); len(got) != 0 {
		t.Fatalf("one beat: %v", got)
	}
	at := t0
	for i := 1; i <= 11; i++ {
		at = at.Add(time.Duration(i) * time.Second)
		tr.Beat("x", at)
	}
	got := tr.Intervals("x")
	if len(got) != 8 || got[0] != 4*time.Second || got[7] != 11*time.Second {
		t.Fatalf("intervals after 11 gaps of 1..11 s: %v; want 4 s to 11 s", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+time.Second {
			t.Fatalf("not oldest first: %v", got)
		}
	}
}
