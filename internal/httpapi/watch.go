package httpapi

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// WatchConfig tunes the event stream, GET /v1/watch. Zero fields take
// their defaults.
type WatchConfig struct {
	// Heartbeat is how often an idle stream is sent a comment line, so
	// that readers and proxies can tell a quiet stream from a dead
	// connection; default 15 s.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a stream: a reader that does not
	// take what was sent within it (its socket buffers are full) is
	// dropped, and counted; default 10 s.
	WriteTimeout time.Duration
	// Batch is the most events written in one write; default 256.
	Batch int
	// SendBuffer is the kernel send buffer of a stream's connection
	// (SO_SNDBUF; the kernel may double it), so that a reader that stops
	// reading pins at most this much kernel memory instead of the
	// megabytes autotuning would grow to; default 64 KiB. It needs the
	// server's ConnContext set to this package's ConnContext.
	SendBuffer int
}

// DefaultWatchConfig returns the defaults of WatchConfig.
func DefaultWatchConfig() WatchConfig {
	return WatchConfig{Heartbeat: 15 * time.Second, WriteTimeout: 10 * time.Second, Batch: 256, SendBuffer: 64 << 10}
}

// Validate reports a negative setting (zero means the default).
func (c WatchConfig) Validate() error {
	if c.Heartbeat < 0 || c.WriteTimeout < 0 || c.Batch < 0 || c.SendBuffer < 0 {
		return errors.New("httpapi: watch settings must not be negative")
	}
	return nil
}

func (c WatchConfig) withDefaults() WatchConfig {
	d := DefaultWatchConfig()
	if c.Heartbeat <= 0 {
		c.Heartbeat = d.Heartbeat
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.Batch <= 0 {
		c.Batch = d.Batch
	}
	if c.SendBuffer <= 0 {
		c.SendBuffer = d.SendBuffer
	}
	return c
}

// maxWatchServices bounds the services one stream may name.
const maxWatchServices = 256

// parseWatchQuery parses GET /v1/watch's query and Last-Event-ID header:
// the services to watch (none: all), and where to resume (resume false:
// from a snapshot). The header wins over ?after=, as it is what an
// EventSource sends on reconnecting to the URL it first opened.
func parseWatchQuery(q map[string][]string, lastEventID string) (services []string, after uint64, resume bool, _ *Error) {
	for k, vs := range q {
		switch k {
		case "service":
			if len(vs) > maxWatchServices {
				return nil, 0, false, BadField("service", "at most %d services per stream", maxWatchServices)
			}
			for _, v := range vs {
				if err := registry.CheckServiceName(v); err != nil {
					return nil, 0, false, BadField("service", "%v", err)
				}
			}
			services = vs
		case api.QueryAfter:
			n, err := strconv.ParseUint(vs[len(vs)-1], 10, 64)
			if err != nil {
				return nil, 0, false, BadField(api.QueryAfter, "after %q is not a non-negative integer (an event id)", vs[len(vs)-1])
			}
			after, resume = n, true
		default:
			return nil, 0, false, BadField(cmp.Or(k, "query"), "unknown query parameter %q", k)
		}
	}
	if lastEventID != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(lastEventID), 10, 64)
		if err != nil {
			return nil, 0, false, BadField("Last-Event-ID", "Last-Event-ID %q is not an event id", lastEventID)
		}
		after, resume = n, true
	}
	return services, after, resume, nil
}

// watch handles GET /v1/watch: Server-Sent Events of the catalog's
// changes. See api/events.go for the wire form and docs/api.md for the
// guarantees.
//
// The stream is pulled, not pushed: the catalog keeps a bounded history of
// recent events, and this handler reads it from its stream's cursor
// whenever the catalog wakes it, writing at most WatchConfig.Batch events
// per write. Nothing is queued per stream, so a slow reader holds only its
// own goroutine and connection; if it falls out of the history it is sent
// a resync snapshot, and if a write is not taken within
// WatchConfig.WriteTimeout it is dropped. Either is counted in the
// registry's StreamStats and logged.
func (a *apiServer) watch(w http.ResponseWriter, r *http.Request) error {
	q, qerr := query(r, "service")
	if qerr != nil {
		return qerr
	}
	mode, qerr := readMode(q)
	if qerr != nil {
		return qerr
	}
	if len(r.Header.Values("Last-Event-ID")) > 1 {
		return BadField("Last-Event-ID", "Last-Event-ID is given more than once; it takes one event id")
	}
	services, after, resume, qerr := parseWatchQuery(q, r.Header.Get("Last-Event-ID"))
	if qerr != nil {
		return qerr
	}
	scope, err := a.reader(r)
	if err != nil {
		return err
	}
	for _, s := range services {
		if err := registry.CheckServiceName(s); err != nil {
			return err
		}
		if err := a.reg.CheckRead(r.Context(), scope, s); err != nil {
			return err
		}
	}
	if err := a.beginRead(w, r, mode); err != nil {
		return err
	}
	client := ClientOf(r)
	st, err := a.reg.OpenStream(client, services)
	if err != nil {
		return err
	}
	defer st.Close()
	st.SetScope(scope.Filter())
	snap, err := st.Start(after, resume)
	if err != nil {
		return err
	}
	cfg := a.watchCfg
	if c, ok := r.Context().Value(connKey{}).(interface{ SetWriteBuffer(int) error }); ok {
		_ = c.SetWriteBuffer(cfg.SendBuffer)
	}
	sw := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: cfg.WriteTimeout}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a buffering proxy would hold events back
	shown := st.Cursor()
	if snap != nil {
		shown = snap.Index // a scoped stream's own index
	}
	h.Set(api.HeaderIndex, strconv.FormatUint(shown, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil // the headers say what a GET would stream
	}

	ctx, stop := a.longLived(r.Context())
	defer stop()
	// A reconnecting EventSource waits this long (ms) before it tries.
	sw.b = append(sw.b, "retry: 1000\n"...)
	protChanged := a.reg.ProtectionChanged()
	prot := a.reg.Protection()
	if snap == nil {
		// A resumed reader may hold an older state of protection than
		// the events it missed would have told it: say where it stands.
		appendProtection(sw, prot)
	}
	if snap != nil {
		err = a.writeSnapshot(sw, snap)
	} else {
		err = sw.comment("resumed after " + strconv.FormatUint(after, 10))
	}
	sent := st.Cursor() // the last id the reader has been given
	tick := time.NewTicker(cfg.Heartbeat)
	defer tick.Stop()
	for err == nil {
		evs, snap, wait, nerr := st.Next(cfg.Batch)
		if (snap != nil || len(evs) > 0) && a.reg.Recheck(scope) != nil {
			return endStream(sw, "its token was revoked or has expired")
		}
		switch {
		case nerr != nil:
			// This node stopped leading: the reader reconnects, to a node
			// that leads, with its last id.
			return nil
		case snap != nil:
			a.log.Info("event stream fell behind the history of recent events; sent it a snapshot",
				"client", client, "index", snap.Index)
			err = a.writeSnapshot(sw, snap)
			sent = snap.Index
			continue
		case len(evs) > 0:
			for _, e := range evs {
				a.appendEvent(sw, e, prot)
			}
			err = sw.flush()
			sent = evs[len(evs)-1].Index
			continue
		}
		select {
		case <-protChanged:
			protChanged = a.reg.ProtectionChanged()
			if p := a.reg.Protection(); p != prot {
				prot = p
				appendProtection(sw, prot)
				err = sw.flush()
			}
		case <-wait:
		case <-tick.C:
			if a.reg.Ready() != nil {
				return nil
			}
			if a.reg.Recheck(scope) != nil {
				return endStream(sw, "its token was revoked or has expired")
			}
			// A comment, and the cursor as the id when changes the stream
			// does not watch moved it on: a reader that reconnects then
			// resumes from there, not from an id the history may have
			// dropped.
			sw.b = append(sw.b, ": ping\n"...)
			// Not for a stream of limited scope: the cursor moving on would
			// tell it that services it may not read changed.
			if c := st.Cursor(); c > sent && scope.All() {
				sw.b = append(sw.b, "id: "...)
				sw.b = strconv.AppendUint(sw.b, c, 10)
				sw.b = append(sw.b, '\n')
				sent = c
			}
			sw.b = append(sw.b, '\n')
			err = sw.flush()
		case <-ctx.Done():
			return nil
		}
	}
	if isTimeout(err) {
		st.Dropped()
		a.log.Info("event stream dropped: its reader did not take what was sent in time", "client", client,
			"timeout", cfg.WriteTimeout)
	}
	return nil
}

// endStream ends a stream with a comment saying why; the reader that
// reconnects is told by the refusal what to do.
func endStream(sw *sseWriter, why string) error {
	sw.b = append(sw.b, ": stream ended: "...)
	sw.b = append(sw.b, why...)
	sw.b = append(sw.b, "\n\n"...)
	sw.flush()
	return nil
}

// ClientOf is the client a request counts against in limits per client
// (blocking queries, streams): its remote address without the port.
func ClientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// connKey is the context key of a request's connection.
type connKey struct{}

// ConnContext is for http.Server.ConnContext: it lets a stream bound its
// connection's kernel send buffer (WatchConfig.SendBuffer), and gives
// the registry the caller's address for the audit trail
// (registry.WithCaller), once per connection, so that no request pays
// for it.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return registry.WithCaller(context.WithValue(ctx, connKey{}, c), c.RemoteAddr().String())
}

// isTimeout reports whether a write failed on its deadline (a reader that
// does not read), rather than on a connection the reader closed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sseWriter writes a stream's bytes through one buffer, each flush within
// a deadline.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	b       []byte
}

// flush writes the buffer and flushes it to the connection, within the
// write timeout.
func (s *sseWriter) flush() error {
	if len(s.b) == 0 {
		return nil
	}
	// A ResponseWriter that cannot set a deadline (a test recorder)
	// writes without one.
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	_, err := s.w.Write(s.b)
	if cap(s.b) > 4*lookupChunk {
		s.b = nil // a large snapshot's buffer is not kept for the stream's life
	} else {
		s.b = s.b[:0]
	}
	if err == nil {
		err = s.rc.Flush()
	}
	return err
}

// comment writes an SSE comment line and flushes.
func (s *sseWriter) comment(text string) error {
	s.b = append(s.b, ": "...)
	s.b = append(s.b, text...)
	s.b = append(s.b, "\n\n"...)
	return s.flush()
}

// writeSnapshot writes a snapshot event: every instance of the snapshot's
// services, whatever its status, as one line of JSON (an
// api.WatchSnapshot), flushing each time the buffer passes lookupChunk so
// that a large snapshot is written in pieces of bounded size.
func (a *apiServer) writeSnapshot(sw *sseWriter, snap *registry.StreamSnapshot) error {
	sw.b = append(sw.b, "event: snapshot\nid: "...)
	sw.b = strconv.AppendUint(sw.b, snap.Index, 10)
	sw.b = append(sw.b, "\ndata: {\"type\":\"snapshot\",\"index\":"...)
	sw.b = strconv.AppendUint(sw.b, snap.Index, 10)
	if snap.Resync {
		sw.b = append(sw.b, `,"resync":true`...)
	}
	if a.reg.Protection() {
		sw.b = append(sw.b, `,"protection":true`...)
	}
	sw.b = append(sw.b, `,"instances":[`...)
	first := true
	var err error
	for i := range snap.Reads {
		rd := &snap.Reads[i]
		enc := a.enc.forView(rd.View)
		rd.Each(registry.Filter{Status: registry.StatusAny}, func(i int, e registry.Entry) bool {
			if !first {
				sw.b = append(sw.b, ',')
			}
			first = false
			sw.b = appendInstance(sw.b, enc.static[i], e)
			if len(sw.b) >= lookupChunk {
				err = sw.flush()
			}
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	sw.b = append(sw.b, "]}\n\n"...)
	return sw.flush()
}

// appendEvent appends one change as an SSE event. The event's JSON is
// built once, by the first stream to send it, and kept in the event's
// memo for the others.
func (a *apiServer) appendEvent(sw *sseWriter, e *catalog.Event, protection bool) {
	data := e.Memo()
	if data == nil {
		data = a.encodeEvent(e)
		e.SetMemo(data)
	}
	sw.b = append(sw.b, "event: "...)
	sw.b = append(sw.b, e.Type...)
	sw.b = append(sw.b, "\nid: "...)
	sw.b = strconv.AppendUint(sw.b, e.Index, 10)
	sw.b = append(sw.b, "\ndata: "...)
	sw.b = append(sw.b, data...)
	if protection {
		sw.b = append(sw.b, `,"protection":true`...)
	}
	sw.b = append(sw.b, "}\n\n"...)
}

// appendProtection appends a protection event: mass-expiry protection
// started (true) or ended (false). It has no id: it is not a change to
// the catalog.
func appendProtection(sw *sseWriter, on bool) {
	sw.b = append(sw.b, "event: protection\ndata: {\"protection\":"...)
	sw.b = strconv.AppendBool(sw.b, on)
	sw.b = append(sw.b, "}\n\n"...)
}

// encodeEvent encodes e as an api.Event without its closing brace.
func (a *apiServer) encodeEvent(e *catalog.Event) []byte {
	inst := e.Instance
	b := make([]byte, 0, 512)
	b = append(b, `{"type":"`...)
	b = append(b, e.Type...) // a fixed word
	b = append(b, `","index":`...)
	b = strconv.AppendUint(b, e.Index, 10)
	b = append(b, `,"service":"`...)
	b = append(b, inst.Service...) // [a-z0-9_-]: safe in JSON
	b = append(b, `","instance":`...)
	b = appendInstance(b, encodeStatic(inst), a.reg.EventEntry(e))
	if e.Replaced != nil {
		b = append(b, `,"replaced":"`...)
		b = append(b, e.Replaced.ID...) // IDs are [a-z0-9-]
		b = append(b, '"')
	}
	if e.Reason != "" {
		b = append(b, `,"reason":"`...)
		b = append(b, e.Reason...) // a fixed word
		b = append(b, '"')
	}
	return b
}

// longLived returns a context for a handler that may run for minutes (a
// blocking query, a stream): it ends with the request, or when the server
// begins to close (Deps.Closing), so that shutdown does not wait for it.
func (a *apiServer) longLived(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if a.closing == nil {
		return ctx, cancel
	}
	stop := context.AfterFunc(a.closing, cancel)
	return ctx, func() { stop(); cancel() }
}
