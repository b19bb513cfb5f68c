package console_test

import (
	"net/http"
	"testing"

	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
)

// TestConsole_StaticPathIsNever500: /ui/static/ answers a name no file
// has, one that is not valid UTF-8 among them, with a 404, never a 500.
func TestConsole_StaticPathIsNever500(t *testing.T) {
	h := testserver.NewHarness(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	for _, p := range []string{"/ui/static/%ff", "/ui/static/a%ffb.css", "/ui/static/%c0%af"} {
		resp, err := http.Get(h.Srv.URL() + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Errorf("GET %s by a stranger: %d, want 404", p, resp.StatusCode)
		}
	}
}
