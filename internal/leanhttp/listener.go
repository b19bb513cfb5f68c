package leanhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Config says which requests a Listener answers, with what, and within
// what times.
type Config struct {
	// Handler answers the requests answered here: the same handler the
	// net/http server has, so that routing, metrics and errors are the
	// same whichever server read the request.
	Handler http.Handler
	// Method is the one method answered here.
	Method string
	// Prefix is the start of every path answered here; a connection
	// whose next request does not begin with Method, a space and Prefix
	// goes to net/http as soon as that is known.
	Prefix string
	// Path reports whether a path (beginning with Prefix, of letters,
	// digits and "/-_.~" only) is answered here.
	Path func(path []byte) bool
	// BaseContext is the context of every request, with
	// http.LocalAddrContextKey added; ConnContext, when set, derives
	// each connection's from it, as http.Server.ConnContext. Unlike
	// net/http's, a request's context does not end when its client
	// hangs up: the requests answered here are short.
	BaseContext context.Context
	ConnContext func(context.Context, net.Conn) context.Context
	// ReadHeaderTimeout bounds the reading of a request head from its
	// first byte; IdleTimeout the wait for a connection's next request;
	// WriteTimeout each write of answers. The server passes its
	// http.Server's.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	WriteTimeout      time.Duration
	// Logger gets the panics of a handler that escape it.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with net/http-like times and no
// handler or route.
func DefaultConfig() Config {
	return Config{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, WriteTimeout: 30 * time.Second}
}

// Validate reports what a Config lacks.
func (c Config) Validate() error {
	switch {
	case c.Handler == nil:
		return errors.New("leanhttp: no handler")
	case c.Method == "" || c.Prefix == "" || c.Path == nil:
		return errors.New("leanhttp: no route (Method, Prefix and Path)")
	case c.ReadHeaderTimeout <= 0 || c.IdleTimeout <= 0 || c.WriteTimeout <= 0:
		return errors.New("leanhttp: every timeout must be positive")
	}
	return nil
}

// Listener wraps a listener: every connection it accepts is read here
// first, and its requests in the strict shape are answered here; a
// connection is returned by Accept (to net/http) once a request is not
// in the shape, with the bytes read so far put back in front of it.
//
// Each connection read here has one goroutine, which owns its reader,
// writer and response. Close stops accepting and closes the connections
// waiting for a request; those answering one close once they have
// answered. Wait waits for them all.
type Listener struct {
	inner  net.Listener
	cfg    Config
	start  string // Method SP Prefix
	log    *slog.Logger
	clock  clock
	handed chan net.Conn
	// done is closed by Close; err is what Accept returns after it, or
	// after the inner listener failed.
	done    chan struct{}
	errOnce sync.Once
	err     error

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup

	answered, handedOff atomic.Uint64
}

// Stats are a Listener's counters since New.
type Stats struct {
	// Answered is the requests answered here; HandedOff the connections
	// given to net/http.
	Answered, HandedOff uint64
}

// Stats returns the listener's counters.
func (l *Listener) Stats() Stats {
	return Stats{Answered: l.answered.Load(), HandedOff: l.handedOff.Load()}
}

// conn states: a connection is idle while it waits for a request, and
// reading while it waits for the rest of a head, with every answer sent
// (Close may close it in either); busy while it answers a request or
// reads one already received; closed once Close or its goroutine has
// closed it.
const (
	idle int32 = iota
	reading
	busy
	closed
)

type conn struct {
	c     net.Conn
	state atomic.Int32
}

// claim makes c busy; false when Close has closed it.
func (c *conn) claim() bool {
	for {
		switch s := c.state.Load(); s {
		case closed:
			return false
		case busy:
			return true
		default:
			if c.state.CompareAndSwap(s, busy) {
				return true
			}
		}
	}
}

// deadlined is a connection's writer: every write to it (each flush of
// the buffer in front, whether serve or the buffer itself asks) must end
// within timeout.
type deadlined struct {
	c       net.Conn
	timeout time.Duration
}

func (d deadlined) Write(b []byte) (int, error) {
	d.c.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.c.Write(b)
}

// New wraps inner; cfg must be valid (Validate), else New panics: it is
// the assembly's own configuration.
func New(inner net.Listener, cfg Config) *Listener {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.BaseContext == nil {
		cfg.BaseContext = context.Background()
	}
	l := &Listener{inner: inner, cfg: cfg, start: cfg.Method + " " + cfg.Prefix, log: cfg.Logger,
		handed: make(chan net.Conn), done: make(chan struct{}), conns: map[*conn]struct{}{}}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Accept returns the next connection for net/http: one whose request
// was not in the strict shape.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.handed:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting, closes the connections that wait for a request
// and makes Accept fail. Connections answering a request close once
// they have answered; Wait waits for them.
func (l *Listener) Close() error {
	err := l.inner.Close()
	l.fail(fmt.Errorf("leanhttp: %w", net.ErrClosed))
	l.mu.Lock()
	for c := range l.conns {
		if c.state.CompareAndSwap(idle, closed) || c.state.CompareAndSwap(reading, closed) {
			c.c.Close()
		}
	}
	l.mu.Unlock()
	return err
}

// Wait waits until every connection read here has closed or been handed
// to net/http, and the accepting goroutine has stopped; when ctx ends
// first, it closes them all, answering or not, and waits for their
// goroutines.
func (l *Listener) Wait(ctx context.Context) error {
	all := make(chan struct{})
	go func() { l.wg.Wait(); close(all) }()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	for c := range l.conns {
		c.state.Store(closed)
		c.c.Close()
	}
	l.mu.Unlock()
	<-all
	return ctx.Err()
}

// fail ends Accept with err (the first error only).
func (l *Listener) fail(err error) {
	l.errOnce.Do(func() {
		l.err = err
		close(l.done)
	})
}

func (l *Listener) closing() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// acceptLoop accepts from the inner listener until it fails for good,
// and starts a goroutine for each connection. A temporary failure (out
// of file descriptors) is retried after a pause, as net/http does.
func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var pause time.Duration
	for {
		nc, err := l.inner.Accept()
		if err != nil {
			var ne interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Temporary() && !l.closing() {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(pause):
					continue
				case <-l.done:
				}
			}
			l.fail(err)
			return
		}
		pause = 0
		c := &conn{c: nc}
		c.state.Store(busy) // until its goroutine first waits
		l.mu.Lock()
		if l.closing() {
			l.mu.Unlock()
			nc.Close()
			continue
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serve(c)
	}
}

// forget removes c from the connections read here.
func (l *Listener) forget(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// serve reads c's requests and answers those in the strict shape, until
// one is not (c goes to net/http), the client closes or is too slow, or
// the listener closes.
func (l *Listener) serve(c *conn) {
	defer l.wg.Done()
	nc := c.c
	br := bufio.NewReaderSize(nc, maxHead)
	bw := bufio.NewWriterSize(deadlined{nc, l.cfg.WriteTimeout}, 4096)
	ctx := context.WithValue(l.cfg.BaseContext, http.LocalAddrContextKey, nc.LocalAddr())
	if l.cfg.ConnContext != nil {
		ctx = l.cfg.ConnContext(ctx, nc)
	}
	remote := nc.RemoteAddr().String()
	w := &response{header: make(http.Header, 4)}
	var h head
	// The first request's head, its wait included, is due within the
	// header timeout of the accept, as net/http has it; a later one's
	// first byte within the idle timeout, the rest within the header
	// timeout of that byte.
	nc.SetReadDeadline(time.Now().Add(l.cfg.ReadHeaderTimeout))
	for first := true; ; first = false {
		if br.Buffered() == 0 {
			// Everything answered is sent before the wait for more, and
			// only then may Close close the connection.
			if !l.flush(c, bw) {
				return
			}
			c.state.Store(idle)
			if l.closing() {
				l.end(c)
				return
			}
			if !first {
				nc.SetReadDeadline(time.Now().Add(l.cfg.IdleTimeout))
			}
			if _, err := br.Peek(1); err != nil {
				l.end(c)
				return
			}
			if !c.state.CompareAndSwap(idle, reading) {
				l.end(c) // closed by Close while it waited
				return
			}
		}
		if !first {
			nc.SetReadDeadline(time.Now().Add(l.cfg.ReadHeaderTimeout))
		}
		n, err := l.readHead(c, br, bw)
		if err != nil {
			if errors.Is(err, io.EOF) && br.Buffered() > 0 && l.flush(c, bw) {
				// The client ended inside a head: net/http answers that
				// (400, as it would have).
				l.handOff(c, br, bw)
				return
			}
			l.flush(c, bw)
			l.end(c)
			return
		}
		b, _ := br.Peek(n)
		if n == 0 || !parseHead(b, l.cfg.Method, l.cfg.Path, &h) {
			l.handOff(c, br, bw)
			return
		}
		if !c.claim() {
			l.end(c) // closed by Close while the head came
			return
		}
		r := l.request(ctx, &h, remote)
		br.Discard(n)
		if !l.answer(w, r) {
			l.end(c)
			return
		}
		l.answered.Add(1)
		stop := l.closing()
		w.writeTo(bw, l.clock.httpDate(), stop)
		w.reset()
		if stop {
			l.flush(c, bw)
			l.end(c)
			return
		}
		// A pipelined request already read is answered at once, its
		// answer sent with this one.
	}
}

// readHead reads until br holds a whole request head, and returns its
// length; 0 when the request is not in the strict shape (its start is
// not l.start, or its head is longer than maxHead). Before it waits for
// more bytes it sends the answers bw holds (a client may wait for them
// before it sends the rest), and lets Close close c. An error is the
// connection's (closed, or too slow).
func (l *Listener) readHead(c *conn, br *bufio.Reader, bw *bufio.Writer) (int, error) {
	for {
		b, _ := br.Peek(br.Buffered())
		if !plausible(b, l.start) {
			return 0, nil
		}
		if n := headEnd(b); n > 0 {
			return n, nil
		}
		if len(b) == maxHead {
			return 0, nil
		}
		if bw.Buffered() > 0 || c.state.Load() == busy {
			if !l.flush(c, bw) {
				return 0, net.ErrClosed
			}
			if !c.state.CompareAndSwap(busy, reading) && c.state.Load() == closed {
				return 0, net.ErrClosed
			}
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return 0, err
		}
	}
}

// request builds the http.Request of h: the fields net/http would set
// for the same bytes (no body, HTTP/1.1, the Host out of the headers).
func (l *Listener) request(ctx context.Context, h *head, remote string) *http.Request {
	target := string(h.target)
	r := &http.Request{
		Method:     l.cfg.Method,
		URL:        &url.URL{Path: target},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h.header(),
		Body:       http.NoBody,
		Host:       string(h.host),
		RemoteAddr: remote,
		RequestURI: target,
	}
	return r.WithContext(ctx)
}

// answer runs the handler into w; false when the handler aborted
// (http.ErrAbortHandler, or a panic that escaped it: the connection is
// closed without an answer, as net/http closes it).
func (l *Listener) answer(w *response, r *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			if v != http.ErrAbortHandler {
				l.log.Error("handler panic", "method", r.Method, "panic", v, "stack", string(debug.Stack()))
			}
		}
	}()
	l.cfg.Handler.ServeHTTP(w, r)
	return true
}

// flush writes what bw holds (each write within the write timeout);
// false when it could not (the connection is then closed).
func (l *Listener) flush(c *conn, bw *bufio.Writer) bool {
	if bw.Buffered() == 0 {
		return true
	}
	if err := bw.Flush(); err != nil {
		l.end(c)
		return false
	}
	return true
}

// end closes c, once, and forgets it.
func (l *Listener) end(c *conn) {
	if c.state.Swap(closed) != closed {
		c.c.Close()
	}
	l.forget(c)
}

// handOff gives c to net/http: what was answered is sent first, then the
// connection goes, with the bytes br holds put back in front of it, and
// without the deadlines set here.
func (l *Listener) handOff(c *conn, br *bufio.Reader, bw *bufio.Writer) {
	if !l.flush(c, bw) {
		return
	}
	b, _ := br.Peek(br.Buffered())
	hc := &handed{Conn: c.c, pending: append([]byte(nil), b...)}
	c.c.SetDeadline(time.Time{})
	l.forget(c)
	l.handedOff.Add(1)
	select {
	case l.handed <- hc:
	case <-l.done:
		c.c.Close()
	}
}

// handed is a connection given to net/http: the bytes read here come
// first.
type handed struct {
	net.Conn
	pending []byte
}

func (h *handed) Read(p []byte) (int, error) {
	if len(h.pending) > 0 {
		n := copy(p, h.pending)
		h.pending = h.pending[n:]
		return n, nil
	}
	return h.Conn.Read(p)
}

// SetWriteBuffer sets the kernel send buffer of the connection beneath
// when it can (event streams bound theirs).
func (h *handed) SetWriteBuffer(n int) error {
	if w, ok := h.Conn.(interface{ SetWriteBuffer(int) error }); ok {
		return w.SetWriteBuffer(n)
	}
	return nil
}

// CloseWrite half-closes the connection when it can (net/http does so
// before closing a connection whose request body it did not read).
func (h *handed) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
