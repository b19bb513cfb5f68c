package consulapi_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// TestConsul_UnprovedKeyCannotProbe: docs/security.md promises that a
// check reaches nothing the verification callback could not reach, and
// that the callback is no port scanner. A key with consul_verify none
// proves nothing, so it may register TTL checks only: a registration
// with HTTP or TCP checks aimed at a private service on 127.0.0.1 is
// refused, nothing is sent there, and holding unproved instances at the
// host does not unlock the precise callback reasons of /v1 registrations
// there.
func TestConsul_UnprovedKeyCannotProbe(t *testing.T) {
	h, cc := start(t, nil)
	var mu sync.Mutex
	var seen []string
	private := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
	}))
	defer private.Close()
	privPort := portOf(t, private.URL)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	key := consulKey(t, h, "none", "web")

	// Before: a /v1 registration's failed callback is opaque to this key.
	code, before, _ := h.Post(t, "web", key, []byte(`{"address":"127.0.0.1","port":`+strconv.Itoa(closedPort)+`,"ttl":"10s"}`))
	if code != 422 {
		t.Fatalf("setup: /v1 registration at a closed port: %d", code)
	}

	ag := consulAs(t, h, key).Agent()
	err := ag.ServiceRegister(&consul.AgentServiceRegistration{ID: "scan", Name: "web", Address: "127.0.0.1", Port: 1,
		Checks: consul.AgentServiceChecks{
			{HTTP: "http://127.0.0.1:" + strconv.Itoa(privPort) + "/admin/purge?all=1", Interval: "1s", Timeout: "500ms"},
			{TCP: "127.0.0.1:" + strconv.Itoa(closedPort), Interval: "1s", Timeout: "500ms"},
		}})
	if err == nil || !strings.Contains(err.Error(), `"field":"Check"`) {
		t.Errorf("a key of consul_verify none registered probes: %v", err)
	}
	// An unproved instance with a TTL check alone is registered at the
	// host; the registry sends it nothing.
	err = ag.ServiceRegister(&consul.AgentServiceRegistration{ID: "ttl", Name: "web", Address: "127.0.0.1", Port: privPort,
		Check: &consul.AgentServiceCheck{TTL: "1h", Status: "passing"}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	mu.Lock()
	got := append([]string(nil), seen...)
	mu.Unlock()
	if len(got) > 0 {
		t.Errorf("the registry sent %d requests to a service nobody proved, e.g. %q", len(got), got[0])
	}
	es, _, err := cc.Health().Service("web", "", false, nil)
	if err == nil {
		for _, e := range es {
			for _, c := range e.Checks {
				if strings.Contains(c.Output, "200") || strings.Contains(c.Output, "refused") {
					t.Errorf("anonymous readers learn an unproved endpoint's state: %s %s %q", c.CheckID, c.Status, c.Output)
				}
			}
		}
	}

	// After: the same /v1 registration gets the precise reason.
	_, after, _ := h.Post(t, "web", key, []byte(`{"address":"127.0.0.1","port":`+strconv.Itoa(closedPort)+`,"ttl":"10s"}`))
	if after.Error.Message != before.Error.Message {
		t.Errorf("an unproved instance unlocked the callback's precise reasons at the host:\n before: %s\n after:  %s",
			before.Error.Message, after.Error.Message)
	}
}
