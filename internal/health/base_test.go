package health

import (
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

func TestTracker_Base(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	inst := &catalog.Instance{ID: "a", RegisteredAt: t0, TTL: time.Second}
	for _, tc := range []struct {
		name  string
		beat  time.Time // zero: none heard
		floor time.Time
		want  time.Time
	}{
		// A registration committed before its first Beat reached the
		// tracker must not look a TTL old to a leader that has led for long.
		{"registered, not yet beaten", time.Time{}, t0.Add(-time.Hour), t0},
		{"heartbeat after registration", t0.Add(5 * time.Second), t0.Add(-time.Hour), t0.Add(5 * time.Second)},
		{"restart: floor wins over an old registration", time.Time{}, t0.Add(time.Hour), t0.Add(time.Hour)},
		{"restart: floor wins over an old heartbeat", t0.Add(time.Minute), t0.Add(time.Hour), t0.Add(time.Hour)},
		{"heartbeat after the floor", t0.Add(2 * time.Hour), t0.Add(time.Hour), t0.Add(2 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			if !tc.beat.IsZero() {
				tr.Beat(inst.ID, tc.beat)
			}
			if got := tr.Base(inst, tc.floor); !got.Equal(tc.want) {
				t.Fatalf("Base = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTracker_Status(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	floor := t0.Add(-time.Hour)
	for _, tc := range []struct {
		name   string
		status catalog.Status
		beat   time.Duration // after t0; <0: none
		now    time.Duration // after t0
		floor  time.Time
		want   catalog.Status
	}{
		{"fresh", catalog.StatusPassing, 0, 500 * time.Millisecond, floor, catalog.StatusPassing},
		{"ttl ran out, not yet swept", catalog.StatusPassing, 0, 1500 * time.Millisecond, floor, catalog.StatusCritical},
		{"draining and expired", catalog.StatusDraining, 0, 1500 * time.Millisecond, floor, catalog.StatusCritical},
		{"draining and fresh", catalog.StatusDraining, 0, 500 * time.Millisecond, floor, catalog.StatusDraining},
		{"critical stays critical", catalog.StatusCritical, 0, 0, floor, catalog.StatusCritical},
		{"draining and not ready", catalog.StatusDraining, -1, time.Hour, time.Time{}, catalog.StatusDraining},
		{"not ready: catalog status stands", catalog.StatusPassing, -1, time.Hour, time.Time{}, catalog.StatusPassing},
		{"within grace after restart", catalog.StatusPassing, -1, 2 * time.Hour, t0.Add(2 * time.Hour), catalog.StatusPassing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker()
			inst := &catalog.Instance{ID: "a", Status: tc.status, RegisteredAt: t0, TTL: time.Second}
			if tc.status == catalog.StatusDraining {
				inst.Status, inst.Draining = catalog.StatusPassing, true
			}
			if tc.beat >= 0 {
				tr.Beat("a", t0.Add(tc.beat))
			}
			if got := tr.Status(inst, tc.floor, t0.Add(tc.now)); got != tc.want {
				t.Fatalf("Status = %q, want %q", got, tc.want)
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
