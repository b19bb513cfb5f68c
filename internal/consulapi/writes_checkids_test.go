package consulapi_test

import (
	"testing"

	consul "github.com/hashicorp/consul/api"
)

// TestConsul_CheckIDOfAMissingCheckFindsNothing: the check ID
// service:db:1 is read as "the only check of db:1" and, failing that, as
// "the first of the several checks of db". Once db:1 is gone, the
// program that ran it still holds the check ID; db, which has one check,
// has no service:db:1, so FailTTL and PassTTL answer 404 (as Consul
// does) and leave db alone.
func TestConsul_CheckIDOfAMissingCheckFindsNothing(t *testing.T) {
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
