package consulapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
)

// TestConsul_MovingAnIDOntoAHeldEndpointIsAConflict: a key holds two
// Consul service IDs, a-1 on port 7001 and a-2 on port 7002 of one
// address, and registers a-1 again on 7002 (a program that moved its
// port). That would replace two instances at once, which a registration
// never does: it is a 409 naming what to do, never a 500.
func TestConsul_MovingAnIDOntoAHeldEndpointIsAConflict(t *testing.T) {
	h, _ := start(t, nil)
	key := consulKey(t, h, "none", "web")
	base := "http://" + h.Srv.ConsulAddr()
	for _, b := range []string{
		`{"ID":"a-1","Name":"web","Address":"127.0.0.1","Port":7001,"Check":{"TTL":"10s"}}`,
		`{"ID":"a-2","Name":"web","Address":"127.0.0.1","Port":7002,"Check":{"TTL":"10s"}}`,
	} {
		if code, eb := consulDo(t, http.MethodPut, base, "/v1/agent/service/register", key, b); code != 200 {
			t.Fatalf("setup: %d %+v", code, eb)
		}
	}
	code, eb := consulDo(t, http.MethodPut, base, "/v1/agent/service/register", key,
		`{"ID":"a-1","Name":"web","Address":"127.0.0.1","Port":7002,"Check":{"TTL":"10s"}}`)
	if code >= 500 || eb.Error.Code == api.CodeInternal {
		t.Errorf("moving a-1 onto a-2's port: %d %+v; want a 4xx that says what is wrong (or the registration done)", code, eb)
	}
	if strings.Contains(h.Logs.String(), `msg="internal error"`) {
		t.Errorf("the server logged an internal error for a client's request")
	}
}
