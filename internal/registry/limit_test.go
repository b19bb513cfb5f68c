package registry

import (
	"fmt"
	"testing"
	"time"
)

func TestFailureLimiter_AllowFail(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := newFailureLimiter(3, time.Second)
	for i := 0; i < 10; i++ {
		if ok, _ := l.Allow(t0, "k"); !ok {
			t.Fatal("attempts that do not fail were refused")
		}
	}
	for i := 0; i < 3; i++ {
		l.Fail(t0, "k")
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
		l.Fail(t0.Add(time.Second), "d")
	}
	if ok, wait := l.Allow(t0.Add(time.Second), "d"); ok || wait != 3*time.Second {
		t.Fatalf("after overdrawing by 2: %v, wait %s; want refused, 3s", ok, wait)
	}
}

func TestFailureLimiter_sweep(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := newFailureLimiter(1, time.Second)
	for i := 0; i < maxBuckets; i++ {
		l.Fail(t0, fmt.Sprint(i))
	}
	l.Fail(t0.Add(time.Hour), "new")
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
