package consulapi_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"

	consul "github.com/hashicorp/consul/api"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestConsulAttack4_NoneKeyOccupiesOtherHosts: a key with consul_verify
// none registers at any allowlisted address without proving it, and
// what it registers counts against that host's limits and holds its
// endpoints. So one such key, whose holder owns no host at all, can
//
//   - fill --max-instances-per-address of a host it does not control
//     (256 by default; here 4), after which the host's real owner, with
//     a key of its own and a process that answers the callback, can
//     register nothing there (429);
//   - take the very endpoint another key's program is about to register
//     with its `muster answer` sidecar (muster_verify_port, proof
//     address), which is then refused (409) for as long as the squatter
//     heartbeats.
//
// With a callback key, counting against a host takes proving it.
func TestConsulAttack4_NoneKeyOccupiesOtherHosts(t *testing.T) {
	t.Run("host limit", func(t *testing.T) {
		h, _ := start(t, func(c *server.Config) { c.Registry.MaxInstancesPerAddress = 4 })
		squatter := consulAs(t, h, consulKey(t, h, "none", "web")).Agent()
		for i := 1; i <= 4; i++ {
			err := squatter.ServiceRegister(&consul.AgentServiceRegistration{ID: "sq-" + strconv.Itoa(i), Name: "web",
				Address: "127.0.0.1", Port: i, Check: &consul.AgentServiceCheck{TTL: "1h"}})
			if err != nil {
				t.Logf("squatting refused (the fix?): %v", err)
				return
			}
		}
		owner := h.Key(t, "web")
		inst := testutil.NewInstance(t, owner.Secret, verify.Proof)
		_, err := h.Anon.Register(context.Background(), "web", owner.Secret, api.RegisterRequest{
			Address: "127.0.0.1", Port: inst.Port(), TTL: "10s"})
		if err != nil {
			t.Errorf("the host's owner, answering the callback on its own port, is refused: %v", err)
		}
	})
	t.Run("endpoint", func(t *testing.T) {
		h, _ := start(t, nil)
		ownerKey := consulKey(t, h, "", "web")
		sidecar := httptest.NewServer(client.AnswerCallbacks(ownerKey, nil, "web"))
		defer sidecar.Close()
		const port = 9999 // the owner's program's port on its host
		squatter := consulAs(t, h, consulKey(t, h, "none", "web")).Agent()
		err := squatter.ServiceRegister(&consul.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.1", Port: port,
			Check: &consul.AgentServiceCheck{TTL: "1h", Status: "passing"}})
		if err != nil {
			t.Logf("squatting refused (the fix?): %v", err)
			return
		}
		err = consulAs(t, h, ownerKey).Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: "web-1", Name: "web",
			Address: "127.0.0.1", Port: port, Check: &consul.AgentServiceCheck{TTL: "10s"},
			Meta: map[string]string{"muster_verify_port": strconv.Itoa(portOf(t, sidecar.URL))}})
		if err != nil {
			t.Errorf("the host's owner, proving the host with muster answer, is refused its own endpoint: %v", err)
		}
	})
}
