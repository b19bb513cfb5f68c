package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/registry"
)

// recorder is an http.ResponseWriter that keeps the body and the size of
// each write.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
	writes []int
}

func newRecorder() *recorder { return &recorder{h: http.Header{}} }

func (w *recorder) Header() http.Header { return w.h }
func (w *recorder) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}
func (w *recorder) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.writes = append(w.writes, len(p))
	return w.body.Write(p)
}

// wantLookup is the lookup of service as the single-buffer encoder wrote
// it: each instance as GET /v1/instances/{id} encodes it, the same bytes
// since none has been heard from.
func wantLookup(t *testing.T, h http.Handler, service string, index string, ids []int) []byte {
	t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"service":%q,"index":%s,"instances":[`, service, index)
	for k, i := range ids {
		w := newRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v1/instances/i%05d", i), nil))
		if w.status != http.StatusOK {
			t.Fatalf("GET instance %d: %d %s", i, w.status, w.body.Bytes())
		}
		if k > 0 {
			b.WriteByte(',')
		}
		b.Write(bytes.TrimSuffix(w.body.Bytes(), []byte("\n")))
	}
	b.WriteString("]}\n")
	return b.Bytes()
}

// TestLookup_Streamed: an answer that fits in the lookup buffer (32 KiB)
// is written whole in one write; a larger one is written in writes of at
// most the buffer, except instances whose encoding alone is over half the
// buffer, which may be written as they are. The
// bytes are the same either way, and the same as the single-buffer
// encoder's, with the same status and X-Muster-Index.
func TestLookup_Streamed(t *testing.T) {
	const chunk = 32 << 10
	for _, tc := range []struct {
		name       string
		n, labels  int
		query      string
		streamed   bool
		directOver int // writes over chunk allowed only for instances this large
	}{
		{name: "no such service", n: 0},
		{name: "one instance", n: 1},
		{name: "just fits", n: 80},
		{name: "just over", n: 120, streamed: true},
		{name: "1000 instances of 4 KiB", n: 1000, labels: registry.MaxLabelBytes, streamed: true},
		{name: "filtered to a few", n: 300, labels: registry.MaxLabelBytes, query: "?tag=t7"},
		{name: "filtered to none", n: 1000, labels: registry.MaxLabelBytes, query: "?tag=nope"},
		{name: "instances of 15 KiB", n: 30, labels: 15 << 10, streamed: true},
		{name: "instances of 17 KiB", n: 30, labels: 17 << 10, streamed: true, directOver: 17 << 10},
		{name: "instances of 40 KiB", n: 30, labels: 40 << 10, streamed: true, directOver: 40 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := bigRegistry(t, "big", tc.n, tc.labels)
			h := httpapi.NewHandler(httpapi.Deps{Registry: reg})
			w := newRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/services/big"+tc.query, nil))
			if w.status != http.StatusOK {
				t.Fatalf("status %d: %.200s", w.status, w.body.Bytes())
			}
			index := w.h.Get(api.HeaderIndex)
			if w.h.Get("Content-Type") != "application/json" || index == "" {
				t.Fatalf("headers %v", w.h)
			}
			var ids []int
			for i := range tc.n {
				if tc.query == "" || tc.query == fmt.Sprintf("?tag=t%d", i%100) {
					ids = append(ids, i)
				}
			}
			want := wantLookup(t, h, "big", index, ids)
			if !bytes.Equal(w.body.Bytes(), want) {
				t.Fatalf("answer of %d bytes differs from the single-buffer one of %d:\n%.300s\nwant\n%.300s",
					w.body.Len(), len(want), w.body.Bytes(), want)
			}
			var lr api.LookupResponse
			if err := json.Unmarshal(w.body.Bytes(), &lr); err != nil || len(lr.Instances) != len(ids) {
				t.Fatalf("%d instances, %v; want %d", len(lr.Instances), err, len(ids))
			}
			if streamed := len(w.writes) > 1; streamed != tc.streamed {
				t.Fatalf("answer of %d bytes in %d writes; streamed %v, want %v", w.body.Len(), len(w.writes), streamed, tc.streamed)
			}
			if !tc.streamed && w.body.Len() > chunk {
				t.Fatalf("whole answer of %d bytes is over the buffer", w.body.Len())
			}
			for _, n := range w.writes {
				if n > chunk && (tc.directOver == 0 || n > tc.directOver+1024) {
					t.Fatalf("a write of %d bytes (writes %v)", n, w.writes)
				}
			}
		})
	}
}

// blockedWriter is a ResponseWriter whose writes block until release is
// closed; started is closed at the first write.
type blockedWriter struct {
	recorder
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (w *blockedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	<-w.release
	return w.recorder.Write(p)
}

// TestLookup_Busy: while every slot for large answers is taken, another
// large lookup waits up to LookupConfig.Wait and is then answered 503 busy
// with Retry-After; lookups with small answers (a small service, or a
// filter that leaves few instances of a large one) take no slot and are
// answered at once. A slot given back serves the next large lookup.
func TestLookup_Busy(t *testing.T) {
	reg := bigRegistry(t, "big", 1000, 1<<10) // 1.3 MiB; 13 KiB with ?tag=t7
	h := httpapi.NewHandler(httpapi.Deps{Registry: reg, Lookups: httpapi.LookupConfig{MaxLarge: 1, Wait: 100 * time.Millisecond}})
	get := func(path string) *recorder {
		w := newRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}

	slow := &blockedWriter{recorder: *newRecorder(), started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(slow, httptest.NewRequest(http.MethodGet, "/v1/services/big", nil))
	}()
	<-slow.started

	start := time.Now()
	w := get("/v1/services/big")
	waited := time.Since(start)
	var eb api.ErrorBody
	if err := json.Unmarshal(w.body.Bytes(), &eb); err != nil || w.status != http.StatusServiceUnavailable ||
		eb.Error.Code != api.CodeBusy || w.h.Get("Retry-After") != "1" {
		t.Fatalf("second large lookup: %d %s, Retry-After %q; want 503 busy with Retry-After 1", w.status, w.body.Bytes(), w.h.Get("Retry-After"))
	}
	if waited < 100*time.Millisecond || waited > 2*time.Second {
		t.Errorf("busy after %s; want after the wait of 100ms", waited)
	}
	if w := get("/v1/services/big?tag=t7"); w.status != http.StatusOK || len(w.writes) != 1 {
		t.Fatalf("small filtered lookup while the slot is taken: %d in %d writes", w.status, len(w.writes))
	}
	if w := get("/v1/services/other"); w.status != http.StatusOK {
		t.Fatalf("lookup of another service while the slot is taken: %d", w.status)
	}

	close(slow.release)
	<-done
	if slow.status != http.StatusOK || !bytes.HasSuffix(slow.body.Bytes(), []byte("]}\n")) {
		t.Fatalf("the held lookup: %d, %d bytes", slow.status, slow.body.Len())
	}
	if w := get("/v1/services/big"); w.status != http.StatusOK || !bytes.HasSuffix(w.body.Bytes(), []byte("]}\n")) {
		t.Fatalf("large lookup after the slot was given back: %d", w.status)
	}
}

// TestLookup_SlowReader: a client that asks for a large answer and reads
// none of it holds its slot only until LookupConfig.WriteTimeout; then its
// answer is cut short (the connection closes before the chunked body
// ends) and the slot serves the next lookup.
func TestLookup_SlowReader(t *testing.T) {
	reg := bigRegistry(t, "big", 1000, 40<<10) // 40 MiB: far more than the sockets' buffers
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Deps{Registry: reg,
		// The write timeout bounds the slow reader's hold, and is also
		// all the next lookup has to write its 40 MiB: under the race
		// detector on a busy machine 300 ms was not enough for that.
		Lookups: httpapi.LookupConfig{MaxLarge: 1, Wait: 10 * time.Second, WriteTimeout: 2 * time.Second}}))
	defer srv.Close()

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/services/big HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("slow reader's answer: %v %v", resp, err)
	}
	time.Sleep(50 * time.Millisecond) // the server is now blocked writing to the slow reader

	start := time.Now()
	ok, busy, n, err := lookupOnce(&http.Client{}, srv.URL+"/v1/services/big")
	if err != nil || !ok || busy {
		t.Fatalf("lookup after the slow reader: ok %v busy %v %v", ok, busy, err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("the next lookup took %s: the slow reader kept its slot past the write timeout", took)
	}

	// The slow reader's answer was cut short: reading it now ends early.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.Copy(io.Discard, resp.Body)
	if err == nil || got >= n {
		t.Fatalf("the slow reader read %d bytes (%v); want its answer cut short of %d", got, err, n)
	}
}

// TestLookup_WriteDeadlineEndsWithAnswer: the write deadline of a large
// answer does not outlive it: the connection's next request, after the
// deadline has passed, is answered.
func TestLookup_WriteDeadlineEndsWithAnswer(t *testing.T) {
	reg := bigRegistry(t, "big", 200, registry.MaxLabelBytes)
	srv := httptest.NewServer(httpapi.NewHandler(httpapi.Deps{Registry: reg,
		Lookups: httpapi.LookupConfig{WriteTimeout: 200 * time.Millisecond}}))
	defer srv.Close()
	cl := &http.Client{}
	var reused []bool
	for _, path := range []string{"/v1/services/big", "/v1/services/big", "/v1/services/big?tag=t1"} {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, srv.URL+path, nil)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.HasSuffix(string(b), "]}\n") {
			t.Fatalf("%s: %d, %d bytes, %v", path, resp.StatusCode, len(b), err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(reused) != 3 || !reused[1] || !reused[2] {
		t.Fatalf("connection reused %v; the test needs one connection", reused)
	}
}

// TestLookupConfig_Validate: zero means the default; negative is refused.
func TestLookupConfig_Validate(t *testing.T) {
	for _, tc := range []struct {
		cfg httpapi.LookupConfig
		ok  bool
	}{
		{httpapi.LookupConfig{}, true},
		{httpapi.DefaultLookupConfig(), true},
		{httpapi.LookupConfig{MaxLarge: -1}, false},
		{httpapi.LookupConfig{Wait: -time.Second}, false},
		{httpapi.LookupConfig{WriteTimeout: -time.Second}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.cfg, err)
		}
	}
}
