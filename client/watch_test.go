package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// errStop ends a Watch from its callback.
var errStop = errors.New("stop")

// bodyTransport answers every request with a 200 event stream of body.
type bodyTransport string

func (b bodyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}},
		Body: io.NopCloser(strings.NewReader(string(b))), Request: req}, nil
}

// watchBody runs Watch over body until the first disconnection, and
// returns a line per event ("type id data") and the disconnection's error.
func watchBody(t *testing.T, body string, max int) ([]string, error) {
	t.Helper()
	c, err := client.New(client.Config{Addr: "http://registry.test", HTTPClient: &http.Client{Transport: bodyTransport(body)}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var cause error
	err = c.Watch(context.Background(), client.WatchRequest{MaxMessage: max}, func(ev client.WatchEvent) error {
		if ev.Type == client.WatchDisconnected {
			cause = ev.Err
			return errStop
		}
		got = append(got, fmt.Sprintf("%s %d %s", ev.Type, ev.ID, ev.Data))
		return nil
	})
	if err != errStop {
		return got, err
	}
	return got, cause
}

func TestClient_Watch_Parse(t *testing.T) {
	reg := `{"type":"registered","index":6,"service":"web","instance":{"id":"i6","status":"passing"}}`
	big := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name, body string
		want       []string
		err        string // in the disconnection's error
	}{
		{"the registry's form", "retry: 1000\nevent: snapshot\nid: 5\ndata: {\"type\":\"snapshot\",\"index\":5,\"instances\":[]}\n\n" +
			": ping\n\nevent: registered\nid: 6\ndata: " + reg + "\n\n: ping\nid: 9\n\nevent: protection\ndata: {\"protection\":true}\n\n",
			[]string{"connected 0 ", `snapshot 5 {"type":"snapshot","index":5,"instances":[]}`, "progress 5 ", "registered 6 " + reg,
				"progress 9 ", `protection 9 {"protection":true}`}, "ended the stream"},
		{"CRLF", "event: x\r\nid: 3\r\ndata: a\r\n\r\n", []string{"connected 0 ", "x 3 a"}, "ended"},
		{"data lines joined", "event: x\ndata: a\ndata:b\ndata:  c\n\n", []string{"connected 0 ", "x 0 a\nb\n c"}, "ended"},
		{"an unnamed event", "data: d\n\n", []string{"connected 0 ", "message 0 d"}, "ended"},
		{"an event without data", "event: x\nid: 4\n\n", []string{"connected 0 ", "progress 4 "}, "ended"},
		{"a field without a colon", "event: x\ndata\n\n", []string{"connected 0 ", "x 0 "}, "ended"},
		{"an id with NUL is ignored", "id: 4\n\nid: 5\x00\nevent: x\ndata: d\n\n", []string{"connected 0 ", "progress 4 ", "x 4 d"}, "ended"},
		{"unknown fields ignored", "foo: bar\nevent: x\ndata: d\n\n", []string{"connected 0 ", "x 0 d"}, "ended"},
		{"blank lines between messages", "\n\n\nevent: x\ndata: d\n\n\n", []string{"connected 0 ", "x 0 d"}, "ended"},
		{"a message cut short is dropped", "event: x\ndata: d\n\nevent: y\ndata: e", []string{"connected 0 ", "x 0 d"}, "unexpected EOF"},
		{"a line longer than a read buffer", "event: x\ndata: " + big + "\n\n", []string{"connected 0 ", "x 0 " + big}, "ended"},
		{"an id that is not an index", "id: x\n\n", []string{"connected 0 "}, "not an index"},
		{"an event that does not decode", "id: 3\nevent: registered\ndata: {\"index\":\n\n", []string{"connected 0 "}, "registered event 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := watchBody(t, tc.body, 0)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("events:\n%q\nwant\n%q", got, tc.want)
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, client.ErrUnavailable) {
				t.Errorf("disconnected with %v; want an ErrUnavailable saying %q", err, tc.err)
			}
		})
	}
}

// TestClient_Watch_MaxMessage: a message larger than MaxMessage ends
// Watch with an error instead of being buffered, and without a retry.
func TestClient_Watch_MaxMessage(t *testing.T) {
	for _, body := range []string{
		"event: x\ndata: " + strings.Repeat("x", 2000) + "\n\n",
		"event: x\n" + strings.Repeat("data: xx\n", 300) + "\n",
		strings.Repeat(": comment\n", 300),
		"data: " + strings.Repeat("x", 2000), // no line end at all
	} {
		got, err := watchBody(t, body, 1000)
		if err == nil || errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "MaxMessage") || len(got) != 1 {
			t.Errorf("a message over the bound: events %q, err %v", got, err)
		}
	}
	if got, err := watchBody(t, "event: x\ndata: "+strings.Repeat("x", 980)+"\n\n", 1000); len(got) != 2 || !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("a message within the bound: events %d, err %v", len(got), err)
	}
}

// stubRegistry answers the n-th request (from 0) with answers[n], and
// hangs on later ones until the test ends. It records each request's time
// and Last-Event-ID.
type stubRegistry struct {
	*httptest.Server
	mu    sync.Mutex
	times []time.Time
	ids   []string
}

func newStubRegistry(t *testing.T, answers ...http.HandlerFunc) *stubRegistry {
	s := &stubRegistry{}
	done := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		n := len(s.times)
		s.times = append(s.times, time.Now())
		s.ids = append(s.ids, r.Header.Get("Last-Event-ID"))
		s.mu.Unlock()
		if n < len(answers) {
			answers[n](w, r)
			return
		}
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(done); s.Close() })
	return s
}

func sseAnswer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, body)
	}
}

// TestClient_Watch_ReconnectsAndHonoursRetryAfter: after a stream ends,
// Watch waits the registry's retry and resumes after the last ID (an ID
// alone counts); a 503's Retry-After outlasts the backoff.
func TestClient_Watch_ReconnectsAndHonoursRetryAfter(t *testing.T) {
	s := newStubRegistry(t,
		sseAnswer("retry: 100\n: hello\n\nid: 4\n\n"),
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"busy","message":"too many event streams"}}`)
		},
		sseAnswer(": resumed after 4\n\nevent: registered\nid: 7\ndata: {\"type\":\"registered\",\"index\":7,\"service\":\"web\",\"instance\":{\"id\":\"a\"}}\n\n"),
	)
	c, _ := client.New(client.Config{Addr: s.URL})
	var got []string
	var retries []time.Duration
	err := c.Watch(context.Background(), client.WatchRequest{Services: []string{"web"}}, func(ev client.WatchEvent) error {
		got = append(got, fmt.Sprintf("%s %d", ev.Type, ev.ID))
		if ev.Type == client.WatchDisconnected {
			retries = append(retries, ev.Retry)
		}
		if ev.Type == api.EventRegistered {
			return errStop
		}
		return nil
	})
	if err != errStop {
		t.Fatalf("Watch returned %v", err)
	}
	want := "connected 0|progress 0|progress 4|disconnected 4|disconnected 4|connected 4|progress 4|registered 7"
	if strings.Join(got, "|") != want {
		t.Fatalf("events %q\nwant %q", strings.Join(got, "|"), want)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids[0] != "" || s.ids[1] != "4" || s.ids[2] != "4" {
		t.Fatalf("Last-Event-ID of the requests: %q", s.ids)
	}
	first, second := s.times[1].Sub(s.times[0]), s.times[2].Sub(s.times[1])
	t.Logf("reconnected after %s (retry 100ms), then after %s (Retry-After 1s)", first, second)
	if first < 100*time.Millisecond || first > 900*time.Millisecond || retries[0] > 120*time.Millisecond {
		t.Errorf("reconnected %s after the stream ended (wait %s); want the registry's retry, 100ms", first, retries[0])
	}
	if second < time.Second || retries[1] < time.Second {
		t.Errorf("reconnected %s after a 503 with Retry-After: 1 (wait %s)", second, retries[1])
	}
}

// TestClient_Watch_Refusals: an answer that reconnecting cannot change
// ends Watch at once, matching its sentinel.
func TestClient_Watch_Refusals(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   error
	}{
		{404, `{"error":{"code":"not_found","message":"no route"}}`, client.ErrNotFound},
		{400, `{"error":{"code":"invalid_argument","message":"bad service","field":"service"}}`, client.ErrInvalid},
		{418, "teapot", client.ErrInvalid},
	} {
		s := newStubRegistry(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		})
		c, _ := client.New(client.Config{Addr: s.URL})
		calls := 0
		err := c.Watch(context.Background(), client.WatchRequest{}, func(client.WatchEvent) error { calls++; return nil })
		if !errors.Is(err, tc.want) || calls != 0 {
			t.Errorf("%d: Watch returned %v after %d events; want %v at once", tc.status, err, calls, tc.want)
		}
	}
}

// TestClient_Watch_IdleTimeout: a connection silent for IdleTimeout (a
// half-open one, say) is taken for dead; so is a registry that never
// answers.
func TestClient_Watch_IdleTimeout(t *testing.T) {
	s := newStubRegistry(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": hello\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	c, _ := client.New(client.Config{Addr: s.URL})
	var errs []error
	began := time.Now()
	c.Watch(context.Background(), client.WatchRequest{IdleTimeout: 200 * time.Millisecond}, func(ev client.WatchEvent) error {
		if ev.Type == client.WatchDisconnected {
			if errs = append(errs, ev.Err); len(errs) == 2 {
				return errStop
			}
		}
		return nil
	})
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), "nothing from the registry for 200ms") ||
		!strings.Contains(errs[1].Error(), "no answer within 200ms") {
		t.Fatalf("disconnections: %v", errs)
	}
	t.Logf("two idle connections cut in %s", time.Since(began).Round(time.Millisecond))
}

// TestClient_Watch_ResumesAcrossRestart: every change to the watched
// service reaches Watch once, in order, across a restart of the registry
// (which resumes the stream rather than send a snapshot again), and
// changes to other services do not.
func TestClient_Watch_ResumesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	reg := startRegistry(t, dir, addr)
	url := reg.URL()
	secret := newKey(t, url, "web", "other")
	c, _ := client.New(client.Config{Addr: url})
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan client.WatchEvent, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(ctx, client.WatchRequest{Services: []string{"web"}}, func(ev client.WatchEvent) error {
			// A resumed stream begins by saying where protection stands.
			if ev.Type != client.WatchProgress && ev.Type != api.EventProtection {
				events <- ev
			}
			return nil
		})
	}()
	next := func(types ...string) client.WatchEvent {
		t.Helper()
		select {
		case ev := <-events:
			for _, typ := range types {
				if ev.Type == typ {
					return ev
				}
			}
			t.Fatalf("got %s %+v; want %v", ev.Type, ev.Event, types)
		case <-time.After(10 * time.Second):
			t.Fatalf("no event; want %v", types)
		}
		return client.WatchEvent{}
	}
	next(client.WatchConnected)
	if snap := next(api.EventSnapshot).Snapshot; len(snap.Instances) != 0 {
		t.Fatalf("snapshot %+v", snap)
	}
	a := registerInstance(t, url, secret, "web", time.Hour)
	registerInstance(t, url, secret, "other", time.Hour)
	ev := next(api.EventRegistered)
	if ev.Event.Instance.ID != a.ID || ev.ID != ev.Event.Index || ev.Event.Index != a.Index {
		t.Fatalf("registered: %+v (id %d), want %s at %d", ev.Event, ev.ID, a.ID, a.Index)
	}
	if _, err := adminClient(t, url).Drain(ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	ev = next(api.EventStatus)
	if ev.Event.Instance.Status != api.StatusDraining {
		t.Fatalf("status: %+v", ev.Event)
	}
	last := ev.ID

	reg.Close()
	if ev := next(client.WatchDisconnected); ev.ID != last {
		t.Fatalf("disconnected at %d, want %d", ev.ID, last)
	}
	startRegistry(t, dir, addr)
	b := registerInstance(t, url, secret, "web", time.Hour) // perhaps before the stream is back
	if err := adminClient(t, url).Deregister(ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	for ev = next(client.WatchDisconnected, client.WatchConnected); ev.Type == client.WatchDisconnected; {
		ev = next(client.WatchDisconnected, client.WatchConnected)
	}
	if ev.ID != last {
		t.Fatalf("reconnected resuming after %d, want %d", ev.ID, last)
	}
	if ev := next(api.EventRegistered); ev.Event.Instance.ID != b.ID || ev.ID <= last {
		t.Fatalf("after the restart: %+v", ev.Event)
	}
	if ev := next(api.EventDeregistered); ev.Event.Instance.ID != a.ID || ev.Event.Reason != api.ReasonDeregistered {
		t.Fatalf("after the restart: %+v", ev.Event)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Watch returned %v", err)
	}
	select {
	case ev := <-events:
		t.Fatalf("an extra event: %s %+v", ev.Type, ev)
	default:
	}
}
