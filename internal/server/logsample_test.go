package server

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the summary's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSampleHandler: a burst of one per-instance message writes
// sampleBurst lines and, at the end of the window, one line saying how
// many were held back; another message has its own budget; warnings and
// other messages are never held back; the next window writes again.
func TestSampleHandler(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(newSampleHandler(slog.NewTextHandler(&buf, nil))).With("component", "test")
	for i := range 100 {
		log.Info("instance registered", "i", i)
		log.Warn("instance registered", "i", i)
	}
	for i := range 5 {
		log.Info("instance deregistered", "i", i)
		log.Info("muster listening", "i", i)
	}
	count := func(s string) int { return strings.Count(buf.String(), s) }
	if n := count(`level=INFO msg="instance registered"`); n != sampleBurst {
		t.Fatalf("%d registered lines written, want %d", n, sampleBurst)
	}
	if n := count(`level=WARN msg="instance registered"`); n != 100 {
		t.Fatalf("%d warnings written, want all 100", n)
	}
	if count(`msg="instance deregistered"`) != 5 || count(`msg="muster listening"`) != 5 {
		t.Fatalf("other messages were held back:\n%s", buf.String())
	}
	deadline := time.Now().Add(3 * time.Second)
	for count("held back") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(buf.String(), `msg="log lines held back: too many of one message" component=test message="instance registered" held_back=80`) {
		t.Fatalf("no summary of the lines held back:\n%s", buf.String())
	}
	log.Info("instance registered", "i", "after")
	if count(`i=after`) != 1 {
		t.Fatal("the next window wrote nothing")
	}
}

// TestServerErrors: net/http's own error lines, which any client can
// cause, are written at most serverErrorBurst a minute, each cut short,
// and the next window says how many were held back.
func TestServerErrors(t *testing.T) {
	var buf strings.Builder
	w := newServerErrors(slog.New(slog.NewTextHandler(&buf, nil)))
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	w.now = func() time.Time { return now }
	long := "http: TLS handshake error from 127.0.0.1:5: unsupported application protocols ([" + strings.Repeat("x", 10000) + "])\n"
	for range serverErrorBurst + 5 {
		w.Write([]byte(long))
	}
	if n := strings.Count(buf.String(), "TLS handshake error"); n != serverErrorBurst {
		t.Fatalf("%d lines written in a minute, want %d", n, serverErrorBurst)
	}
	if len(buf.String()) > serverErrorBurst*(serverErrorLine+200) {
		t.Fatalf("%d bytes of log for %d lines: not cut short", len(buf.String()), serverErrorBurst)
	}
	now = now.Add(time.Minute)
	w.Write([]byte("http: TLS handshake error from 127.0.0.1:6: EOF\n"))
	if !strings.Contains(buf.String(), "more HTTP server errors were not logged") || !strings.Contains(buf.String(), "count=5") {
		t.Fatalf("the held lines are not counted:\n%.300s", buf.String()[len(buf.String())-300:])
	}
}
