package audit

import "sync"

// queue is a journal's bounded FIFO of records waiting for its writer.
// It is a ring whose buffer grows with what is queued (from 64 places,
// doubling, up to its bound) and is let go when it empties after
// growing past shrinkAbove, rather than a channel with a place for every
// record it may hold: a channel's indices go round all its places
// whatever the load, so the applied journal's 32,768 places (176 bytes
// each) were all resident after any long run of registrations, 5.8 MB,
// though its writer keeps up and it rarely holds more than a few
// hundred. Safe for concurrent use; one reader (the journal's writer).
type queue struct {
	mu   sync.Mutex
	buf  []Record // the ring; nil when empty and small
	head int      // the oldest record's place
	n    int      // records queued
	max  int
	// ready holds a token while records may be queued that the writer
	// has not been told of.
	ready chan struct{}
	// room, when not nil, is closed when the writer next takes records:
	// put's wait for room on a full queue.
	room chan struct{}
}

const (
	queueFirst  = 64
	shrinkAbove = 1024
)

func newQueue(max int) *queue {
	return &queue{max: max, ready: make(chan struct{}, 1)}
}

// push queues r, and reports false, queueing nothing, when the queue is
// full; then it returns a channel closed when the writer next takes
// records.
func (q *queue) push(r Record) (bool, <-chan struct{}) {
	q.mu.Lock()
	if q.n == q.max {
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.mu.Unlock()
		return false, room
	}
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = r
	q.n++
	q.mu.Unlock()
	q.signal()
	return true, nil
}

// grow doubles the ring (or makes its first), keeping the order. The
// caller holds mu.
func (q *queue) grow() {
	size := min(max(queueFirst, 2*len(q.buf)), q.max)
	buf := make([]Record, size)
	for i := range q.n {
		buf[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = buf, 0
}

// take appends up to k of the oldest records to dst, in order, and
// removes them from the queue.
func (q *queue) take(dst []Record, k int) []Record {
	q.mu.Lock()
	m := min(k, q.n)
	for range m {
		dst = append(dst, q.buf[q.head])
		q.buf[q.head] = Record{} // its strings are the writer's now
		q.head = (q.head + 1) % len(q.buf)
	}
	q.n -= m
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > shrinkAbove {
			q.buf = nil
		}
	}
	if m > 0 && q.room != nil {
		close(q.room)
		q.room = nil
	}
	left := q.n
	q.mu.Unlock()
	if left > 0 {
		q.signal()
	}
	return dst
}

// signal tells the writer that records may be queued.
func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// len returns how many records are queued.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
