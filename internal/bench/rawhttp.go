package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// rawConn is a load generator's HTTP/1.1 keep-alive connection that
// sends prepared request bytes and reads each answer's status line,
// headers and Content-Length body, and nothing else: about a third of
// what Go's HTTP client costs per request, so that one core of load can
// keep the server's core busy (the heartbeat workload's answers are
// small and always have a Content-Length). It redials after an error or
// a "Connection: close". One goroutine uses it.
type rawConn struct {
	addr string // host:port
	c    net.Conn
	br   *bufio.Reader
}

func newRawConn(base string) (*rawConn, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("bench: raw requests need an http:// address, not %q", base)
	}
	return &rawConn{addr: u.Host}, nil
}

// rawRequest returns the bytes of a bodiless request as Go's client
// would send it.
func rawRequest(method, host, path, token string) []byte {
	b := fmt.Appendf(nil, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: muster-bench\r\n", method, path, host)
	if token != "" {
		b = fmt.Appendf(b, "Authorization: Bearer %s\r\n", token)
	}
	if method == "PUT" || method == "POST" {
		b = append(b, "Content-Length: 0\r\n"...)
	}
	return append(b, "\r\n"...)
}

// do sends req and reads its answer within ctx's deadline (or 30 s), and
// returns its status.
func (rc *rawConn) do(ctx context.Context, req []byte) (int, error) {
	if rc.c == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", rc.addr)
		if err != nil {
			return 0, err
		}
		rc.c, rc.br = c, bufio.NewReaderSize(c, 4096)
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(30 * time.Second)
	}
	rc.c.SetDeadline(dl)
	status, keep, err := rc.exchange(req)
	if err != nil || !keep {
		rc.close()
	}
	return status, err
}

func (rc *rawConn) exchange(req []byte) (status int, keep bool, err error) {
	if _, err := rc.c.Write(req); err != nil {
		return 0, false, err
	}
	line, err := rc.br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, false, fmt.Errorf("bench: bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bench: bad status line %q", line)
	}
	length, keep := -1, true
	for {
		line, err := rc.br.ReadSlice('\n')
		if err != nil {
			return status, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, _ := bytes.Cut(line, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil || length < 0 {
				return status, false, fmt.Errorf("bench: bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Connection")) && bytes.EqualFold(v, []byte("close")):
			keep = false
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			return status, false, errors.New("bench: raw requests take answers with a Content-Length only")
		}
	}
	if length < 0 {
		length = 0 // 204, 304: no body
	}
	if _, err := rc.br.Discard(length); err != nil {
		return status, false, err
	}
	return status, keep, nil
}

func (rc *rawConn) close() {
	if rc.c != nil {
		rc.c.Close()
		rc.c, rc.br = nil, nil
	}
}

// errStatus is a raw request's unexpected status.
func errStatus(req []byte, status int) error {
	line, _, _ := bytes.Cut(req, []byte("\r\n"))
	return fmt.Errorf("%s: status %d", line, status)
}
