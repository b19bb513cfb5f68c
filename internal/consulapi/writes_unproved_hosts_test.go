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

// TestConsul_UnprovedInstancesYieldToProvenOnes: a key with
// consul_verify none registers at allowlisted addresses without proving
// them, so what it registers must not take a host from its owner:
//
//   - unproved instances count against --max-instances-per-address apart
//     from proven ones (here 4 of each), so the host's owner, with a key
//     of its own and a process that answers the callback, still
//     registers there;
//   - an endpoint an unproved instance holds is taken by another key's
//     registration that proves the address (here through `muster answer`,
//     muster_verify_port, proof address).
func TestConsul_UnprovedInstancesYieldToProvenOnes(t *testing.T) {
	t.Run("host limit", func(t *testing.T) {
		h, _ := start(t, func(c *server.Config) { c.Registry.MaxInstancesPerAddress = 4 })
		squatter := consulAs(t, h, consulKey(t, h, "none", "web")).Agent()
		for i := 1; i <= 4; i++ {
			err := squatter.ServiceRegister(&consul.AgentServiceRegistration{ID: "sq-" + strconv.Itoa(i), Name: "web",
				Address: "127.0.0.1", Port: i, Check: &consul.AgentServiceCheck{TTL: "1h"}})
			if err != nil {
				t.Fatalf("an unproved registration %d of 4: %v", i, err)
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
			t.Fatalf("the unproved registration: %v", err)
		}
		err = consulAs(t, h, ownerKey).Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: "web-1", Name: "web",
			Address: "127.0.0.1", Port: port, Check: &consul.AgentServiceCheck{TTL: "10s"},
			Meta: map[string]string{"muster_verify_port": strconv.Itoa(portOf(t, sidecar.URL))}})
		if err != nil {
			t.Errorf("the host's owner, proving the host with muster answer, is refused its own endpoint: %v", err)
		}
		res, err := h.Anon.Lookup(context.Background(), "web", client.WithStatus("any"))
		if err != nil || len(res.Instances) != 1 || res.Instances[0].Proof != api.ProofAddress {
			t.Errorf("the endpoint's instance afterwards: %+v, %v; want the owner's alone, proof address", res.Instances, err)
		}
	})
}
