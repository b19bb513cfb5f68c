package consulapi_test

import (
	"testing"

	consul "github.com/hashicorp/consul/api"
)

// TestConsul_DotIDsAreRefused: "." and ".." would be service IDs that
// deregister/{id} can never name (a path with such a segment is
// refused), so the registration refuses them.
func TestConsul_DotIDsAreRefused(t *testing.T) {
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
