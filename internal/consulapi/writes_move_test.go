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

// TestConsul_AnIDRegisteredUnderAnotherNameIsAConflict: a key registers
// the ID api-1 as service web, then the same ID at the same address as
// service api. Moving an instance between services in one write would
// leave web's watchers unaware that it left, so it is a 409 that names
// the service the ID is registered as and says to deregister it first;
// web keeps its instance, and after the deregistration the ID registers
// under the new name.
func TestConsul_AnIDRegisteredUnderAnotherNameIsAConflict(t *testing.T) {
	h, cc := start(t, nil)
	key := consulKey(t, h, "none", "web", "api")
	base := "http://" + h.Srv.ConsulAddr()
	if code, eb := consulDo(t, http.MethodPut, base, "/v1/agent/service/register", key,
		`{"ID":"api-1","Name":"web","Address":"127.0.0.1","Port":7001,"Check":{"TTL":"10s"}}`); code != 200 {
		t.Fatalf("setup: %d %+v", code, eb)
	}
	moved := `{"ID":"api-1","Name":"api","Address":"127.0.0.1","Port":7001,"Check":{"TTL":"10s"}}`
	code, eb := consulDo(t, http.MethodPut, base, "/v1/agent/service/register", key, moved)
	if code != http.StatusConflict || eb.Error.Code != api.CodeConflict || !strings.Contains(eb.Error.Message, `"web"`) ||
		!strings.Contains(eb.Error.Message, "deregister") {
		t.Fatalf("api-1 registered again as api: %d %+v; want a 409 naming web and saying to deregister first", code, eb)
	}
	if es, _, err := cc.Health().Service("web", "", false, nil); err != nil || len(es) != 1 || es[0].Service.ID != "api-1" {
		t.Fatalf("web after the refusal: %+v, %v", es, err)
	}
	if code, eb := consulDo(t, http.MethodPut, base, "/v1/agent/service/deregister/api-1", key, ""); code != 200 {
		t.Fatalf("deregister: %d %+v", code, eb)
	}
	if code, eb := consulDo(t, http.MethodPut, base, "/v1/agent/service/register", key, moved); code != 200 {
		t.Fatalf("api-1 as api after its deregistration: %d %+v", code, eb)
	}
	es, _, err := cc.Health().Service("api", "", false, nil)
	if err != nil || len(es) != 1 || es[0].Service.ID != "api-1" {
		t.Fatalf("api: %+v, %v", es, err)
	}
	if es, _, _ := cc.Health().Service("web", "", false, nil); len(es) != 0 {
		t.Errorf("web still lists %+v", es)
	}
}
