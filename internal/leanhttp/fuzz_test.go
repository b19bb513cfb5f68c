package leanhttp

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzParseHead checks the parser against net/http's on any bytes: it
// never panics, and a head it takes is one net/http reads the same way
// (method, path, Host, every header's value, no body, keep-alive). So
// a request is never read one way here and another way by net/http.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte(beat))
	f.Add([]byte("PUT /beat/x HTTP/1.1\r\nHost: [::1]:80\r\nConnection: Keep-Alive\r\naccept-encoding: gzip\r\n\r\n"))
	f.Add([]byte("PUT /beat/x HTTP/1.1\r\nHost: h\r\nX-Request-Id:  a b \t\r\nContent-Type: application/json\r\nAccept: */*\r\n\r\n"))
	f.Add([]byte("PUT /beat/x HTTP/1.1\r\nHost: h\r\nContent-Length: 00\r\n\r\n"))
	f.Add([]byte("PUT /beat/x HTTP/1.1\r\nHost: h\r\nAuthorization:\r\n\r\n"))
	f.Add([]byte("PUT /beat/. HTTP/1.1\r\nHost: h\r\n\r\n"))
	// Near misses, which the parser must refuse: net/http reads each
	// differently from the shape.
	f.Add([]byte("PUT /beat/x HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\n\r\n"))
	f.Add([]byte("PUT /beat/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("PUT /beat/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n"))
	f.Add([]byte("PUT /beat/x?y HTTP/1.1\r\nHost: h\r\n\r\n"))
	f.Add([]byte("PUT /beat/x%41 HTTP/1.1\r\nHost: h\r\n\r\n"))
	f.Add([]byte("PUT /beat/x HTTP/1.1\r\nHost: h\r\nUser-Agent: a\r\n\tb\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !plausible(b, "PUT /beat/") {
			return
		}
		n := headEnd(b)
		if n < 0 {
			return
		}
		var h head
		if !parseHead(b[:n], "PUT", beatPath, &h) {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:n])))
		if err != nil {
			t.Fatalf("taken here, refused by net/http (%v): %q", err, b[:n])
		}
		if r.Method != "PUT" || r.URL.Path != string(h.target) || r.URL.RawQuery != "" || r.Host != string(h.host) ||
			r.ContentLength != 0 || r.Close || r.ProtoMinor != 1 {
			t.Fatalf("read differently by net/http: %q: %+v", b[:n], r)
		}
		mine := h.header()
		for k, v := range mine {
			if got := r.Header.Values(k); len(got) != 1 || got[0] != v[0] {
				t.Fatalf("header %s: here %q, net/http %q, in %q", k, v, got, b[:n])
			}
		}
		for k := range r.Header {
			if _, ok := mine[k]; !ok {
				t.Fatalf("net/http read a header %q not read here, in %q", k, b[:n])
			}
		}
	})
}
