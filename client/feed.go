package client

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
)

// The Resolver's feed: one event stream (Client.Watch) for every service
// the Resolver has cached, which patches the cached answers as changes
// happen, so that Lookup, Pick and Watch see a registration, a drain or an
// expiry within milliseconds instead of at the next revalidation.
//
// Ownership: the feed's goroutine (runFeed) owns the connection and its
// bookkeeping (feedConn); it writes cache entries under their mutex, as
// revalidations do. The set of services to watch (feed.want) is guarded by
// cache.mu; the stream's position (feed.cursor) is an atomic that
// revalidations read.

// maxStreamServices is the most services one stream may name (the
// registry's limit); a Resolver that has cached more watches every
// service and ignores the others' events.
const maxStreamServices = 256

// feedGather is how long the feed waits after the first of a burst of new
// services before it (re)opens the stream, so that a program that looks
// up ten services at start opens one stream, not ten.
const feedGather = 20 * time.Millisecond

// feedRefusedWait is how long the feed rests after a refusal that
// reconnecting cannot fix (a registry too old to have the stream), unless
// a new service wakes it sooner.
const feedRefusedWait = 5 * time.Minute

// maxPending bounds the events held back while a burst is read.
const maxPending = 1024

// errSetGrew is the cause of a connection closed because the set of
// services to watch grew.
var errSetGrew = errors.New("the set of services grew")

type feed struct {
	// Guarded by cache.mu.
	want       []*service // the services to watch, in the order they came
	cancel     context.CancelFunc
	done       chan struct{}           // closed when the goroutine returns
	cancelConn context.CancelCauseFunc // of the connection being opened or read
	wake       chan struct{}           // 1 slot: the set grew

	// cursor is the ID of the last event received: the registry had
	// applied every change up to it.
	cursor atomic.Uint64
}

// streamConn is one connection of the stream, as the cache entries of
// its services see it.
type streamConn struct {
	at atomic.Int64 // when its last message was applied, as time since cache.epoch; 0: none yet
}

// heard returns when c's last message was applied, or the zero time.
func (c *streamConn) heard(epoch time.Time) time.Time {
	if d := c.at.Load(); d > 0 {
		return epoch.Add(time.Duration(d))
	}
	return time.Time{}
}

// watchService adds s to the stream's set, starting the feed's goroutine
// on the first service and reopening the stream when the set grows.
func (r *cache) watchService(s *service) {
	if r.cfg.DisableStream {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.watched || r.closed.Load() {
		return
	}
	s.watched = true
	f := &r.feed
	f.want = append(f.want, s)
	if f.done == nil {
		ctx, cancel := context.WithCancel(context.Background())
		f.cancel, f.done, f.wake = cancel, make(chan struct{}), make(chan struct{}, 1)
		go r.runFeed(ctx)
		return
	}
	if f.cancelConn != nil {
		f.cancelConn(errSetGrew)
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// feedConn is the feed goroutine's bookkeeping of one connection.
type feedConn struct {
	services    []*service
	conn        *streamConn
	established bool // a message arrived: the connection covers its services
	pending     map[*service][]api.Event
	order       []*service // of pending
	npending    int
	lastAt      time.Time // when the last message arrived
}

// feedState is what the feed goroutine carries across connections.
type feedState struct {
	covered    map[*service]bool // the services of the last connection that carried messages
	positioned bool              // an event ID was received
	failing    bool              // the stream was lost and has not come back
	refused    bool              // the registry refused it, and it has not come back
}

// runFeed keeps the stream open until ctx ends: it opens it for the
// services wanted, resuming where the last connection stopped, and
// reopens it when the set grows.
func (r *cache) runFeed(ctx context.Context) {
	defer close(r.feed.done)
	st := &feedState{covered: map[*service]bool{}}
	for {
		if !sleep(ctx, feedGather) {
			return
		}
		r.mu.Lock()
		services := slices.Clone(r.feed.want)
		select {
		case <-r.feed.wake: // this connection includes them
		default:
		}
		cctx, cancel := context.WithCancelCause(ctx)
		r.feed.cancelConn = cancel
		r.mu.Unlock()

		req := r.plan(services, st)
		fc := &feedConn{services: services, pending: map[*service][]api.Event{}}
		err := r.cfg.Client.watch(cctx, req, func(ev WatchEvent, more bool) error {
			r.onEvent(st, fc, ev, more)
			return nil
		})
		cancel(nil)
		r.flush(fc)
		if ctx.Err() != nil {
			return
		}
		if context.Cause(cctx) == errSetGrew {
			continue
		}
		// A refusal that reconnecting cannot fix.
		if !st.refused {
			r.cfg.Logger.Warn("the registry refused the event stream; keeping the cache by revalidation alone",
				"err", err, "retry_in", feedRefusedWait)
		} else {
			r.cfg.Logger.Debug("the registry refused the event stream again", "err", err, "retry_in", feedRefusedWait)
		}
		st.failing, st.refused = true, true
		t := time.NewTimer(feedRefusedWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.feed.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// plan returns the request of a connection for services: from a snapshot
// the first time; afterwards resuming after the last event received, or
// earlier if a service new to the stream has a cached answer older than
// that (its changes since must not be skipped).
func (r *cache) plan(services []*service, st *feedState) WatchRequest {
	req := WatchRequest{}
	if len(services) <= maxStreamServices {
		for _, s := range services {
			req.Services = append(req.Services, s.name)
		}
	}
	if !st.positioned {
		return req
	}
	req.Resume, req.After = true, r.feed.cursor.Load()
	for _, s := range services {
		if st.covered[s] {
			continue
		}
		r.mu.Lock()
		entries := slices.Clone(s.entries)
		r.mu.Unlock()
		for _, e := range entries {
			e.mu.Lock()
			if e.result.Load() != nil {
				req.After = min(req.After, e.through)
			}
			e.mu.Unlock()
		}
	}
	return req
}

// onEvent takes one event of the stream. Changes are held back while more
// of a burst is waiting, and applied together.
func (r *cache) onEvent(st *feedState, fc *feedConn, ev WatchEvent, more bool) {
	switch ev.Type {
	case WatchConnected:
		fc.conn, fc.established = &streamConn{}, false
		return
	case WatchDisconnected:
		r.flush(fc)
		if !st.failing {
			r.cfg.Logger.Warn("event stream lost; revalidating cached services with the registry until it is back",
				"err", ev.Err, "retry_in", ev.Retry)
		} else {
			r.cfg.Logger.Debug("event stream still down", "err", ev.Err, "retry_in", ev.Retry)
		}
		st.failing = true
		return
	}
	fc.lastAt = time.Now()
	if ev.Type == api.EventSnapshot || ev.ID > 0 {
		st.positioned = true
	}
	switch ev.Type {
	case api.EventSnapshot:
		r.flush(fc)
		r.applySnapshot(fc, ev.Snapshot)
	case api.EventProtection:
		r.flush(fc)
		r.setProtection(fc, ev.Protection.Protection)
	case api.EventRegistered, api.EventDeregistered, api.EventStatus:
		name := ev.Event.Service
		if name == "" {
			name = ev.Event.Instance.Service
		}
		r.mu.Lock()
		s := r.services[name]
		r.mu.Unlock()
		if s != nil {
			if _, held := fc.pending[s]; !held {
				fc.order = append(fc.order, s)
			}
			fc.pending[s] = append(fc.pending[s], *ev.Event)
			fc.npending++
		}
	}
	r.feed.cursor.Store(ev.ID)
	if !more || fc.npending >= maxPending {
		r.flush(fc)
		r.heard(st, fc)
	}
}

// flush applies the changes held back.
func (r *cache) flush(fc *feedConn) {
	for _, s := range fc.order {
		r.applyEvents(s, fc.pending[s], fc.lastAt)
		delete(fc.pending, s)
	}
	fc.order, fc.npending = fc.order[:0], 0
}

// heard marks the connection as heard from when its last message
// arrived: every change it delivered until then is in the cache. The
// first time, it makes the connection the cover of its services.
func (r *cache) heard(st *feedState, fc *feedConn) {
	fc.conn.at.Store(int64(fc.lastAt.Sub(r.epoch)))
	if !fc.established {
		fc.established = true
		clear(st.covered)
		for _, s := range fc.services {
			s.cover.Store(fc.conn)
			st.covered[s] = true
		}
		if st.failing {
			r.cfg.Logger.Info("event stream back", "after", r.feed.cursor.Load())
		}
		st.failing, st.refused = false, false
	}
}

// entriesOf returns s's cache entries.
func (r *cache) entriesOf(s *service) []*cacheEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(s.entries)
}

// applySnapshot replaces what the cache holds of the connection's
// services: the plain entries get the snapshot's passing instances; the
// filtered ones are marked for revalidation.
func (r *cache) applySnapshot(fc *feedConn, snap *api.WatchSnapshot) {
	now := fc.lastAt
	passing := map[string][]Instance{}
	for _, in := range snap.Instances {
		if in.Status == api.StatusPassing {
			passing[in.Service] = append(passing[in.Service], toInstance(in, now))
		}
	}
	for _, s := range fc.services {
		insts := passing[s.name]
		slices.SortFunc(insts, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
		for _, e := range r.entriesOf(s) {
			e.mu.Lock()
			e.gen++
			if e.filtered {
				e.through, e.missed = 0, max(e.missed, snap.Index)
				e.dirty.Store(true)
			} else {
				res := &Result{Service: s.name, Index: snap.Index, Instances: insts, FetchedAt: now, Protection: snap.Protection}
				if insts == nil {
					res.Instances = []Instance{}
				}
				if old := e.result.Load(); old != nil {
					res.Evicted = old.Evicted
				}
				e.setResult(res)
				e.through, e.missed, e.lastErr = snap.Index, 0, nil
				e.dirty.Store(false)
			}
			e.mu.Unlock()
		}
	}
}

// setProtection marks the plain entries of the connection's services with
// mass-expiry protection's new state (a protection event).
func (r *cache) setProtection(fc *feedConn, on bool) {
	for _, s := range fc.services {
		for _, e := range r.entriesOf(s) {
			e.mu.Lock()
			if cur := e.result.Load(); cur != nil && !e.filtered && cur.Protection != on {
				res := *cur
				res.Protection = on
				e.setResult(&res)
			}
			e.mu.Unlock()
		}
	}
}

// applyEvents applies changes to one service, in index order: to its
// plain entry, as a new result; to its filtered entries (and a plain one
// with no answer yet), as a mark that the next Lookup revalidates.
func (r *cache) applyEvents(s *service, evs []api.Event, now time.Time) {
	last := evs[len(evs)-1].Index
	for _, e := range r.entriesOf(s) {
		e.mu.Lock()
		cur := e.result.Load()
		switch {
		case last <= e.through:
			// The answer already shows them (a resumed stream repeats
			// what an answer fetched meanwhile holds).
		case e.filtered || cur == nil:
			e.missed = max(e.missed, last)
			e.dirty.Store(true)
		default:
			insts := slices.Clone(cur.Instances)
			for i := range evs {
				if evs[i].Index > e.through {
					insts = patch(insts, &evs[i], now)
				}
			}
			res := &Result{Service: s.name, Index: last, Instances: insts, Evicted: cur.Evicted, FetchedAt: now,
				Protection: evs[len(evs)-1].Protection}
			e.setResult(res)
			e.through = last
		}
		e.mu.Unlock()
	}
}

// patch applies one change to a service's passing instances, sorted by ID.
func patch(insts []Instance, ev *api.Event, now time.Time) []Instance {
	find := func(id string) (int, bool) {
		return slices.BinarySearchFunc(insts, id, func(in Instance, id string) int { return strings.Compare(in.ID, id) })
	}
	remove := func(id string) {
		if i, ok := find(id); ok {
			insts = slices.Delete(insts, i, i+1)
		}
	}
	if ev.Type == api.EventRegistered && ev.Replaced != "" {
		remove(ev.Replaced)
	}
	switch {
	case ev.Type == api.EventDeregistered, ev.Instance.Status != api.StatusPassing:
		remove(ev.Instance.ID)
	case ev.Type == api.EventRegistered || ev.Type == api.EventStatus:
		in := toInstance(ev.Instance, now)
		if i, ok := find(in.ID); ok {
			insts[i] = in
		} else {
			insts = slices.Insert(insts, i, in)
		}
	}
	return insts
}

// toInstance is in as received at now.
func toInstance(in api.Instance, now time.Time) Instance {
	out := Instance{Instance: in}
	if in.LastSeenMS >= 0 {
		out.LastSeen = now.Add(-time.Duration(in.LastSeenMS) * time.Millisecond)
	}
	return out
}

// watcher is one channel of Watch.
type watcher struct {
	ch   chan Result
	stop func() bool // unregisters the context.AfterFunc that closes it
	// owner keeps the Resolver from being collected (and its stream
	// closed) while the channel is open.
	owner *Resolver
}

// setResult stores res and hands it to the entry's watchers if its
// instances differ from the last result's. e.mu must be held.
func (e *cacheEntry) setResult(res *Result) {
	old := e.result.Swap(res)
	if len(e.watchers) == 0 || (old != nil && sameInstances(old.Instances, res.Instances)) {
		return
	}
	for w := range e.watchers {
		offer(w.ch, *res)
	}
}

// offer puts v in ch, a channel of one slot, replacing what the reader
// has not taken. The sender holds the lock that serialises senders, so
// the loop ends by its second turn.
func offer(ch chan Result, v Result) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// sameInstances reports whether two sets of passing instances hold the
// same instances (an instance's address, port, tags and meta never change
// under its ID; its status is passing in both).
func sameInstances(a, b []Instance) bool {
	return slices.EqualFunc(a, b, func(x, y Instance) bool { return x.ID == y.ID && x.Status == y.Status })
}

// Watch returns a channel of the service's passing instances, as Lookup
// returns them: the current set first, then the set after each change
// (registration, drain, expiry, deregistration), within milliseconds of
// it while the event stream is up; while it is down, changes arrive when
// it resumes (the changes missed in between at once), or sooner when a
// Lookup's revalidation finds one. A change that leaves the set as it was
// (a critical instance deregistered, say) sends nothing.
//
// The channel has one slot and always holds the latest set: a reader that
// falls behind gets the set as it is when it reads, never a backlog of
// the sets in between. It is closed when ctx ends or the Resolver is
// closed.
//
// Watch's first lookup is Lookup's, and its error is Watch's: the
// service's name refused, or the registry unreachable with nothing cached.
func (r *Resolver) Watch(ctx context.Context, service string) (<-chan Result, error) {
	if _, err := r.Lookup(ctx, service); err != nil {
		return nil, err
	}
	e := r.entry(service, nil)
	w := &watcher{ch: make(chan Result, 1), owner: r}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.closed.Load() {
		return nil, errorf("watch %s: resolver closed", service)
	}
	res := e.result.Load()
	out := *res
	out.FetchedAt = r.asOf(e, res)
	w.ch <- out
	if e.watchers == nil {
		e.watchers = map[*watcher]struct{}{}
	}
	e.watchers[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if _, ok := e.watchers[w]; ok {
			delete(e.watchers, w)
			close(w.ch)
		}
	})
	return w.ch, nil
}

// Close ends the Resolver's event stream and its goroutine, and closes
// the channels of Watch; it waits for the goroutine to return. The
// Resolver goes on answering Lookup and Pick, by revalidation alone, as
// with DisableStream. Close may be called more than once; it returns nil.
//
// A Resolver that is dropped without Close has the same done when the
// garbage collector finds it unreachable (a channel of Watch that is open
// keeps it); Close it to know when.
func (r *Resolver) Close() error {
	r.close(true)
	return nil
}

// close is Close; with wait, it waits for the stream's goroutine to
// return.
func (r *cache) close(wait bool) {
	if r.closed.Swap(true) {
		return
	}
	r.mu.Lock()
	cancel, done := r.feed.cancel, r.feed.done
	entries := make([]*cacheEntry, 0, len(r.entries))
	for _, e := range r.entries {
		entries = append(entries, e)
	}
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		if wait {
			<-done
		}
	}
	for _, e := range entries {
		e.mu.Lock()
		for w := range e.watchers {
			w.stop()
			close(w.ch)
		}
		e.watchers = nil
		e.mu.Unlock()
	}
}
