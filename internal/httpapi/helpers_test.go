package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/testserver"
)

func jsonBody(s string) io.Reader { return strings.NewReader(s) }

// postPatient posts a registration as h.Post does, and sends it again
// (up to five times) while it is answered 503 busy: a registry that could
// not keep time while a callback waited (a loaded CI machine) says so,
// and a client retries.
func postPatient(t *testing.T, h *testserver.Harness, service, secret string, body []byte) (int, api.ErrorBody, []byte) {
	t.Helper()
	status, eb, raw := h.Post(t, service, secret, body)
	for try := 0; status == http.StatusServiceUnavailable && eb.Error.Code == api.CodeBusy && try < 5; try++ {
		status, eb, raw = h.Post(t, service, secret, body)
	}
	return status, eb, raw
}
