package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/musterhq/muster/api"
)

// WatchRequest says what Client.Watch follows. Zero fields take their
// defaults.
type WatchRequest struct {
	// Services are the services to watch; none means every service.
	Services []string
	// Resume, when set, continues after index After (the ID of an event
	// received before) instead of starting with a snapshot. When the
	// registry's history of recent changes no longer reaches back that
	// far, it starts with a snapshot marked Resync instead.
	Resume bool
	After  uint64
	// MaxMessage bounds one message of the stream, in bytes; default
	// DefaultWatchMaxMessage. A snapshot is one message holding every
	// instance of the watched services (about 500 bytes each), so a
	// registry of more than about 250,000 watched instances needs more.
	// A larger message ends Watch with an error: the bound keeps a
	// hostile or broken server from making the reader buffer without end.
	MaxMessage int
	// IdleTimeout is how long a connection may stay silent before it is
	// taken for dead and replaced (the registry sends a comment every
	// 15 s on an idle stream); default DefaultWatchIdleTimeout.
	IdleTimeout time.Duration
}

// Defaults of WatchRequest.
const (
	DefaultWatchMaxMessage  = 128 << 20
	DefaultWatchIdleTimeout = 45 * time.Second
)

// watchMaxBackoff caps the wait between reconnections, and
// watchDefaultRetry is the first wait when the registry named none (it
// sends "retry: 1000").
const (
	watchMaxBackoff   = 30 * time.Second
	watchDefaultRetry = time.Second
)

// The types of WatchEvent that are not the registry's events but the
// state of Watch's connection. The registry's are api.EventSnapshot,
// api.EventRegistered, api.EventDeregistered, api.EventStatus and
// api.EventProtection; a newer registry's other types pass through with
// only Data.
const (
	// WatchConnected: a connection was opened. ID is where it resumes
	// (0 before any event: a snapshot follows). A snapshot that follows a
	// resuming connection is marked Resync.
	WatchConnected = "connected"
	// WatchProgress: a message without data: the registry's keep-alive
	// comment, its note that it resumed, or an ID alone (the stream moved
	// past changes to services not watched). ID is the stream's position.
	WatchProgress = "progress"
	// WatchDisconnected: a connection ended or could not be opened. Err
	// says why, Retry how long Watch waits before the next attempt.
	WatchDisconnected = "disconnected"
)

// WatchEvent is what Client.Watch hands its callback: one message of the
// registry's event stream, or a change of the connection's state.
type WatchEvent struct {
	// Type is the event's type: one of the api.Event… constants, or
	// WatchConnected, WatchProgress or WatchDisconnected.
	Type string
	// ID is the stream's position after this event: the index a
	// reconnection resumes after.
	ID uint64
	// Snapshot is set for api.EventSnapshot.
	Snapshot *api.WatchSnapshot
	// Event is set for api.EventRegistered, api.EventDeregistered and
	// api.EventStatus.
	Event *api.Event
	// Protection is set for api.EventProtection.
	Protection *api.Protection
	// Data is the message's data as the registry sent it (one JSON
	// document), for every type that has one. It is not reused.
	Data []byte
	// Err is why a connection ended (WatchDisconnected).
	Err error
	// Retry is how long Watch waits before it reconnects
	// (WatchDisconnected).
	Retry time.Duration
}

// errIdle is the cause of a connection closed for silence.
var errIdle = errors.New("idle")

// callbackError carries the callback's own error out of a connection.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// Watch follows the registry's event stream (GET /v1/watch) for the
// services of req, calling fn with each event, in the stream's order, on
// Watch's own goroutine: the next event waits until fn returns. It starts
// with a snapshot (unless req.Resume), then one event per change.
//
// When a connection ends (the registry restarts or stops leading, the
// network fails, nothing arrives for IdleTimeout, a message cannot be
// decoded), fn is told (WatchDisconnected), and Watch reconnects with
// the ID of the last event received, so that no change is lost or
// repeated; fn then sees WatchConnected, and either the changes it missed
// or, when the registry no longer holds them, a snapshot marked Resync to
// replace what it holds. Watch waits before reconnecting: the registry's
// retry (1 s), doubled after each attempt that failed, up to 30 s, plus up
// to a fifth more, and never less than a 503's or 429's Retry-After. A
// reader slower than the stream is disconnected by the registry and
// resumes in the same way.
//
// Watch returns ctx.Err() when ctx ends, fn's error when fn returns one,
// and at once a refusal that reconnecting cannot fix: an *Error for a 4xx
// answer other than 408 and 429 (a bad service name; a registry too old to
// have the stream answers 404, matching ErrNotFound), or a message larger
// than req.MaxMessage.
func (c *Client) Watch(ctx context.Context, req WatchRequest, fn func(WatchEvent) error) error {
	return c.watch(ctx, req, func(ev WatchEvent, _ bool) error { return fn(ev) })
}

// watchState is a stream's position and pace, carried across
// connections.
type watchState struct {
	after  uint64
	resume bool
	retry  time.Duration
	got    bool // the connection delivered a message
}

// watch is Watch with a callback also told whether more of the stream is
// already read and waiting (so that it may hold back work until a burst
// has been taken).
func (c *Client) watch(ctx context.Context, req WatchRequest, fn func(WatchEvent, bool) error) error {
	if req.MaxMessage <= 0 {
		req.MaxMessage = DefaultWatchMaxMessage
	}
	if req.IdleTimeout <= 0 {
		req.IdleTimeout = DefaultWatchIdleTimeout
	}
	st := watchState{after: req.After, resume: req.Resume, retry: watchDefaultRetry}
	failures := 0
	for {
		st.got = false
		err := c.watchOnce(ctx, &req, &st, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var cbe *callbackError
		if errors.As(err, &cbe) {
			return cbe.err
		}
		if permanent(err) || errors.Is(err, errMessageTooLarge) {
			return err
		}
		if st.got {
			failures = 0
		}
		d := atLeastRetryAfter(watchBackoff(st.retry, failures), err)
		failures++
		if err := fn(WatchEvent{Type: WatchDisconnected, ID: st.after, Err: err, Retry: d}, false); err != nil {
			return err
		}
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// watchBackoff returns the wait before reconnection attempt n (from 0)
// after n failed ones: base doubled n times, capped, plus up to a fifth
// more, so that the clients of a registry that restarts do not all come
// back in step, yet none comes back sooner than the registry asked.
func watchBackoff(base time.Duration, n int) time.Duration {
	d := base << min(n, 16)
	if d > watchMaxBackoff || d <= 0 {
		d = watchMaxBackoff
	}
	return d + rand.N(d/5+1)
}

// watchOnce opens one connection and reads it until it ends.
func (c *Client) watchOnce(ctx context.Context, req *WatchRequest, st *watchState, fn func(WatchEvent, bool) error) error {
	base, server, err := c.pick(ctx, "watch")
	if err != nil {
		return err
	}
	u := *base
	u.Path += "/v1/watch"
	q := url.Values{}
	for _, s := range req.Services {
		q.Add("service", s)
	}
	u.RawQuery = q.Encode()
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The timer covers the wait for the answer too, and is reset by every
	// byte read: an idle connection (a half-open one, say) is cut.
	idle := time.AfterFunc(req.IdleTimeout, func() { cancel(errIdle) })
	defer idle.Stop()
	hreq, err := http.NewRequestWithContext(cctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return errorf("watch: %w", err)
	}
	hreq.Header.Set("Accept", "text/event-stream")
	if st.resume {
		hreq.Header.Set("Last-Event-ID", strconv.FormatUint(st.after, 10))
	}
	if c.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.token)
	}
	// The client's own timeout would cut the stream; the idle timer
	// stands in for it.
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(hreq)
	if err != nil {
		c.failed(server) // the next attempt goes to the next server
		if context.Cause(cctx) == errIdle {
			return errorf("watch: %w: no answer within %s", ErrUnavailable, req.IdleTimeout)
		}
		return errorf("watch: %w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode == http.StatusServiceUnavailable {
			c.failed(server)
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return answerError("watch", resp, data)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return errorf("watch: %w: the answer is %q, not text/event-stream", ErrUnavailable, resp.Header.Get("Content-Type"))
	}
	c.worked(server)
	if err := fn(WatchEvent{Type: WatchConnected, ID: st.after}, false); err != nil {
		return &callbackError{err}
	}
	p := newSSEReader(&idleReader{r: resp.Body, t: idle, d: req.IdleTimeout}, req.MaxMessage)
	for {
		m, err := p.next()
		switch {
		case err == nil:
		case context.Cause(cctx) == errIdle:
			c.failed(server)
			return errorf("watch: %w: nothing from the registry for %s", ErrUnavailable, req.IdleTimeout)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errMessageTooLarge):
			return errorf("watch: %w: the registry sent a message of more than %d bytes (WatchRequest.MaxMessage)", errMessageTooLarge, req.MaxMessage)
		case err == io.EOF:
			// A server that ends a stream is closing (or stopped
			// leading a single-node cluster): resume elsewhere.
			c.failed(server)
			return errorf("watch: %w: the registry ended the stream", ErrUnavailable)
		default:
			c.failed(server)
			return errorf("watch: %w: %w", ErrUnavailable, err)
		}
		ev, err := st.decode(m)
		if err != nil {
			return errorf("watch: %w: %w", ErrUnavailable, err)
		}
		st.got = true
		if err := fn(ev, p.buffered()); err != nil {
			return &callbackError{err}
		}
	}
}

// decode turns a message into an event and moves the stream's position
// to its ID. A message that cannot be decoded leaves the position where
// it was, so that a reconnection asks for it again.
func (st *watchState) decode(m sseMessage) (WatchEvent, error) {
	if m.retry >= 0 {
		st.retry = min(max(time.Duration(m.retry)*time.Millisecond, 100*time.Millisecond), watchMaxBackoff)
	}
	id := st.after
	if m.hasID && m.id != "" {
		n, err := strconv.ParseUint(m.id, 10, 64)
		if err != nil {
			return WatchEvent{}, fmt.Errorf("event id %.40q is not an index", m.id)
		}
		id = n
	}
	ev := WatchEvent{Type: WatchProgress, ID: id}
	if m.hasData {
		ev.Type, ev.Data = m.event, m.data
		if ev.Type == "" {
			ev.Type = "message" // the standard's name for an unnamed event
		}
		var err error
		switch ev.Type {
		case api.EventSnapshot:
			ev.Snapshot = new(api.WatchSnapshot)
			err = json.Unmarshal(m.data, ev.Snapshot)
		case api.EventRegistered, api.EventDeregistered, api.EventStatus:
			ev.Event = new(api.Event)
			err = json.Unmarshal(m.data, ev.Event)
		case api.EventProtection:
			ev.Protection = new(api.Protection)
			err = json.Unmarshal(m.data, ev.Protection)
		}
		if err != nil {
			return WatchEvent{}, fmt.Errorf("%s event %d: %w", ev.Type, id, err)
		}
	}
	if m.hasID && m.id != "" {
		st.after, st.resume = id, true
	}
	return ev, nil
}

// idleReader resets the idle timer at every byte read.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(r.d)
	}
	return n, err
}
