package health

import (
	"testing"
	"time"
)

func TestOverdueAfter(t *testing.T) {
	const ttl = 3 * time.Second
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	snap := func(gaps ...time.Duration) snapshot {
		s := snapshot{ok: true, n: len(gaps)}
		copy(s.intervals[:], gaps)
		return s
	}
	for _, tc := range []struct {
		name string
		s    snapshot
		want time.Duration
	}{
		{"never heard: TTL/3", snapshot{}, ms(1500)},
		// The first gap runs from the registration: a first heartbeat
		// right after it must not make the instance overdue at once.
		{"one short gap: TTL/3", snap(ms(20)), ms(1500)},
		{"two gaps: TTL/3", snap(ms(20), ms(900)), ms(1500)},
		{"three gaps: their median", snap(ms(20), ms(900), ms(800)), ms(1200)},
		{"eight gaps, one late: the median ignores it", snap(ms(1000), ms(1000), ms(1000), ms(2900), ms(1000), ms(950), ms(1050), ms(1000)), ms(1500)},
		{"chatty: at least TTL/10", snap(ms(10), ms(10), ms(10)), ms(450)},
		{"slow: at most TTL", snap(ms(5000), ms(5000), ms(5000)), ms(4500)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := overdueAfter(tc.s, ttl, 1.5); got != tc.want {
				t.Errorf("overdueAfter = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHold_deadline(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	const ttl = 10 * time.Second
	floor := at(-100)
	on := &hold{floor: floor, start: at(0), bound: at(120)}
	released := &hold{floor: floor, start: at(0), bound: at(120), end: at(30)}
	lateRelease := &hold{floor: floor, start: at(0), bound: at(120), end: at(115)}
	bounded := &hold{floor: floor, start: at(0), bound: at(120), end: at(120)}
	for _, tc := range []struct {
		name  string
		h     *hold
		floor time.Time
		due   time.Time
		want  time.Time
	}{
		{"no hold", nil, floor, at(5), at(5)},
		{"ran out before the hold: not held", on, floor, at(0), at(0)},
		{"runs out during the hold: held to the bound", on, floor, at(5), at(120)},
		{"runs out after the bound", on, floor, at(130), at(130)},
		{"another floor: ignored", on, at(50), at(5), at(5)},
		{"released: one more TTL from the release", released, floor, at(5), at(40)},
		{"released, heard again since", released, floor, at(45), at(45)},
		{"released near the bound: the bound wins", lateRelease, floor, at(5), at(120)},
		{"ran to its bound: due at the bound", bounded, floor, at(5), at(120)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.deadline(tc.due, ttl, tc.floor); !got.Equal(tc.want) {
				t.Errorf("deadline = t0%+v, want t0%+v", got.Sub(t0), tc.want.Sub(t0))
			}
		})
	}
}

func TestHold_counts(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	floor := at(-100)
	on := &hold{floor: floor, start: at(0), since: at(0), bound: at(120)}
	resumed := &hold{floor: floor, start: at(0), since: at(40), bound: at(120), resumed: true}
	released := &hold{floor: floor, start: at(0), since: at(0), bound: at(120), end: at(30)}
	for _, tc := range []struct {
		name string
		h    *hold
		base time.Time
		now  time.Time
		want bool
	}{
		{"no hold: every overdue counts", nil, at(5), at(10), true},
		{"on, silent since before it began", on, at(-2), at(10), true},
		{"on, silent since the moment it began", on, at(0), at(10), true},
		{"on, heard since it began", on, at(5), at(10), false},
		{"resumed, heard before it resumed", resumed, at(35), at(50), true},
		{"resumed, heard since it resumed", resumed, at(45), at(50), false},
		{"released: every overdue counts", released, at(35), at(40), true},
		{"past its bound: every overdue counts", on, at(125), at(130), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.counts(tc.base, floor, tc.now); got != tc.want {
				t.Errorf("counts = %v, want %v", got, tc.want)
			}
		})
	}
	if on.counts(at(5), at(50), at(10)) != true {
		t.Error("a hold of another floor limits the count")
	}
}

func TestHold_overAndNext(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	h := func(end int, resumed bool) *hold {
		n := &hold{start: at(0), since: at(0), bound: at(120), resumed: resumed}
		if end >= 0 {
			n.end = at(end)
		}
		return n
	}
	for _, tc := range []struct {
		name     string
		h        *hold
		now      time.Time
		over     bool
		cooldown time.Duration
		next     time.Time
	}{
		{"on", h(-1, false), at(60), false, 0, time.Time{}},
		{"on, its bound passed (not yet swept)", h(-1, false), at(121), true, 120 * time.Second, at(240)},
		{"ran to its bound", h(120, false), at(121), true, 120 * time.Second, at(240)},
		{"ran to its bound, short cooldown", h(120, false), at(121), true, 10 * time.Second, at(130)},
		{"ended by itself, may resume", h(30, false), at(60), false, 0, time.Time{}},
		{"ended by itself, its bound passed", h(30, false), at(121), true, 120 * time.Second, at(150)},
		{"ended by itself, short cooldown: not before its bound", h(30, false), at(121), true, 10 * time.Second, at(120)},
		{"ended after it resumed", h(50, true), at(60), true, 120 * time.Second, at(170)},
		{"resumed and on", h(-1, true), at(60), false, 0, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.over(tc.now); got != tc.over {
				t.Fatalf("over = %v, want %v", got, tc.over)
			}
			if !tc.over {
				return
			}
			if got := tc.h.next(tc.cooldown); !got.Equal(tc.next) {
				t.Errorf("next = t0%+v, want t0%+v", got.Sub(t0), tc.next.Sub(t0))
			}
		})
	}
}

func TestProtectionConfig_cooldown(t *testing.T) {
	p := DefaultProtectionConfig()
	if p.Cooldown != 0 || p.cooldown() != p.MaxHold {
		t.Errorf("default cooldown %v (field %v), want MaxHold %v", p.cooldown(), p.Cooldown, p.MaxHold)
	}
	p.Cooldown = time.Second
	if p.cooldown() != time.Second {
		t.Errorf("cooldown %v, want 1s", p.cooldown())
	}
}
