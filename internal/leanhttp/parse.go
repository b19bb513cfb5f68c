package leanhttp

import (
	"bytes"
	"net/http"
)

// maxHead bounds a request head answered here: its request line and
// headers, the blank line included. A longer head goes to net/http,
// whose own bound (the server's MaxHeaderBytes) applies.
const maxHead = 4096

// head is a request head in the strict shape: the request's target and
// its headers, as views into the bytes parsed (valid until they are
// read past).
type head struct {
	target []byte
	host   []byte
	fields [len(known)]field // each known header at most once
	n      int               // fields used
}

// field is a header other than Host: its canonical name and its value,
// trimmed.
type field struct {
	name  string
	value []byte
}

// known are the headers a request answered here may carry, by their
// canonical names: what common clients (Go's, curl, Python's) send with
// a bodiless request. Any other header (Transfer-Encoding, Expect,
// Upgrade, Cookie, a header of the client's own) sends the connection to
// net/http. At most 16 (parseHead keeps those seen in 16 bits).
var known = [...]string{"Accept", "Accept-Encoding", "Authorization", "Connection", "Content-Length", "Content-Type", "User-Agent", "X-Request-Id"}

// knownIndex returns the index in known of the header whose lower-case
// name is lname, or -1.
func knownIndex(lname []byte) int {
next:
	for i, k := range known {
		if len(k) != len(lname) {
			continue
		}
		for j := 0; j < len(k); j++ {
			c := k[j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lname[j] {
				continue next
			}
		}
		return i
	}
	return -1
}

var crlf2 = []byte("\r\n\r\n")

// headEnd returns the length of the request head at the start of b (its
// blank line included), or -1 when b does not hold all of it yet.
func headEnd(b []byte) int {
	if i := bytes.Index(b, crlf2); i >= 0 {
		return i + len(crlf2)
	}
	return -1
}

// plausible reports whether b, the bytes of a request read so far, may
// still be the start of a request in the strict shape: it begins with
// start ("PUT /v1/instances/"), or is a beginning of it, and each of its
// lines so far ends in CRLF (a request with a bare LF would never show
// the blank line headEnd looks for).
func plausible(b []byte, start string) bool {
	if len(b) < len(start) {
		return string(b) == start[:len(b)]
	}
	if string(b[:len(start)]) != start {
		return false
	}
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		if b[i-1] != '\r' {
			return false
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return true
}

// parseHead parses b, a whole request head (as headEnd measured it), and
// reports whether it is in the strict shape: "method SP target SP
// HTTP/1.1", the target a path of pathChar bytes for which path holds
// (no query, no escapes); each header line "name: value", the name one
// of known and seen once, the value of visible ASCII, spaces and tabs
// (trimmed); exactly one Host, of hostChar bytes; Content-Length, if
// any, 0; Connection, if any, keep-alive. Anything else is not in the
// shape, and false. It never allocates.
func parseHead(b []byte, method string, path func([]byte) bool, h *head) bool {
	*h = head{}
	line, rest, ok := cutLine(b)
	if !ok {
		return false
	}
	m, line, ok := bytes.Cut(line, []byte{' '})
	if !ok || string(m) != method {
		return false
	}
	target, proto, ok := bytes.Cut(line, []byte{' '})
	if !ok || string(proto) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' || !all(target, pathChar) || !path(target) {
		return false
	}
	h.target = target
	var seen uint16 // bit i: known[i] seen
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return false
		}
		if len(line) == 0 {
			// The blank line: the head ends here, and nothing may follow
			// it in b (headEnd cut b there).
			return len(rest) == 0 && h.host != nil
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(name) == 0 || len(name) > 32 {
			return false
		}
		var low [32]byte
		for i, c := range name {
			if !tokenChar(c) {
				return false
			}
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			low[i] = c
		}
		value = trim(value)
		if !all(value, valueChar) {
			return false
		}
		lname := low[:len(name)]
		if string(lname) == "host" {
			if h.host != nil || len(value) == 0 || !all(value, hostChar) {
				return false
			}
			h.host = value
			continue
		}
		i := knownIndex(lname)
		if i < 0 {
			return false
		}
		canon, bit := known[i], uint16(1)<<i
		if seen&bit != 0 {
			return false // a header twice: net/http decides what that means
		}
		seen |= bit
		switch canon {
		case "Content-Length":
			if string(value) != "0" {
				return false
			}
		case "Connection":
			if !bytes.EqualFold(value, []byte("keep-alive")) {
				return false
			}
		}
		h.fields[h.n] = field{name: canon, value: value}
		h.n++
	}
}

// cutLine cuts b at its first CRLF. A line with a bare CR or a bare LF
// is not in the strict shape.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

func trim(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// all reports whether every byte of b is ok.
func all[S ~string | ~[]byte](b S, ok func(byte) bool) bool {
	for i := 0; i < len(b); i++ {
		if !ok(b[i]) {
			return false
		}
	}
	return true
}

// pathChar: the bytes of a path answered here. No '%' (net/http would
// unescape), '?' or '#' (a query or fragment), ';' or anything else
// that a router or handler might read differently from its bytes.
func pathChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '/' || c == '-' || c == '_' || c == '.' || c == '~'
}

// hostChar: the bytes of a Host answered here (a name, an IPv4 address,
// a bracketed IPv6 address, a port).
func hostChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'
}

// tokenChar: the bytes of a header name (RFC 9110's tchar).
func tokenChar(c byte) bool {
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// valueChar: the bytes of a header value answered here: visible ASCII,
// space and tab. (net/http also takes bytes of 0x80 and up; a value with
// one goes to it.)
func valueChar(c byte) bool { return c == '\t' || ' ' <= c && c < 0x7f }

// header returns h's fields as an http.Header.
func (h *head) header() http.Header {
	hdr := make(http.Header, h.n)
	for _, f := range h.fields[:h.n] {
		hdr[f.name] = []string{string(f.value)}
	}
	return hdr
}
