package consulapi_test

import (
	"testing"

	consul "github.com/hashicorp/consul/api"
)

// TestConsulAttack2_DotIDsCannotBeDeregistered: "." and ".." are valid
// service IDs by the registration's rule (1 to 128 of A-Z a-z 0-9 - _ .
// : @), so they are registered; but deregister/{id} refuses a path with
// a "." or ".." segment, so the program that registered them (a
// consul/api client, which sends the ID as the last path segment) can
// never deregister them: the ID should be refused when registered, or
// found when deregistered.
func TestConsulAttack2_DotIDsCannotBeDeregistered(t *testing.T) {
	h, _ := start(t, nil)
	ag := consulAs(t, h, consulKey(t, h, "none", "web")).Agent()
	for i, id := range []string{".", ".."} {
		err := ag.ServiceRegister(&consul.AgentServiceRegistration{ID: id, Name: "web", Address: "127.0.0.1", Port: 8000 + i,
			Check: &consul.AgentServiceCheck{TTL: "10s"}})
		if err != nil {
			continue // refused: fine
		}
		if err := ag.ServiceDeregister(id); err != nil {
			t.Errorf("service ID %q was registered but cannot be deregistered: %v", id, err)
		}
	}
}
