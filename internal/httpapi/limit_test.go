package httpapi

import (
	"sync"
	"testing"
	"time"
)

func TestFailureLimiter_Take(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := newFailureLimiter(3, time.Second)
	for i := 0; i < 3; i++ {
		if ok, _ := l.Take(t0, "k"); !ok {
			t.Fatalf("take %d refused within the burst", i)
		}
	}
	if ok, wait := l.Take(t0, "k"); ok || wait != time.Second {
		t.Fatalf("fourth take = %v, wait %s; want refused, 1s", ok, wait)
	}
	if ok, _ := l.Take(t0, "other"); !ok {
		t.Fatal("another name was refused")
	}
	if ok, _ := l.Take(t0.Add(time.Second), "k"); !ok {
		t.Fatal("no token back after the refill period")
	}
	// All or nothing across names.
	if ok, _ := l.Take(t0.Add(time.Second), "k", "fresh"); ok {
		t.Fatal("took with one bucket empty")
	}
	if ok, _ := l.Take(t0.Add(time.Second), "fresh"); !ok {
		t.Fatal("a refused multi-take spent a token of the other bucket")
	}
	// Refunds forget full buckets.
	l.Refund(t0.Add(time.Hour), "k")
	if _, ok := l.buckets["k"]; ok {
		t.Fatal("a full bucket is still held")
	}
}

// TestFailureLimiter_Concurrent: concurrent attempts cannot overdraw, since
// the token is taken when the attempt starts.
func TestFailureLimiter_Concurrent(t *testing.T) {
	l := newFailureLimiter(3, time.Hour)
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := l.Take(now, "k"); ok {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if granted != 3 {
		t.Fatalf("%d of 50 concurrent attempts granted, want 3", granted)
	}
}
