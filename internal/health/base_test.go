package health

import (
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

func TestLiveness_base(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	inst := &catalog.Instance{ID: "a", RegisteredAt: t0, TTL: time.Second, CreateIndex: 7}
	for _, tc := range []struct {
		name  string
		beat  time.Time // zero: none heard
		floor time.Time
		mark  *mark
		want  time.Time
	}{
		// A registration committed before its first Beat reached the
		// tracker must not look a TTL old to a leader that has led for long.
		{"registered, not yet beaten", time.Time{}, t0.Add(-time.Hour), nil, t0},
		{"heartbeat after registration", t0.Add(5 * time.Second), t0.Add(-time.Hour), nil, t0.Add(5 * time.Second)},
		{"restart: floor wins over an old registration", time.Time{}, t0.Add(time.Hour), nil, t0.Add(time.Hour)},
		{"restart: floor wins over an old heartbeat", t0.Add(time.Minute), t0.Add(time.Hour), nil, t0.Add(time.Hour)},
		{"heartbeat after the floor", t0.Add(2 * time.Hour), t0.Add(time.Hour), nil, t0.Add(2 * time.Hour)},

		// The wall clock stepped back across a restart: the registration
		// time in the log reads later than the moment this node began to
		// judge. An instance applied before the mark cannot have
		// registered after it, so the floor (later than the mark) wins.
		{"clock stepped back: future registration capped at the mark",
			time.Time{}, t0.Add(-time.Hour + 10*time.Second), &mark{index: 7, at: t0.Add(-time.Hour)}, t0.Add(-time.Hour + 10*time.Second)},
		{"clock stepped back, mark after the floor: capped at the mark",
			time.Time{}, t0.Add(-time.Hour), &mark{index: 9, at: t0.Add(-time.Minute)}, t0.Add(-time.Minute)},
		// Registered during this term (applied after the mark): its own
		// registration time stands, however late.
		{"registered after the mark keeps its time",
			time.Time{}, t0.Add(-time.Hour), &mark{index: 6, at: t0.Add(-time.Hour)}, t0},
		// A registration applied before the mark and stamped before it is
		// untouched by it.
		{"registered before the mark, stamped before it",
			time.Time{}, t0.Add(-time.Hour), &mark{index: 7, at: t0.Add(time.Second)}, t0},
		// A heartbeat is on the monotonic clock: the mark does not apply.
		{"heartbeat later than the mark",
			t0.Add(time.Minute), t0.Add(-time.Hour), &mark{index: 7, at: t0.Add(-time.Hour)}, t0.Add(time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			if !tc.beat.IsZero() {
				tr.Beat(inst.ID, tc.beat)
			}
			if got := base(inst, tr.read(inst.ID), tc.floor, tc.mark); !got.Equal(tc.want) {
				t.Fatalf("base = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLiveness_status(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	floor := t0.Add(-time.Hour)
	for _, tc := range []struct {
		name   string
		status catalog.Status
		beat   time.Duration // after t0; <0: none
		now    time.Duration // after t0
		floor  time.Time
		mark   *mark
		want   catalog.Status
	}{
		{"fresh", catalog.StatusPassing, 0, 500 * time.Millisecond, floor, nil, catalog.StatusPassing},
		{"ttl ran out, not yet swept", catalog.StatusPassing, 0, 1500 * time.Millisecond, floor, nil, catalog.StatusCritical},
		{"draining and expired", catalog.StatusDraining, 0, 1500 * time.Millisecond, floor, nil, catalog.StatusCritical},
		{"draining and fresh", catalog.StatusDraining, 0, 500 * time.Millisecond, floor, nil, catalog.StatusDraining},
		{"critical stays critical", catalog.StatusCritical, 0, 0, floor, nil, catalog.StatusCritical},
		{"draining and not ready", catalog.StatusDraining, -1, time.Hour, time.Time{}, nil, catalog.StatusDraining},
		{"not ready: catalog status stands", catalog.StatusPassing, -1, time.Hour, time.Time{}, nil, catalog.StatusPassing},
		{"within grace after restart", catalog.StatusPassing, -1, 2 * time.Hour, t0.Add(2 * time.Hour), nil, catalog.StatusPassing},
		// RegisteredAt (t0) is an hour after the mark: a clock stepped back.
		{"future registration from before the mark expires from the floor",
			catalog.StatusPassing, -1, -time.Hour + 12*time.Second, t0.Add(-time.Hour + 10*time.Second), &mark{index: 1, at: t0.Add(-time.Hour)}, catalog.StatusCritical},
		{"future registration from before the mark, within grace",
			catalog.StatusPassing, -1, -time.Hour + 11*time.Second, t0.Add(-time.Hour + 10*time.Second), &mark{index: 1, at: t0.Add(-time.Hour)}, catalog.StatusPassing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			inst := &catalog.Instance{ID: "a", Status: tc.status, RegisteredAt: t0, TTL: time.Second, CreateIndex: 1}
			if tc.status == catalog.StatusDraining {
				inst.Status, inst.Draining = catalog.StatusPassing, true
			}
			if tc.beat >= 0 {
				tr.Beat("a", t0.Add(tc.beat))
			}
			if got := status(inst, tr.read("a"), tc.floor, t0.Add(tc.now), tc.mark, nil); got != tc.want {
				t.Fatalf("status = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTracker_Retain(t *testing.T) {
	tr := NewTracker()
	now := time.Now()
	for _, id := range []string{"a", "b", "c"} {
		tr.Beat(id, now)
	}
	tr.Retain(func(id string) bool { return id != "b" })
	if _, ok := tr.Seen("b"); ok {
		t.Fatal("b is still held")
	}
	for _, id := range []string{"a", "c"} {
		if _, ok := tr.Seen(id); !ok {
			t.Fatalf("%s was dropped", id)
		}
	}
}
