package server

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/musterhq/muster/internal/registry"
)

// TestFitToFileLimit: blocking queries and streams together hold at most
// three quarters of the limit of open files, their shares per client follow, and a
// high or unknown limit changes nothing.
func TestFitToFileLimit(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	d := registry.DefaultConfig()
	for _, limit := range []uint64{0, 1 << 20, uint64(2 * (d.MaxWaiters + d.MaxStreams))} { // 3/4 of the last is enough
		c := d
		fitToFileLimit(&c, limit, log)
		if c.MaxWaiters != d.MaxWaiters || c.MaxStreams != d.MaxStreams {
			t.Errorf("limit %d changed the bounds: %+v", limit, c)
		}
	}
	for _, limit := range []uint64{20000, 1024, 10} {
		c := d
		fitToFileLimit(&c, limit, log)
		if uint64(c.MaxWaiters+c.MaxStreams) > limit/4*3+2 || c.MaxWaiters < 1 || c.MaxStreams < 1 ||
			c.MaxWaitersPerClient > max(1, c.MaxWaiters/4) || c.MaxStreamsPerClient > max(1, c.MaxStreams/4) {
			t.Errorf("limit %d: waiters %d (%d per client), streams %d (%d per client)", limit,
				c.MaxWaiters, c.MaxWaitersPerClient, c.MaxStreams, c.MaxStreamsPerClient)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
	// Said at info when thousands are left, warned about below that.
	for limit, want := range map[uint64]string{20000: "level=INFO", 1024: "level=WARN"} {
		var buf strings.Builder
		c := d
		fitToFileLimit(&c, limit, slog.New(slog.NewTextHandler(&buf, nil)))
		if !strings.Contains(buf.String(), want) {
			t.Errorf("limit %d logged %q, want %s", limit, buf.String(), want)
		}
	}
	if fileLimit() == 0 {
		t.Log("this platform does not report its limit of open files")
	}
}
