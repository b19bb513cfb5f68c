package leanhttp

import (
	"bufio"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// response is the http.ResponseWriter of a request answered here: the
// handler's status, headers and body are kept until it returns, then
// written as one HTTP/1.1 response with its Content-Length. It offers no
// Flusher or Hijacker (http.ResponseController says so): the requests
// answered here are small and end when their handler does.
type response struct {
	header http.Header
	status int
	body   []byte
}

func (w *response) Header() http.Header { return w.header }

// WriteHeader records the first final status. Informational statuses
// (1xx) are not sent.
func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("leanhttp: invalid WriteHeader code " + strconv.Itoa(code)) // as net/http does
	}
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *response) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.body = append(w.body, b...)
	return len(b), nil
}

// reset readies w for the next request, keeping its buffers.
func (w *response) reset() {
	clear(w.header)
	w.status = 0
	if cap(w.body) > maxHead { // a large answer's buffer is not kept
		w.body = nil
	}
	w.body = w.body[:0]
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// writeTo writes the response to bw: the status line, the handler's
// headers (sorted; newlines in values turned to spaces, names that are
// not tokens left out, as net/http does), Date unless the handler set
// one, Content-Type sniffed when the handler set none and there is a
// body, the Content-Length of the body (the handler's own
// Content-Length and Transfer-Encoding are replaced), Connection: close
// when close, then the body.
func (w *response) writeTo(bw *bufio.Writer, date []byte, close bool) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	bw.WriteString("HTTP/1.1 ")
	var num [20]byte
	bw.Write(strconv.AppendInt(num[:0], int64(w.status), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(w.status))
	bw.WriteString("\r\n")
	var keys [16]string
	ks := keys[:0]
	for k := range w.header {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Connection":
			continue
		}
		if k != "" && all(k, tokenChar) {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	for _, k := range ks {
		for _, v := range w.header[k] {
			bw.WriteString(k)
			bw.WriteString(": ")
			for i := 0; i < len(v); i++ {
				c := v[i]
				if c == '\r' || c == '\n' {
					c = ' '
				}
				bw.WriteByte(c)
			}
			bw.WriteString("\r\n")
		}
	}
	if _, ok := w.header["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(date)
		bw.WriteString("\r\n")
	}
	hasBody := bodyAllowed(w.status)
	if _, ok := w.header["Content-Type"]; !ok && hasBody && len(w.body) > 0 {
		bw.WriteString("Content-Type: ")
		bw.WriteString(http.DetectContentType(w.body))
		bw.WriteString("\r\n")
	}
	if hasBody {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(num[:0], int64(len(w.body)), 10))
		bw.WriteString("\r\n")
	}
	if close {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if hasBody {
		bw.Write(w.body)
	}
}

// date is the Date header's value for one second.
type date struct {
	unix int64
	b    []byte
}

// clock formats the Date header at most once a second.
type clock struct{ cur atomic.Pointer[date] }

// httpDate returns the current time in HTTP's format.
func (c *clock) httpDate() []byte {
	t := time.Now()
	if d := c.cur.Load(); d != nil && d.unix == t.Unix() {
		return d.b
	}
	d := &date{unix: t.Unix(), b: t.UTC().AppendFormat(make([]byte, 0, 29), http.TimeFormat)}
	c.cur.Store(d)
	return d.b
}
