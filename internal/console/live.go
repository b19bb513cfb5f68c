package console

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/musterhq/muster/internal/httpapi"
)

// keepAlive is how often a live page's stream sends a comment when
// nothing changes, so that the page can tell a quiet registry from a lost
// connection (its "stale" banner), and proxies keep the connection.
const keepAlive = 10 * time.Second

// writeTimeout bounds each write of a live stream.
const writeTimeout = 10 * time.Second

// live streams, as Server-Sent Events, which services the viewer may
// read change (?service= for one): an event "change" whose data is the
// service's name, after which the page fetches its main part again. It
// is a registry stream, under the registry's bounds on streams per
// client, limited to the viewer's scope, checked again before each send
// so that a revoked token ends it.
func (c *Console) live(w http.ResponseWriter, r *http.Request, v *viewer) error {
	var services []string
	if s := r.URL.Query().Get("service"); s != "" {
		services = []string{s}
	}
	st, err := c.reg.OpenStream(httpapi.ClientOf(r), services)
	if err != nil {
		return err
	}
	defer st.Close()
	st.SetScope(v.scope.Filter())
	if _, err := st.Start(0, false); err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	// Each write must be taken within writeTimeout: a reader that stops
	// reading loses its stream, and holds no goroutine for ever.
	send := func(format string, args ...any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if !send("retry: 1000\n: live\n\n") {
		return nil
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		evs, snap, wait, err := st.Next(256)
		if err != nil {
			return nil // the stream's end; the page reconnects
		}
		if err := c.reg.Recheck(v.scope); err != nil {
			return nil
		}
		if v.sess != nil && !c.sessions.alive(v.sessionID) {
			return nil // signed out, or the session ended: so does its stream
		}
		var changed []string
		for _, e := range evs {
			if e.Instance != nil && !slices.Contains(changed, e.Instance.Service) {
				changed = append(changed, e.Instance.Service)
			}
		}
		if snap != nil {
			changed = append(changed, "*")
		}
		if len(changed) > 0 {
			for _, s := range changed {
				if !send("event: change\ndata: %s\n\n", s) {
					return nil
				}
			}
			continue
		}
		select {
		case <-wait:
		case <-tick.C:
			if !send(": keep-alive\n\n") {
				return nil
			}
		case <-r.Context().Done():
			return nil
		case <-c.closing.Done():
			return nil
		}
	}
}
