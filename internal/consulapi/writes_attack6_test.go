package consulapi_test

import (
	"strings"
	"testing"
)

// TestConsulAttack6_StrangersBodiesAreReadBeforeTheKey: muster's own API
// checks the credential of a write before it reads the body (a stranger
// gets 401 whatever it sends, and its refusal is an audit record); the
// Consul-compatible registration and check update read and decode up to
// 64 KiB of JSON from anyone first, and answer a stranger's malformed
// body 400, a refusal the audit trail never sees as a failed
// authentication.
func TestConsulAttack6_StrangersBodiesAreReadBeforeTheKey(t *testing.T) {
	h, _ := start(t, nil)
	base := "http://" + h.Srv.ConsulAddr()
	junk := `{"ID":` + strings.Repeat("[", 5000) // malformed, and deep
	for _, c := range []struct{ path, token string }{
		{"/v1/agent/service/register", ""},
		{"/v1/agent/service/register", "mk_not-a-key"},
		{"/v1/agent/check/update/service:web-1", ""},
		{"/v1/agent/check/update/service:web-1", "mk_not-a-key"},
	} {
		if code, eb := consulPut(t, base, c.path, c.token, junk); code != 401 && code != 403 {
			t.Errorf("PUT %s with token %q and a malformed body: %d %s, want the credential refused first", c.path, c.token, code, eb.Error.Code)
		}
	}
}
