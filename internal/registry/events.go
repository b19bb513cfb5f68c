package registry

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
)

// ErrTooManyStreams means Config.MaxStreams event streams are open, or the
// caller holds its share of them (Config.MaxStreamsPerClient).
var ErrTooManyStreams = errors.New("registry: too many event streams open")

// streams counts the open event streams, in all and by client, and what
// happened to slow ones.
type streams struct {
	mu       sync.Mutex
	open     int
	byClient map[string]int

	resyncs, dropped, sent atomic.Int64
}

// StreamStats are counts of the event streams since the registry started.
type StreamStats struct {
	// Open streams now.
	Open int
	// Resyncs: streams that fell behind the history of recent events and
	// were sent a fresh snapshot instead.
	Resyncs int64
	// Dropped: streams closed because their reader did not take what was
	// sent in time (see the front end's write timeout).
	Dropped int64
	// Sent: events handed to streams (each stream's copy counted).
	Sent int64
}

// StreamStats returns the counts of event streams.
func (r *Registry) StreamStats() StreamStats {
	r.streams.mu.Lock()
	open := r.streams.open
	r.streams.mu.Unlock()
	return StreamStats{Open: open, Resyncs: r.streams.resyncs.Load(), Dropped: r.streams.dropped.Load(), Sent: r.streams.sent.Load()}
}

// Stream is one reader's view of the catalog's changes: a snapshot, then
// each change to the services it watches, in index order. Its reader
// pulls; nothing is queued for it, so a slow reader costs the registry
// nothing but its place in the catalog's history of recent events, and
// when it falls out of that history it is handed a fresh snapshot (a
// resync) instead of the events it missed. A Stream is used by one
// goroutine; Close it when done.
type Stream struct {
	r        *Registry
	client   string
	services []string // sorted; nil watches every service
	// scope, when set, keeps out the services it does not hold: a
	// reader whose token covers only some (SetScope).
	scope  func(service string) bool
	cursor uint64 // every event up to here has been handed out or skipped
	buf    []*catalog.Event
	closed bool
}

// StreamSnapshot is the start of a stream, or a resync: every instance of
// the watched services as of Index, whatever its status. For a stream of
// limited scope (SetScope), Index is the latest change to a service in
// its scope, not the catalog's.
type StreamSnapshot struct {
	Index uint64
	// Resync is set when the snapshot replaces events the reader could not
	// be given: it asked to resume after an index the history no longer
	// covers, or fell behind it.
	Resync bool
	// Reads are the watched services that have ever had an instance,
	// sorted by name.
	Reads []ServiceRead
}

// OpenStream opens a stream of the changes to services (all services when
// empty) for client (the caller's network address: each client may hold
// at most Config.MaxStreamsPerClient). Position it with Start, then call
// Next. Errors: ErrNotReady, ErrTooManyStreams, a bad service name.
func (r *Registry) OpenStream(client string, services []string) (*Stream, error) {
	for _, s := range services {
		if err := CheckServiceName(s); err != nil {
			return nil, err
		}
	}
	if err := r.Ready(); err != nil {
		return nil, err
	}
	ss := &r.streams
	ss.mu.Lock()
	if ss.open >= r.cfg.MaxStreams || ss.byClient[client] >= r.cfg.MaxStreamsPerClient {
		ss.mu.Unlock()
		return nil, ErrTooManyStreams
	}
	if ss.byClient == nil {
		ss.byClient = map[string]int{}
	}
	ss.open++
	ss.byClient[client]++
	ss.mu.Unlock()
	var names []string
	if len(services) > 0 {
		names = slices.Compact(slices.Sorted(slices.Values(services)))
	}
	return &Stream{r: r, client: client, services: names}, nil
}

// SetScope limits the stream to the services scope holds (nil: no
// limit), before Start: a reader whose token covers only some services
// is given neither their instances nor their events.
func (s *Stream) SetScope(scope func(service string) bool) { s.scope = scope }

// Close releases the stream's place. It may be called more than once.
func (s *Stream) Close() {
	if s.closed {
		return
	}
	s.closed = true
	ss := &s.r.streams
	ss.mu.Lock()
	ss.open--
	if ss.byClient[s.client]--; ss.byClient[s.client] <= 0 {
		delete(ss.byClient, s.client)
	}
	ss.mu.Unlock()
}

// Dropped counts the stream as closed for a reader too slow to take what
// was sent; the front end calls it before Close.
func (s *Stream) Dropped() { s.r.streams.dropped.Add(1) }

// Cursor returns the index the stream has reached: every change up to it
// has been handed out or did not concern the stream. A reader that
// reconnects with it misses nothing.
func (s *Stream) Cursor() uint64 { return s.cursor }

// Start positions the stream. With resume set it continues after index
// after, and returns no snapshot, if the history still holds every change
// since; otherwise (or without resume) it returns a snapshot to start
// from, marked Resync when a resume was asked and could not be honoured.
// Errors: ErrNotReady.
func (s *Stream) Start(after uint64, resume bool) (*StreamSnapshot, error) {
	if err := s.r.Ready(); err != nil {
		return nil, err
	}
	if resume {
		if _, ok, _ := s.r.cat.Events(after, 1, s.buf[:0]); ok {
			s.cursor = after
			return nil, nil
		}
		s.r.streams.resyncs.Add(1)
	}
	return s.snapshot(resume)
}

// snapshot reads the watched services and moves the cursor to the index
// they were read at.
func (s *Stream) snapshot(resync bool) (*StreamSnapshot, error) {
	floor, ok := s.r.live.Floor()
	if !ok {
		return nil, ErrNotReady
	}
	now := s.r.now()
	index, views := s.r.cat.SnapshotOf(s.services)
	snap := &StreamSnapshot{Index: index, Resync: resync, Reads: make([]ServiceRead, 0, len(views))}
	var scoped uint64
	for _, v := range views {
		if s.scope != nil && !s.scope(v.Name) {
			continue
		}
		scoped = max(scoped, v.Index)
		snap.Reads = append(snap.Reads, ServiceRead{View: v, live: s.r.live, mon: s.r.monitor.Load(), floor: floor, now: now})
	}
	if s.scope != nil {
		// A stream of limited scope is told the index of the latest
		// change it may see, as its scoped list is, not the catalog's:
		// that would move with services it may not read. Resuming from
		// it replays nothing it may see that it missed (no change to its
		// services lies between it and the cursor).
		snap.Index = scoped
	}
	s.cursor = index
	return snap, nil
}

// Next returns what the stream's reader is owed next, at most max events
// (max > 0): the events after the cursor that concern the watched
// services, in index order, and the cursor moves past them (and past any
// change that does not concern them). When the stream has fallen out of
// the history of recent events it returns instead a snapshot marked
// Resync, and counts it. When nothing is owed it returns neither, and a
// channel closed at the catalog's next change, to wait on. Errors:
// ErrNotReady (this node stopped leading: the reader should reconnect,
// with its cursor).
func (s *Stream) Next(max int) (evs []*catalog.Event, snap *StreamSnapshot, wait <-chan struct{}, err error) {
	if err := s.r.Ready(); err != nil {
		return nil, nil, nil, err
	}
	for {
		all, ok, next := s.r.cat.Events(s.cursor, max, s.buf[:0])
		if !ok {
			s.r.streams.resyncs.Add(1)
			snap, err := s.snapshot(true)
			return nil, snap, nil, err
		}
		s.buf = all
		if len(all) == 0 {
			return nil, nil, next, nil
		}
		s.cursor = all[len(all)-1].Index
		if s.services == nil && s.scope == nil {
			s.r.streams.sent.Add(int64(len(all)))
			return all, nil, nil, nil
		}
		evs = all[:0]
		for _, e := range all {
			if s.services != nil {
				if _, ok := slices.BinarySearch(s.services, e.Instance.Service); !ok {
					continue
				}
			}
			if s.scope == nil || s.scope(e.Instance.Service) {
				evs = append(evs, e)
			}
		}
		if len(evs) > 0 {
			s.r.streams.sent.Add(int64(len(evs)))
			return evs, nil, nil, nil
		}
		// Every event of the batch was about other services: go on.
	}
}

// EventEntry returns the instance of an event as the event left it: its
// committed status (passing, critical, or draining for a passing instance
// with the drain flag), not judged against its TTL, since an event
// reports a change the catalog made; and its freshness now.
func (r *Registry) EventEntry(e *catalog.Event) Entry {
	inst := e.Instance
	f := r.live.Tracker().Freshness(inst.ID, inst.TTL, r.now())
	return Entry{Instance: inst, Status: health.Committed(inst), Age: f.Age, Quality: f.Quality, Checks: r.CheckStates(inst)}
}
