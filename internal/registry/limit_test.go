package registry

import (
	"fmt"
	"testing"
	"time"
)

func TestBuckets_AllowSpend(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := newBuckets(3, time.Second)
	for i := 0; i < 10; i++ {
		if ok, _ := l.Allow(t0, "k"); !ok {
			t.Fatal("attempts that do not fail were refused")
		}
	}
	for i := 0; i < 3; i++ {
		l.Spend(t0, "k")
	}
	if ok, wait := l.Allow(t0, "k"); ok || wait != time.Second {
		t.Fatalf("after 3 failures: %v, wait %s; want refused, 1s", ok, wait)
	}
	if ok, _ := l.Allow(t0, "other"); !ok {
		t.Fatal("another name was refused")
	}
	if ok, _ := l.Allow(t0, "k", "other"); ok {
		t.Fatal("allowed with one of the names spent")
	}
	if ok, _ := l.Allow(t0.Add(time.Second), "k"); !ok {
		t.Fatal("no token back after the refill period")
	}
	// Concurrent failures overdraw; the debt is paid before the next try.
	for i := 0; i < 5; i++ {
		l.Spend(t0.Add(time.Second), "d")
	}
	if ok, wait := l.Allow(t0.Add(time.Second), "d"); ok || wait != 3*time.Second {
		t.Fatalf("after overdrawing by 2: %v, wait %s; want refused, 3s", ok, wait)
	}
}

func TestBuckets_sweep(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := newBuckets(1, time.Second)
	for i := 0; i < maxBuckets; i++ {
		l.Spend(t0, fmt.Sprint(i))
	}
	l.Spend(t0.Add(time.Hour), "new")
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets held after they all refilled, want 1", n)
	}
}

func TestCallerNet(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:5000":             "192.0.2.7",
		"[::ffff:192.0.2.7]:1":       "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"not an address":             "not an address",
	} {
		if got := callerNet(in); got != want {
			t.Errorf("callerNet(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSlotPool_Shares pins the pool's fairness: a lone caller may take
// half the capacity; callers that keep every slot they can get (their
// callbacks ending and restarting together, the worst case) settle at
// their shares, and a newcomer then always finds slots; the tutorial
// protocol's callers, however many, hold at most half; and every release
// gives its slot back.
func TestSlotPool_Shares(t *testing.T) {
	const max, minShare = 128, 4
	p := newSlotPool()
	greedy := func(caller string, seed bool) (n int, release []func()) {
		for {
			r, ok := p.take(max, minShare, caller, seed)
			if !ok {
				return n, release
			}
			n++
			release = append(release, r)
		}
	}
	if n, rel := greedy("fleet", false); n != max/2 {
		t.Fatalf("a lone caller took %d slots, want %d", n, max/2)
	} else {
		for _, r := range rel {
			r()
		}
	}

	held := map[string][]func(){}
	for round := range 8 {
		for i := range 8 {
			c := fmt.Sprintf("evil-%d", i)
			for _, r := range held[c] { // its callbacks end …
				r()
			}
			_, held[c] = greedy(c, false) // … and it takes all it can again
		}
		got, rel := greedy("newcomer", false)
		// The first rounds are the transient: callers that took more when
		// fewer were active give the excess back as their callbacks end
		// (four rounds: four callback timeouts at most).
		if round >= 4 && got < minShare {
			t.Fatalf("round %d: a newcomer found %d slots beside 8 greedy callers", round, got)
		}
		for _, r := range rel {
			r()
		}
	}
	for i := range 8 {
		if n := len(held[fmt.Sprintf("evil-%d", i)]); n > max/9+1 {
			t.Errorf("greedy caller %d settled at %d slots, over its share %d", i, n, max/9)
		}
	}
	for _, rel := range held {
		for _, r := range rel {
			r()
		}
	}

	// The tutorial protocol's callers, one per address, hold at most half.
	seedTotal := 0
	var seedRel []func()
	for i := range 200 {
		n, rel := greedy(fmt.Sprintf("seed|127.0.%d.1", i), true)
		seedTotal += n
		seedRel = append(seedRel, rel...)
	}
	if seedTotal != max/2 {
		t.Fatalf("tutorial callers hold %d slots, want %d", seedTotal, max/2)
	}
	if n, rel := greedy("keyed", false); n < minShare {
		t.Fatalf("a keyed caller found %d slots beside the tutorial callers", n)
	} else {
		for _, r := range rel {
			r()
		}
	}
	for _, r := range seedRel {
		r()
		r() // a second release changes nothing
	}
	if p.total != 0 || p.seed != 0 || p.keyed != 0 || p.seeded != 0 || len(p.byCaller) != 0 {
		t.Fatalf("after every release: %+v", p)
	}
}
