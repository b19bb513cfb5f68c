package health_test

import (
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
)

func TestLiveness_Floor(t *testing.T) {
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	leading := true
	lead := &leadership{since: since, ok: func(int) bool { return leading }}
	live := health.NewLiveness(health.LivenessConfig{Grace: 10 * time.Second}, health.NewTracker(), lead, nil)

	if f, ok := live.Floor(); !ok || !f.Equal(since.Add(10*time.Second)) {
		t.Fatalf("Floor() = %v, %v; want since+grace", f, ok)
	}
	// A pause moves the start of judgement forward, never back.
	live.Rebase(since.Add(time.Minute))
	live.Rebase(since.Add(30 * time.Second))
	if s, ok := live.Leading(); !ok || !s.Equal(since.Add(time.Minute)) {
		t.Fatalf("Leading() after Rebase = %v, %v; want since+1m", s, ok)
	}
	if f, _ := live.Floor(); !f.Equal(since.Add(time.Minute + 10*time.Second)) {
		t.Fatalf("Floor() after Rebase = %v", f)
	}
	// A later term starts from its own time.
	lead.mu.Lock()
	lead.since = since.Add(time.Hour)
	lead.mu.Unlock()
	if s, _ := live.Leading(); !s.Equal(since.Add(time.Hour)) {
		t.Fatalf("Leading() in a later term = %v", s)
	}
	// Not a ready leader: no floor, no judgement, and Rebase does nothing.
	leading = false
	if _, ok := live.Floor(); ok {
		t.Fatal("Floor() ok while not a ready leader")
	}
	live.Rebase(since.Add(2 * time.Hour))
	leading = true
	if s, _ := live.Leading(); !s.Equal(since.Add(time.Hour)) {
		t.Fatalf("Rebase while not leading moved Leading() to %v", s)
	}
}

func TestLiveness_StatusAgreesWithView(t *testing.T) {
	since := time.Now().Add(-time.Hour)
	tr := health.NewTracker()
	live := health.NewLiveness(health.LivenessConfig{Grace: time.Second}, tr, &leadership{since: since}, nil)
	inst := &catalog.Instance{ID: "i1", TTL: 5 * time.Second, Status: catalog.StatusPassing, RegisteredAt: since}
	floor, _ := live.Floor()
	now := time.Now()
	live.Beat("i1", now.Add(-10*time.Second))
	st, _ := live.View(inst, floor, now)
	if got := live.Status(inst, floor, now); got != st || got != catalog.StatusCritical {
		t.Fatalf("Status = %q, View says %q; want critical", got, st)
	}
	if got, want := live.Base(inst, floor), now.Add(-10*time.Second); !got.Equal(want) {
		t.Fatalf("Base = %v, want the last beat %v", got, want)
	}
	live.Beat("i1", now)
	st, f := live.View(inst, floor, now)
	if st != catalog.StatusPassing || f.Age != 0 || live.Status(inst, floor, now) != st {
		t.Fatalf("View after a beat = %q, %+v", st, f)
	}
	live.Forget("i1")
	if _, ok := tr.Seen("i1"); ok {
		t.Fatal("Forget did not reach the tracker")
	}
}

func TestLivenessConfig_Validate(t *testing.T) {
	if err := health.DefaultLivenessConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (health.LivenessConfig{Grace: -1}).Validate(); err == nil {
		t.Fatal("negative grace accepted")
	}
}

// TestLiveness_Expired: the TTL part of the status rule alone, whatever
// the catalog committed: a committed-critical instance with a fresh
// heartbeat has not expired, one silent past its TTL has, and one with no
// TTL never does.
func TestLiveness_Expired(t *testing.T) {
	since := time.Now().Add(-time.Hour)
	live := health.NewLiveness(health.LivenessConfig{Grace: time.Second}, health.NewTracker(), &leadership{since: since}, nil)
	floor, _ := live.Floor()
	now := time.Now()
	fresh := &catalog.Instance{ID: "fresh", TTL: 5 * time.Second, Status: catalog.StatusCritical, RegisteredAt: since}
	silent := &catalog.Instance{ID: "silent", TTL: 5 * time.Second, Status: catalog.StatusPassing, RegisteredAt: since}
	checkOnly := &catalog.Instance{ID: "check-only", Status: catalog.StatusPassing, RegisteredAt: since}
	live.Beat("fresh", now.Add(-time.Second))
	live.Beat("silent", now.Add(-10*time.Second))
	if live.Expired(fresh, floor, now) || !live.Expired(silent, floor, now) || live.Expired(checkOnly, floor, now) {
		t.Fatalf("Expired: fresh %v, silent %v, check-only %v", live.Expired(fresh, floor, now),
			live.Expired(silent, floor, now), live.Expired(checkOnly, floor, now))
	}
}
