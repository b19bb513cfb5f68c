package httpapi

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/telemetry"
)

// nopWriter is a ResponseWriter that keeps nothing, so that the
// benchmark measures the wrapper, not a recorder.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkInstrument: what instrument adds to a request, with the real
// Prometheus instruments (the server's, as /metrics exports them), at
// info level (no request line) and at debug level (a request ID and a
// line per request, to a discarding handler). Compare with "bare".
//
//	go test -run XXX -bench Instrument -benchmem ./internal/httpapi
func BenchmarkInstrument(b *testing.B) {
	body := []byte(`{"ttl":"30s","status":"passing"}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	})
	m := telemetry.New(nil)
	route := func(r string) func(int, time.Duration) { return m.Route(r).Done }
	debug := slog.New(slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, c := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", h},
		{"metrics", (&apiServer{log: slog.New(slog.DiscardHandler), obs: Observer{Route: route}}).instrument("PUT /v1/instances/{id}/heartbeat", h)},
		{"metrics+debug", (&apiServer{log: debug, obs: Observer{Route: route}}).instrument("PUT /v1/instances/{id}/heartbeat", h)},
	} {
		b.Run(c.name, func(b *testing.B) {
			req, _ := http.NewRequest("PUT", "http://127.0.0.1/v1/instances/x/heartbeat", nil)
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				c.h.ServeHTTP(w, req)
			}
		})
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }
