package verify

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/musterhq/muster/api"
)

// Kept connections. A plain-HTTP callback to a pinned address (Target's
// DialIP) is one HTTP/1.1 exchange written and read in the caller's
// goroutine, over a connection to that address and port that may have
// served earlier callbacks to the same address and port, and may serve
// later ones. The pool is keyed by the address and port dialled, never by
// a name, so a kept connection reaches the very endpoint the callback
// must prove; the guard checked that endpoint when the connection was
// dialled, and the allowlist of a Verifier never changes.
//
// The request is sent once. A kept connection is checked before use (the
// instance may have closed it: peekIdle); a request whose first write on
// a kept connection sent nothing is sent again on a new connection, which
// is the rule net/http follows for requests that are not idempotent; once
// any byte left, a failure is the callback's. A connection is kept only
// after a whole answer (a 200 whose body was read to its end within the
// cap, no "Connection: close", nothing more sent), at most maxIdle in all
// and maxIdlePerHost to one address and port, for idleTimeout unused.

// The bounds of the connections kept between callbacks: in all, to one
// address and port (half the registry's 128 callback slots, what one
// enrolment key may hold), and how long one is kept unused. A server
// closes an idle connection when it likes, and one that closes it just as
// a callback's request leaves fails that callback; keeping them less
// long than common servers do (Node's 5 s is the shortest default) keeps
// that from happening with them, and registrations that come in waves
// still find their connections.
const (
	maxIdle        = 128
	maxIdlePerHost = 64
	idleTimeout    = 3 * time.Second
)

// keptConn is a connection with its reader: lr caps the bytes one
// exchange may read, and br buffers them.
type keptConn struct {
	net.Conn
	lr   io.LimitedReader
	br   *bufio.Reader
	used time.Time // when it was put back
}

func newKeptConn(c net.Conn) *keptConn {
	kc := &keptConn{Conn: c}
	kc.lr.R = c
	kc.br = bufio.NewReaderSize(&kc.lr, 4096)
	return kc
}

// connPool holds idle connections by the address and port they reach,
// the most recently used first. Safe for concurrent use.
type connPool struct {
	mu    sync.Mutex
	idle  map[netip.AddrPort][]*keptConn
	n     int         // idle connections in all
	sweep *time.Timer // armed while any connection is idle
}

func newConnPool() *connPool {
	return &connPool{idle: map[netip.AddrPort][]*keptConn{}}
}

// get returns an idle connection to key that is still open, or nil.
func (p *connPool) get(key netip.AddrPort) *keptConn {
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		kc := list[len(list)-1]
		list[len(list)-1] = nil
		if list = list[:len(list)-1]; len(list) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = list
		}
		p.n--
		p.mu.Unlock()
		if time.Since(kc.used) < idleTimeout && peekIdle(kc.Conn) {
			return kc
		}
		kc.Close()
	}
}

// put keeps kc as an idle connection to key, or closes it when the pool
// is full.
func (p *connPool) put(key netip.AddrPort, kc *keptConn) {
	kc.used = time.Now()
	p.mu.Lock()
	if p.n >= maxIdle || len(p.idle[key]) >= maxIdlePerHost {
		p.mu.Unlock()
		kc.Close()
		return
	}
	p.idle[key] = append(p.idle[key], kc)
	p.n++
	if p.sweep == nil {
		p.sweep = time.AfterFunc(idleTimeout, p.expire)
	}
	p.mu.Unlock()
}

// expire closes the connections idle for idleTimeout, and comes back
// while any are left.
func (p *connPool) expire() {
	var old []*keptConn
	p.mu.Lock()
	for key, list := range p.idle {
		keep := list[:0]
		for _, kc := range list {
			if time.Since(kc.used) >= idleTimeout {
				old = append(old, kc)
			} else {
				keep = append(keep, kc)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = keep
		}
	}
	p.n -= len(old)
	if p.n > 0 {
		p.sweep.Reset(idleTimeout / 2)
	} else {
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, kc := range old {
		kc.Close()
	}
}

// keptKey reports whether a callback to t may use a kept connection, and
// the address and port it would reach: plain HTTP to a pinned address
// without a zone, whose request line and headers are written as they are
// (a plain path, as the registry's rules for verify_path allow, and
// tokens without spaces or control characters). Any other callback goes
// through net/http's client, which escapes or refuses what it must.
func keptKey(t Target, contentType string) (netip.AddrPort, bool) {
	if !canPeek || t.Scheme != "http" || !t.DialIP.IsValid() || t.DialIP.Zone() != "" || t.Port < 1 || t.Port > 65535 ||
		!plainPath(t.Path) || !plainToken(t.Address) || !plainToken(contentType) {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(t.DialIP, uint16(t.Port)), true
}

// plainPath reports whether p is an absolute path of letters, digits and
// - . _ ~ / alone, which means the same to every server as it is written.
func plainPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~/", c) >= 0) {
			return false
		}
	}
	return true
}

// plainToken reports whether s is printable ASCII without spaces, so that
// it may be written into a request line or header as it is.
func plainToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// callKept is Call over a kept connection to key (see keptKey); ctx
// carries Call's deadline.
func (v *Verifier) callKept(ctx context.Context, t Target, key netip.AddrPort, contentType string, body []byte) ([]byte, error) {
	req := make([]byte, 0, 160+len(t.Path)+len(t.Address)+len(contentType)+len(body))
	req = append(req, "POST "...)
	req = append(req, t.Path...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, net.JoinHostPort(t.Address, strconv.Itoa(t.Port))...)
	req = append(req, "\r\nUser-Agent: "+userAgent+"\r\nContent-Type: "...)
	req = append(req, contentType...)
	req = append(req, "\r\nContent-Length: "...)
	req = strconv.AppendInt(req, int64(len(body)), 10)
	req = append(req, "\r\n\r\n"...)
	req = append(req, body...)
	for fresh := false; ; fresh = true {
		var kc *keptConn
		if !fresh {
			kc = v.kept.get(key)
		}
		reused := kc != nil
		if !reused {
			c, err := v.dialer.DialContext(ctx, "tcp", key.String())
			if err != nil {
				return nil, v.failed(ctx, t, cancelled(ctx, err))
			}
			kc = newKeptConn(c)
		}
		data, keep, sent, err := v.exchange(ctx, t, kc, req)
		if keep {
			v.kept.put(key, kc)
		} else {
			kc.Close()
		}
		if err != nil && reused && !sent && ctx.Err() == nil {
			continue // not a byte reached the instance: once more, on a new connection
		}
		return data, err
	}
}

// exchange writes req on kc and reads the answer. It reports whether kc
// may be kept, and whether any byte of req was sent.
func (v *Verifier) exchange(ctx context.Context, t Target, kc *keptConn, req []byte) (data []byte, keep, sent bool, err error) {
	dl, _ := ctx.Deadline()
	kc.SetDeadline(dl)
	// A caller that goes away ends the exchange at once.
	stop := context.AfterFunc(ctx, func() { kc.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			keep = false // its deadline may have been cut short
		}
	}()
	kc.lr.N = maxHeaderBytes
	n, err := kc.Write(req)
	if err != nil {
		return nil, false, n > 0, v.failed(ctx, t, cancelled(ctx, err))
	}
	var resp *http.Response
	for range 6 { // informational answers (1xx) are skipped, as net/http does
		if resp, err = http.ReadResponse(kc.br, nil); err != nil {
			return nil, false, true, v.failed(ctx, t, cancelled(ctx, err))
		}
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	if resp.StatusCode > 99 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, false, true, &Error{Reason: api.ReasonUnreachable, Msg: "cannot reach " + t.shown(), Detail: "too many informational answers"}
	}
	kc.lr.N += v.cfg.MaxBody + 1 // the body's cap, beside what the headers left
	data, err = v.answer(t, resp)
	if err != nil {
		return nil, false, true, err
	}
	keep = !resp.Close && kc.br.Buffered() == 0
	if keep {
		kc.SetDeadline(time.Time{})
	}
	return data, keep, true, nil
}

// cancelled returns the context's error when the caller went away, so
// that the failure reads as it does through net/http (not as a timeout,
// which the cut-short deadline would make it), and err otherwise.
func cancelled(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	return err
}
