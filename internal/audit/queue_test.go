package audit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestQueue_OrderAndBound: records come out in the order they went in,
// across the ring's growth and its wrapping round; a full queue refuses
// and says when it has room again.
func TestQueue_OrderAndBound(t *testing.T) {
	q := newQueue(100)
	next, out := 0, 0
	var got []Record
	for round := range 50 {
		for range round%7 + 3 {
			if ok, _ := q.push(Record{Index: uint64(next)}); !ok {
				t.Fatalf("queue of %d refused a record", q.len())
			}
			next++
		}
		got = q.take(got[:0], round%9+4)
		for _, r := range got {
			if r.Index != uint64(out) {
				t.Fatalf("record %d came out where %d was due", r.Index, out)
			}
			out++
		}
	}
	for q.len() < 100 {
		if ok, _ := q.push(Record{Index: uint64(next)}); !ok {
			t.Fatalf("refused at %d of 100", q.len())
		}
		next++
	}
	ok, room := q.push(Record{})
	if ok || room == nil {
		t.Fatal("a full queue took a record")
	}
	select {
	case <-room:
		t.Fatal("room before the writer took anything")
	default:
	}
	got = q.take(got[:0], 1000)
	select {
	case <-room:
	default:
		t.Fatal("taking records did not say there is room")
	}
	for _, r := range got {
		if r.Index != uint64(out) {
			t.Fatalf("record %d came out where %d was due", r.Index, out)
		}
		out++
	}
	if out != next || q.len() != 0 {
		t.Fatalf("%d of %d records came out, %d left", out, next, q.len())
	}
}

// TestQueue_LetsGoOfABurst: the ring grows only as far as the records
// queued at once, and a burst's large ring is let go once it empties:
// what a long steady run holds is what it queues at once, not the bound.
func TestQueue_LetsGoOfABurst(t *testing.T) {
	q := newQueue(32768)
	for i := range 100000 { // a steady run: never more than 10 queued
		q.push(Record{Index: uint64(i)})
		if i%10 == 9 {
			q.take(nil, maxBatch)
		}
	}
	if len(q.buf) > queueFirst {
		t.Fatalf("a queue never holding more than 10 grew to %d places", len(q.buf))
	}
	for i := range 20000 {
		q.push(Record{Index: uint64(i)})
	}
	if len(q.buf) < 20000 {
		t.Fatalf("20,000 records in %d places", len(q.buf))
	}
	for q.len() > 0 {
		q.take(nil, maxBatch)
	}
	if q.buf != nil {
		t.Fatalf("the burst's ring of %d places is kept after it emptied", len(q.buf))
	}
}

// TestQueue_ConcurrentWriters: many goroutines push, one takes, as the
// FSM, the handlers and the journal's writer do; every record comes out
// once, and each goroutine's records in its order. Run with -race.
func TestQueue_ConcurrentWriters(t *testing.T) {
	const writers, each = 8, 5000
	q := newQueue(256)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := Record{Service: fmt.Sprint(w), Index: uint64(i)}
				for {
					ok, room := q.push(r)
					if ok {
						break
					}
					<-room
				}
			}
		}()
	}
	last := make([]int, writers)
	for i := range last {
		last[i] = -1
	}
	seen := 0
	deadline := time.After(30 * time.Second)
	var batch []Record
	for seen < writers*each {
		select {
		case <-q.ready:
		case <-deadline:
			t.Fatalf("only %d of %d records came out", seen, writers*each)
		}
		batch = q.take(batch[:0], maxBatch)
		for _, r := range batch {
			var w int
			fmt.Sscan(r.Service, &w)
			if int(r.Index) != last[w]+1 {
				t.Fatalf("writer %d's record %d came after its %d", w, r.Index, last[w])
			}
			last[w] = int(r.Index)
			seen++
		}
	}
	wg.Wait()
	if q.len() != 0 {
		t.Fatalf("%d records left", q.len())
	}
}

// TestQueue_BacklogWakesTheWriterAgain: a backlog of more than one batch
// drains batch after batch, each take that leaves records behind waking
// the writer again; without that, the rest would wait for the writer's
// next tick.
func TestQueue_BacklogWakesTheWriterAgain(t *testing.T) {
	q := newQueue(5000)
	for i := range 3000 {
		q.push(Record{Index: uint64(i)})
	}
	taken := 0
	for taken < 3000 {
		select {
		case <-q.ready:
		case <-time.After(time.Second):
			t.Fatalf("the writer was not woken with %d of 3,000 records still queued", 3000-taken)
		}
		taken += len(q.take(nil, maxBatch))
	}
	select {
	case <-q.ready:
		t.Fatal("woken with nothing queued")
	default:
	}
}
