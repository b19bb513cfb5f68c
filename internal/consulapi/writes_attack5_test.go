package consulapi_test

import (
	"testing"

	consul "github.com/hashicorp/consul/api"
)

// TestConsulAttack5_AStaleCheckIDHitsAnotherService: the check ID
// service:db:1 is read as "the only check of db:1" and, failing that, as
// "the first check of db". Once the instance db:1 is gone (deregistered,
// or removed after its critical time), the program that ran it still
// holds the check ID; its next FailTTL marks the unrelated instance db
// critical, and its PassTTL keeps db alive, all answered 200, where
// Consul answers 404 for a check that no longer exists. Service IDs
// that end in :<digits> are common (redis:6379).
func TestConsulAttack5_AStaleCheckIDHitsAnotherService(t *testing.T) {
	h, cc := start(t, nil)
	ag := consulAs(t, h, consulKey(t, h, "none", "web")).Agent()
	for i, id := range []string{"db", "db:1"} {
		err := ag.ServiceRegister(&consul.AgentServiceRegistration{ID: id, Name: "web", Address: "127.0.0.1", Port: 7000 + i,
			Check: &consul.AgentServiceCheck{TTL: "1m", Status: consul.HealthPassing}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := ag.ServiceDeregister("db:1"); err != nil {
		t.Fatal(err)
	}
	err := ag.FailTTL("service:db:1", "db:1's process reports failure")
	if err == nil {
		t.Errorf("FailTTL of the check of a deregistered service answered 200")
	}
	es, _, err := cc.Health().Service("web", "", false, nil)
	if err != nil || len(es) != 1 {
		t.Fatalf("health: %+v, %v", es, err)
	}
	if es[0].Service.ID != "db" || es[0].Checks.AggregatedStatus() != consul.HealthPassing {
		t.Errorf("instance %s is %s after a FailTTL meant for db:1", es[0].Service.ID, es[0].Checks.AggregatedStatus())
	}
}
