package server

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// The per-instance lines (an instance registered, deregistered, expired,
// a tutorial registration verified) are worth reading one by one at the
// rate a fleet changes, and worthless at thousands a second: a bulk
// registration would write a line per instance and spend the disk and the
// CPU on it. So the server's logger lets through at most sampleBurst of
// each such message per sampleWindow, and at the end of a window in which
// it held lines back it writes one line saying how many, of which
// message. Warnings and errors are never held back.

const (
	sampleBurst  = 20
	sampleWindow = time.Second
)

// sampled reports whether msg is one of the per-instance lines.
func sampled(msg string) bool {
	return strings.HasPrefix(msg, "instance ") || strings.HasPrefix(msg, "seed ")
}

// sampler is what the handlers derived from one sampling handler share.
type sampler struct {
	mu   sync.Mutex
	msgs map[string]*sampleWindowState
	// out writes the summaries, through the handler the first record
	// was handed to.
	now func() time.Time
}

type sampleWindowState struct {
	start time.Time
	n     int // lines seen in the window
	held  int // of which held back
	out   slog.Handler
}

// sampleHandler wraps a handler with the sampler.
type sampleHandler struct {
	next slog.Handler
	s    *sampler
}

func newSampleHandler(next slog.Handler) *sampleHandler {
	return &sampleHandler{next: next, s: &sampler{msgs: map[string]*sampleWindowState{}, now: time.Now}}
}

func (h *sampleHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *sampleHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level != slog.LevelInfo || !sampled(r.Message) {
		return h.next.Handle(ctx, r)
	}
	if !h.s.allow(r.Message, h.next) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *sampleHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &sampleHandler{next: h.next.WithAttrs(as), s: h.s}
}

func (h *sampleHandler) WithGroup(name string) slog.Handler {
	return &sampleHandler{next: h.next.WithGroup(name), s: h.s}
}

// allow counts a line of msg and reports whether it may be written. The
// first line held back in a window arms the summary for the window's end.
func (s *sampler) allow(msg string, out slog.Handler) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.msgs[msg]
	if w == nil || now.Sub(w.start) >= sampleWindow {
		if w != nil && w.held > 0 {
			// Its summary is pending: it is written at the window's end
			// and starts the next window then.
			w.n++
			w.held++
			return false
		}
		w = &sampleWindowState{start: now, out: out}
		s.msgs[msg] = w
	}
	w.n++
	if w.n <= sampleBurst {
		return true
	}
	w.held++
	if w.held == 1 {
		time.AfterFunc(sampleWindow-now.Sub(w.start), func() { s.summarize(msg, w) })
	}
	return false
}

// summarize writes how many lines of msg window w held back, and ends it.
func (s *sampler) summarize(msg string, w *sampleWindowState) {
	s.mu.Lock()
	held, out := w.held, w.out
	if s.msgs[msg] == w {
		delete(s.msgs, msg)
	}
	s.mu.Unlock()
	r := slog.NewRecord(s.now(), slog.LevelInfo, "log lines held back: too many of one message", 0)
	r.AddAttrs(slog.String("message", msg), slog.Int("held_back", held), slog.Int("written", sampleBurst),
		slog.Duration("window", sampleWindow))
	out.Handle(context.Background(), r)
}

// nodeHandler adds the node's ID to every record, as its last attribute
// (so that a line reads as its message and its own fields first).
type nodeHandler struct {
	next slog.Handler
	id   slog.Attr
}

func withNode(next slog.Handler, id string) slog.Handler {
	return nodeHandler{next: next, id: slog.String("node_id", id)}
}

func (h nodeHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h nodeHandler) Handle(ctx context.Context, r slog.Record) error {
	named := false
	r.Attrs(func(a slog.Attr) bool {
		named = a.Key == "node_id"
		return !named
	})
	if !named { // a line that names its node itself (the cluster's) keeps its own
		r.AddAttrs(h.id)
	}
	return h.next.Handle(ctx, r)
}

func (h nodeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return nodeHandler{next: h.next.WithAttrs(as), id: h.id}
}

func (h nodeHandler) WithGroup(name string) slog.Handler {
	return nodeHandler{next: h.next.WithGroup(name), id: h.id}
}

// serverErrors is the writer of net/http's server's own error log (a
// failed TLS handshake, a malformed request it answers itself): lines
// any client can cause, at the client's pace and with the client's
// bytes in them (a handshake's offered protocols). It writes at most
// serverErrorBurst lines a minute, each cut to serverErrorLine bytes,
// and says how many more there were when it writes again.
type serverErrors struct {
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	window  time.Time // start of the current minute's window
	written int
	held    int
}

const (
	serverErrorBurst = 20
	serverErrorLine  = 300
)

func newServerErrors(log *slog.Logger) *serverErrors {
	return &serverErrors{log: log, now: time.Now}
}

func (s *serverErrors) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	if len(line) > serverErrorLine {
		line = line[:serverErrorLine] + "…"
	}
	now := s.now()
	s.mu.Lock()
	if now.Sub(s.window) >= time.Minute {
		if s.held > 0 {
			s.log.Warn("more HTTP server errors were not logged", "count", s.held, "since", s.window.Format(time.RFC3339))
		}
		s.window, s.written, s.held = now, 0, 0
	}
	ok := s.written < serverErrorBurst
	if ok {
		s.written++
	} else {
		s.held++
	}
	s.mu.Unlock()
	if ok {
		s.log.Warn("http server: " + line)
	}
	return len(p), nil
}
