package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// sseEvent is one Server-Sent Event as a reader sees it; name is empty
// for a message with only an id (which moves the reader's last id on).
type sseEvent struct{ name, id, data string }

// sseStream reads a GET /v1/watch answer on a goroutine of its own.
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	done   chan error
	mu     sync.Mutex
	lastID string
	pings  int
	// protection events are skipped unless set: every resumed stream
	// begins with one.
	protection bool
}

// openWatch opens url (a /v1/watch URL) with Last-Event-ID lastID when
// set, and fails t unless it is answered 200 text/event-stream.
func openWatch(t *testing.T, url, lastID string) *sseStream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s: %d %s %s", url, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	s := &sseStream{resp: resp, events: make(chan sseEvent, 10000), done: make(chan error, 1)}
	go s.read()
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() { s.resp.Body.Close() }

func (s *sseStream) read() {
	r := bufio.NewReader(s.resp.Body)
	var ev sseEvent
	var hasID bool
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			close(s.events)
			s.done <- err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if ev.name != "" || hasID {
				s.mu.Lock()
				if hasID {
					s.lastID = ev.id
				}
				s.mu.Unlock()
				s.events <- ev
			}
			ev, hasID = sseEvent{}, false
		case strings.HasPrefix(line, ":"):
			s.mu.Lock()
			s.pings++
			s.mu.Unlock()
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			ev.id, hasID = line[len("id: "):], true
		case strings.HasPrefix(line, "data: "):
			ev.data = line[len("data: "):]
		}
	}
}

// next returns the next event with a name, or fails t after d.
func (s *sseStream) next(t *testing.T, d time.Duration) sseEvent {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("stream ended: %v", <-s.done)
			}
			if ev.name == api.EventProtection && !s.protection {
				continue
			}
			if ev.name != "" {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no event within %s", d)
		}
	}
}

func (s *sseStream) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

// change is an event as the tests compare them.
func change(t *testing.T, ev sseEvent) (api.Event, string) {
	t.Helper()
	var e api.Event
	if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
		t.Fatalf("event %s data %q: %v", ev.name, ev.data, err)
	}
	if ev.id != strconv.FormatUint(e.Index, 10) || ev.name != e.Type {
		t.Fatalf("event %s id %s does not match its data %s", ev.name, ev.id, ev.data)
	}
	s := fmt.Sprintf("%s %s %s", e.Type, e.Instance.ID, e.Instance.Status)
	if e.Reason != "" {
		s += " " + e.Reason
	}
	if e.Replaced != "" {
		s += " replaced=" + e.Replaced
	}
	return e, s
}

func snapshotOf(t *testing.T, ev sseEvent) api.WatchSnapshot {
	t.Helper()
	if ev.name != api.EventSnapshot {
		t.Fatalf("got %s event %s, want a snapshot", ev.name, ev.data)
	}
	var s api.WatchSnapshot
	if err := json.Unmarshal([]byte(ev.data), &s); err != nil {
		t.Fatalf("snapshot data %q: %v", ev.data, err)
	}
	if ev.id != strconv.FormatUint(s.Index, 10) {
		t.Fatalf("snapshot id %s, index %d", ev.id, s.Index)
	}
	return s
}

// register registers an instance of service that answers the callback,
// with the TTL and deregister_after given, and returns its registration.
func registerTTL(t *testing.T, h *testserver.Harness, service, secret string, ttl, deregAfter time.Duration) api.RegisterResponse {
	t.Helper()
	in := testutil.NewInstance(t, secret, verify.Proof)
	res, err := h.Anon.Register(context.Background(), service, secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: in.Port(), TTL: ttl.String(), DeregisterAfter: durString(deregAfter)})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestWatch_SnapshotThenEveryChangeInOrder: a stream starts with every
// instance of its services, then gets each change to them (registration,
// replacement, drain, expiry to critical, removal after
// deregister_after, deregistration, eviction) in index order, and
// nothing about other services.
func TestWatch_SnapshotThenEveryChangeInOrder(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	k := h.Key(t, "web", "other")
	first := registerTTL(t, h, "web", k.Secret, time.Hour, 0)

	s := openWatch(t, h.Srv.URL()+"/v1/watch?service=web", "")
	snap := snapshotOf(t, s.next(t, 5*time.Second))
	if snap.Resync || len(snap.Instances) != 1 || snap.Instances[0].ID != first.ID || snap.Instances[0].Status != "passing" {
		t.Fatalf("snapshot: %+v", snap)
	}

	var want []string
	registerTTL(t, h, "other", k.Secret, time.Hour, 0) // not watched
	second := registerTTL(t, h, "web", k.Secret, time.Hour, 0)
	want = append(want, "registered "+second.ID+" passing")
	if _, err := h.Anon.Drain(ctx, second.ID, h.AdminToken(t)); err != nil {
		t.Fatal(err)
	}
	want = append(want, "status "+second.ID+" draining")
	dying := registerTTL(t, h, "web", k.Secret, time.Second, 2*time.Second)
	want = append(want, "registered "+dying.ID+" passing", "status "+dying.ID+" critical", "deregistered "+dying.ID+" critical expired")
	for i, w := range want {
		_, got := change(t, s.next(t, 15*time.Second))
		if got != w {
			t.Fatalf("event %d: got %q, want %q", i, got, w)
		}
	}
	if err := h.Anon.Deregister(ctx, second.ID, h.AdminToken(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Admin.Evict(ctx, first.ID, time.Minute, "test"); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, w := range []string{"deregistered " + second.ID + " draining deregistered", "deregistered " + first.ID + " passing evicted"} {
		e, got := change(t, s.next(t, 5*time.Second))
		if got != w || e.Index <= last || e.Service != "web" {
			t.Fatalf("got %q (index %d after %d, service %s), want %q", got, e.Index, last, e.Service, w)
		}
		last = e.Index
	}
}

// TestWatch_ResumeAfterDroppedConnections: a reader whose connection is
// cut at random points and who reconnects with its last id gets exactly
// the changes a reader of the whole history gets: none lost, none twice.
func TestWatch_ResumeAfterDroppedConnections(t *testing.T) {
	h := start(t, nil)
	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	const n = 40
	go func() {
		for i := range n {
			// One listener vouches for many ports (verify_port).
			h.Anon.Register(context.Background(), "web", k.Secret, api.RegisterRequest{
				Address: "127.0.0.1", Port: 20000 + i, VerifyPort: in.Port(), TTL: "1h"})
			time.Sleep(time.Duration(rand.N(10)) * time.Millisecond)
		}
	}()
	url := h.Srv.URL() + "/v1/watch?service=web"
	var got []string
	lastID := ""
	first := true
	for len(got) < n {
		s := openWatch(t, url, lastID)
		if first {
			snap := snapshotOf(t, s.next(t, 5*time.Second))
			for _, in := range snap.Instances {
				got = append(got, "registered "+in.ID+" passing")
			}
			first = false
		}
		for range 1 + rand.N(5) {
			if len(got) == n {
				break
			}
			_, c := change(t, s.next(t, 10*time.Second))
			got = append(got, c)
		}
		lastID = s.last()
		s.close()
	}
	// The whole history, from a reader that resumes after index 0.
	all := openWatch(t, h.Srv.URL()+"/v1/watch?service=web&after=0", "")
	var want []string
	for len(want) < n {
		_, c := change(t, all.next(t, 10*time.Second))
		want = append(want, c)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resumed reader got\n%q\nthe history is\n%q", got, want)
	}
}

// TestWatch_ResyncWhenTheHistoryIsTooShort: resuming after an index the
// history no longer holds starts with a snapshot marked resync; so does
// an id from the future (another registry's).
func TestWatch_ResyncWhenTheHistoryIsTooShort(t *testing.T) {
	h := start(t, func(c *server.Config) { c.EventHistory = 4 })
	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	var firstIndex uint64
	for i := range 10 {
		res, err := h.Anon.Register(context.Background(), "web", k.Secret, api.RegisterRequest{
			Address: "127.0.0.1", Port: 20000 + i, VerifyPort: in.Port(), TTL: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			firstIndex = res.Index
		}
	}
	for _, id := range []string{strconv.FormatUint(firstIndex, 10), "999999"} {
		s := openWatch(t, h.Srv.URL()+"/v1/watch", id)
		snap := snapshotOf(t, s.next(t, 5*time.Second))
		if !snap.Resync || len(snap.Instances) != 10 {
			t.Fatalf("resume after %s: resync %v with %d instances", id, snap.Resync, len(snap.Instances))
		}
	}
	if st := h.Srv.Registry().StreamStats(); st.Resyncs < 2 {
		t.Fatalf("StreamStats %+v: resyncs not counted", st)
	}
	// Within the history: no snapshot, the next change only.
	s := openWatch(t, h.Srv.URL()+"/v1/watch?after="+strconv.FormatUint(firstIndex+8, 10), "")
	_, c := change(t, s.next(t, 5*time.Second))
	if !strings.HasPrefix(c, "registered ") {
		t.Fatalf("resume within the history: %s", c)
	}
}

// TestWatch_StuckReaderDelaysNoOne: one reader that never reads, and
// whose stream falls behind a short history (so it is sent snapshots far
// larger than its buffers), is dropped after the write timeout, and
// counted; 100 others get every change meanwhile.
func TestWatch_StuckReaderDelaysNoOne(t *testing.T) {
	h := start(t, func(c *server.Config) {
		c.EventHistory = 2
		c.Watch.WriteTimeout = 300 * time.Millisecond
		c.Registry.MaxInstancesPerAddress = 1000
	})
	ctx := context.Background()
	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	meta := map[string]string{}
	for i := range 7 {
		meta[fmt.Sprint("pad", i)] = strings.Repeat("x", 500)
	}
	regs := make([]api.RegisterResponse, 0, 200)
	for i := range 200 {
		res, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{
			Address: "127.0.0.1", Port: 20000 + i, VerifyPort: in.Port(), TTL: "1h", Meta: meta})
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, res)
	}

	// The stuck reader: a raw connection with a small receive buffer that
	// sends the request and never reads.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", h.Srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/watch?service=web HTTP/1.1\r\nHost: x\r\n\r\n")

	readers := make([]*sseStream, 100)
	for i := range readers {
		readers[i] = openWatch(t, h.Srv.URL()+"/v1/watch?service=web", "")
		snapshotOf(t, readers[i].next(t, 10*time.Second))
	}
	const changes = 20
	for _, r := range regs[:changes] {
		if _, err := h.Anon.Drain(ctx, r.ID, h.AdminToken(t)); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range readers {
		for j := range changes {
			ev := r.next(t, 10*time.Second)
			if ev.name == api.EventSnapshot {
				continue // a reader that fell behind the short history: allowed
			}
			if _, c := change(t, ev); c != "status "+regs[j].ID+" draining" && ev.name != api.EventSnapshot {
				t.Fatalf("reader %d, change %d: %s", i, j, c)
			}
		}
	}
	testserver.Eventually(t, 10*time.Second, "the stuck reader to be dropped", func() bool {
		return h.Srv.Registry().StreamStats().Dropped >= 1
	})
	if !strings.Contains(h.Logs.String(), "event stream dropped") {
		t.Fatal("the drop is not logged")
	}
}

// TestWatch_BadQueries: every malformed query is a JSON 400 naming the
// field.
func TestWatch_BadQueries(t *testing.T) {
	h := start(t, nil)
	for _, c := range []struct{ query, lastID, field string }{
		{"?service=Web", "", "service"},
		{"?service=", "", "service"},
		{"?after=x", "", "after"},
		{"?after=-1", "", "after"},
		{"?index=3", "", "index"},
		{"", "abc", "Last-Event-ID"},
		{"?service=web;x", "", "query"},
		{"?service=w%zz", "", "query"},
		{"?after=1&after=2", "", "after"},
		{"", "3|4", "Last-Event-ID"},
	} {
		req, _ := http.NewRequest(http.MethodGet, h.Srv.URL()+"/v1/watch"+c.query, nil)
		for _, id := range strings.Split(c.lastID, "|") {
			if id != "" {
				req.Header.Add("Last-Event-ID", id)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb api.ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != 400 || eb.Error.Code != api.CodeInvalidArgument || eb.Error.Field != c.field {
			t.Errorf("%s %s: %d %+v, want 400 on %s", c.query, c.lastID, resp.StatusCode, eb, c.field)
		}
	}
}

// TestWatch_StreamsAreBounded: past MaxStreamsPerClient a client is
// answered 503 busy, and a closed stream gives its place back.
func TestWatch_StreamsAreBounded(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.MaxStreamsPerClient = 2 })
	a := openWatch(t, h.Srv.URL()+"/v1/watch", "")
	openWatch(t, h.Srv.URL()+"/v1/watch", "")
	resp, err := http.Get(h.Srv.URL() + "/v1/watch")
	if err != nil {
		t.Fatal(err)
	}
	var eb api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != 503 || eb.Error.Code != api.CodeBusy || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: %d %+v", resp.StatusCode, eb)
	}
	a.close()
	testserver.Eventually(t, 5*time.Second, "the closed stream's place to be given back", func() bool {
		return h.Srv.Registry().StreamStats().Open == 1
	})
	openWatch(t, h.Srv.URL()+"/v1/watch", "")
}

// TestWatch_HeartbeatAndShutdown: an idle stream gets a comment line every
// heartbeat, and closing the server ends the stream at once rather than
// after the shutdown grace.
func TestWatch_HeartbeatAndShutdown(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Watch.Heartbeat = 100 * time.Millisecond })
	s := openWatch(t, h.Srv.URL()+"/v1/watch", "")
	snapshotOf(t, s.next(t, 5*time.Second))
	testserver.Eventually(t, 5*time.Second, "heartbeat comments", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.pings >= 3
	})
	began := time.Now()
	h.Srv.Close()
	select {
	case <-s.done:
	case <-time.After(4 * time.Second):
		t.Fatal("the stream outlived the server's Close")
	}
	if took := time.Since(began); took > 4*time.Second {
		t.Fatalf("Close took %s with a stream open", took)
	}
}

// durString is d as a Go duration, or "" for 0 (the default).
func durString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// TestAPI_MalformedQueriesAreRefused: a query string with a pair that does
// not parse is refused whole, instead of dropping the pair and widening
// the answer, on lookups, blocking queries and the service list.
func TestAPI_MalformedQueriesAreRefused(t *testing.T) {
	h := start(t, nil)
	for _, path := range []string{
		"/v1/services/web?tag=nope;x", "/v1/services/web?status=critical;", "/v1/services/web?tag=v9%zz",
		"/v1/services/web?index=5;wait=60s", "/v1/services?index=5;wait=60s",
	} {
		resp, err := http.Get(h.Srv.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		var eb api.ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != 400 || eb.Error.Code != api.CodeInvalidArgument || eb.Error.Field != "query" {
			t.Errorf("%s: %d %+v", path, resp.StatusCode, eb)
		}
	}
}

// TestWatch_HEAD: HEAD of the stream answers its headers and ends, holding
// no stream open.
func TestWatch_HEAD(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.MaxStreamsPerClient = 1 })
	for range 3 {
		resp, err := http.Head(h.Srv.URL() + "/v1/watch")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("HEAD: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	testserver.Eventually(t, 5*time.Second, "no stream open", func() bool { return h.Srv.Registry().StreamStats().Open == 0 })
	openWatch(t, h.Srv.URL()+"/v1/watch", "")
}

// TestWatch_ResumedStreamSaysWhereProtectionStands: a resumed stream
// starts with a protection event, so that a reader who saw protection on
// before it lost the connection learns it ended meanwhile.
func TestWatch_ResumedStreamSaysWhereProtectionStands(t *testing.T) {
	h := start(t, nil)
	idx := h.Srv.Catalog().Index()
	s := openWatch(t, h.Srv.URL()+"/v1/watch?after="+strconv.FormatUint(idx, 10), "")
	s.protection = true
	if ev := s.next(t, 5*time.Second); ev.name != api.EventProtection || ev.data != `{"protection":false}` || ev.id != "" {
		t.Fatalf("a resumed stream began with %s %q (id %q)", ev.name, ev.data, ev.id)
	}
}
