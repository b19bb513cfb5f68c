package console_test

import (
	"net/http"
	"testing"

	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
)

// TestAttack5_StaticPathIsNever500: /ui/static/ hands its path to
// http.FileServer over the embedded FS, which cannot open a name that is
// not valid UTF-8 and answers 500. Anyone, even a stranger to a server
// with --anonymous-reads=false, makes the server answer 500s at will
// (GET /ui/static/%ff): each counts in muster_http_requests_total's
// 5xx, where alerts look, and none is in the log that docs/api.md says
// holds a 500's cause. A name that is no file is a 404.
func TestAttack5_StaticPathIsNever500(t *testing.T) {
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
