package consulapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestConsul_KeyCheckedBeforeTheBody: as on muster's own API, a write's
// credential is checked before its body is read: a stranger gets 401
// whatever it sends, and its refusal is an audit record of a failed
// authentication.
func TestConsul_KeyCheckedBeforeTheBody(t *testing.T) {
	h, _ := start(t, nil)
	base := "http://" + h.Srv.ConsulAddr()
	junk := `{"ID":` + strings.Repeat("[", 5000) // malformed, and deep
	for _, c := range []struct{ path, token string }{
		{"/v1/agent/service/register", ""},
		{"/v1/agent/service/register", "mk_not-a-key"},
		{"/v1/agent/check/update/service:web-1", ""},
		{"/v1/agent/check/update/service:web-1", "mk_not-a-key"},
	} {
		if code, eb := consulDo(t, http.MethodPut, base, c.path, c.token, junk); code != 401 && code != 403 {
			t.Errorf("PUT %s with token %q and a malformed body: %d %s, want the credential refused first", c.path, c.token, code, eb.Error.Code)
		}
	}
}
