package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
)

// opHeartbeats is the operation name of a batch of heartbeats. A batch is
// safe to send again (a heartbeat repeated only renews the TTL once
// more), so a call of it moves on to the next server like a PUT does.
const opHeartbeats = "heartbeats"

// maxBeatSenders is how many batches of heartbeats a client has in flight
// at once. A heartbeat that finds fewer in flight goes out at once, alone
// if it must; the ones that find every sender busy wait together for the
// next batch. Under light load each beat costs one request, as before;
// under heavy load a request carries up to api.MaxBeats.
const maxBeatSenders = 4

// legacyRetry is how long a client whose registry does not know
// POST /v1/heartbeats (an older version) sends heartbeats one request
// each before it tries the batch again.
const legacyRetry = 5 * time.Minute

// Heartbeats sends a batch of heartbeats, each with its own instance's
// session token, in one request (POST /v1/heartbeats, at most
// api.MaxBeats), and returns one result per beat, in order. An error is
// the batch's as a whole (the registry unreachable or not ready, a
// malformed batch); each beat's own refusal is in its result. Most
// programs need not call it: Heartbeat, and so Registration, batch the
// heartbeats of concurrent callers by themselves.
func (c *Client) Heartbeats(ctx context.Context, beats []api.Beat) ([]api.BeatResult, error) {
	var out api.HeartbeatsResponse
	payload := appendBeats(nil, beats)
	_, err := c.call(ctx, opHeartbeats, http.MethodPost, func(base *url.URL) (http.Header, int, error) {
		return c.doOn(ctx, base, opHeartbeats, http.MethodPost, "/v1/heartbeats", nil, "", payload, true, &out)
	})
	if err != nil {
		return nil, err
	}
	if len(out.Results) != len(beats) {
		return nil, errorf("%s: %w: the registry answered %d results for %d heartbeats", opHeartbeats, ErrUnavailable, len(out.Results), len(beats))
	}
	return out.Results, nil
}

// beatError is a beat's refusal as the error the per-instance heartbeat
// would have returned.
func beatError(r api.BeatResult) *Error {
	return &Error{Op: "heartbeat", Status: r.HTTPStatus, ErrorDetail: *r.Error,
		RetryAfter: time.Duration(min(max(r.RetryAfterS, 0), 86400)) * time.Second}
}

// appendBeats appends the JSON body of a batch. IDs and tokens are
// printable ASCII in every case the registry makes; anything else goes
// through encoding/json.
func appendBeats(b []byte, beats []api.Beat) []byte {
	b = append(b, `{"beats":[`...)
	for i, bt := range beats {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendJSONString(b, bt.ID)
		b = append(b, `,"token":`...)
		b = appendJSONString(b, bt.Token)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

func appendJSONString(b []byte, s string) []byte {
	if !plainJSON(s) {
		enc, _ := json.Marshal(s)
		return append(b, enc...)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// beater gathers the heartbeats of a client's concurrent callers into
// batches: the SDK's fast channel (see maxBeatSenders).
type beater struct {
	c       *Client
	mu      sync.Mutex
	queue   []*pendingBeat
	senders int
	// legacyUntil, in Unix nanoseconds, is when to try the batch again
	// after a registry that does not know it; until then Heartbeat sends
	// one request per beat.
	legacyUntil atomic.Int64
}

// pendingBeat is one caller's heartbeat waiting for its batch.
type pendingBeat struct {
	ctx  context.Context
	beat api.Beat
	done chan struct{}
	// Set before done is closed.
	res   api.HeartbeatResponse
	err   error
	alone bool // the batch was not taken (an older registry, or busy): send it alone
}

// Beats go in batches only if they are of the sizes the registry makes
// (IDs of at most 128 characters, session tokens of 43), printable ASCII
// that JSON sends as is: a batch of api.MaxBeats of them then stays
// within the registry's bound on a batch's bytes, and a beat of another
// kind, sent alone, cannot make a batch too large for the beats of
// other callers.
const (
	maxBatchedID    = 128
	maxBatchedToken = 100
)

// batchable reports whether a beat of id and token may go in a batch.
func batchable(id, token string) bool {
	return len(id) <= maxBatchedID && len(token) <= maxBatchedToken && plainJSON(id) && plainJSON(token)
}

// plainJSON reports whether s goes into a JSON string as it is.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// beat sends one heartbeat in the next batch and returns its result.
func (b *beater) beat(ctx context.Context, id, token string) (api.HeartbeatResponse, error) {
	if !batchable(id, token) {
		return b.c.heartbeatAlone(ctx, id, token)
	}
	p := &pendingBeat{ctx: ctx, beat: api.Beat{ID: id, Token: token}, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	start := b.senders < maxBeatSenders
	if start {
		b.senders++
	}
	b.mu.Unlock()
	if start {
		go b.send()
	}
	select {
	case <-p.done:
		if p.alone {
			return b.c.heartbeatAlone(ctx, id, token)
		}
		return p.res, p.err
	case <-ctx.Done():
		return api.HeartbeatResponse{}, errorf("heartbeat: %w: %w", ErrUnavailable, ctx.Err())
	}
}

// send sends batches until the queue is empty.
func (b *beater) send() {
	for {
		b.mu.Lock()
		n := min(len(b.queue), api.MaxBeats)
		if n == 0 {
			b.senders--
			b.mu.Unlock()
			return
		}
		batch := make([]*pendingBeat, n)
		copy(batch, b.queue)
		left := copy(b.queue, b.queue[n:])
		clear(b.queue[left:])
		b.queue = b.queue[:left]
		b.mu.Unlock()
		b.flush(batch)
	}
}

// flush sends one batch and hands each waiter its result. Beats whose
// callers gave up are left out; the request runs until the latest
// deadline among the rest (and the HTTP client's timeout).
func (b *beater) flush(batch []*pendingBeat) {
	live := batch[:0]
	var deadline time.Time
	unbounded := false
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.err = errorf("heartbeat: %w: %w", ErrUnavailable, err)
			close(p.done)
			continue
		}
		live = append(live, p)
		if d, ok := p.ctx.Deadline(); !ok {
			unbounded = true
		} else if d.After(deadline) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if !unbounded {
		ctx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	beats := make([]api.Beat, len(live))
	for i, p := range live {
		beats[i] = p.beat
	}
	results, err := b.c.Heartbeats(ctx, beats)
	var e *Error
	if err != nil && errors.As(err, &e) && (e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed) {
		// The batch itself never answers 404 or 405 (an unknown
		// instance is a result): this registry does not have it.
		b.legacyUntil.Store(time.Now().Add(legacyRetry).UnixNano())
		for _, p := range live {
			p.alone = true
			close(p.done)
		}
		return
	}
	if err != nil && errors.As(err, &e) && e.Status == http.StatusServiceUnavailable && e.Code == api.CodeBusy {
		// The registry is reading as many batches as it will at once
		// (its bound on their bytes): these beats go alone this time,
		// as requests without a body, rather than fail.
		for _, p := range live {
			p.alone = true
			close(p.done)
		}
		return
	}
	for i, p := range live {
		switch {
		case err != nil:
			p.err = err
		case results[i].Error != nil:
			p.err = beatError(results[i])
		default:
			p.res = api.HeartbeatResponse{TTL: results[i].TTL, Status: results[i].Status}
		}
		close(p.done)
	}
}

// legacy reports whether heartbeats go one request each for now.
func (b *beater) legacy() bool {
	until := b.legacyUntil.Load()
	return until != 0 && time.Now().UnixNano() < until
}
