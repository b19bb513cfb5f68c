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

// TestConsulAttack3_NoneKeyTurnsTheRegistryIntoAProber: docs/security.md
// promises that a check reaches nothing the verification callback could
// not reach ("Only the instance's own address, which its callback has
// already proved") and that the callback is no port scanner (until a key
// holds an instance at an address, closed, silent and HTTP ports answer
// alike). A key with consul_verify none proves nothing: it registers
// 127.0.0.1 (in the default --verify-allow; on a real deployment the
// registry's own host, whose loopback services no outsider could answer
// a callback on) with HTTP and TCP checks aimed at any port and path it
// likes, and the registry GETs them every second and publishes to
// anonymous readers which ports are open and what status each path
// answers. Holding that unproved instance also unlocks the precise
// callback reasons of /v1 registrations at the host.
//
// Here the "private" service is an HTTP server on 127.0.0.1 that nobody
// registered; it must never see a request from the registry.
func TestConsulAttack3_NoneKeyTurnsTheRegistryIntoAProber(t *testing.T) {
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
	if err != nil {
		t.Logf("the registration was refused (the fix?): %v", err)
		return
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
