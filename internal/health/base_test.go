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
