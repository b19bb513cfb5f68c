package registry_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestRegistry_Protection: while the sweep holds expiries, the registry
// says so (Protection, each ServiceRead's Protection, ProtectionState),
// and its reads (Service.Each, Services) show the silent instances
// passing although their TTL ran out. A node that is not a ready leader
// reports no protection, but keeps its count of activations.
func TestRegistry_Protection(t *testing.T) {
	const ttl = 3 * time.Second
	clk := &clock{now: time.Now().Truncate(time.Second)}
	cat := catalog.New()
	prop := &proposer{cat: cat, leader: "127.0.0.1:7000"}
	lead := &leadership{leading: true, since: clk.Now().Add(-time.Hour)}
	pc := health.DefaultProtectionConfig()
	live := health.NewLiveness(health.LivenessConfig{Protection: pc}, health.NewTracker(), lead, nil)
	v, err := verify.New(verify.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := registry.DefaultConfig()
	cfg.Now, cfg.Logger = clk.Now, testutil.Logger(t)
	reg, err := registry.New(cfg, cat, prop, live, v)
	if err != nil {
		t.Fatal(err)
	}
	scfg := health.DefaultSweepConfig()
	scfg.Now, scfg.Logger = clk.Now, testutil.Logger(t)
	sw := health.NewSweeper(scfg, live, cat, prop)

	prop.apply(catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k", SecretHash: catalog.HashSecret("s"), Services: []string{"*"}}})
	var ids []string
	for i := range 40 {
		svc := "a"
		if i%2 == 1 {
			svc = "b"
		}
		id := fmt.Sprintf("%s%02d", svc, i)
		ids = append(ids, id)
		if res := prop.apply(catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{
			ID: id, Service: svc, Address: "10.0.0.1", Port: 1000 + i, TTL: ttl, DeregisterAfter: time.Hour,
			TokenHash: catalog.HashSecret(id), KeyID: "k", Status: catalog.StatusPassing, RegisteredAt: clk.Now()}}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	// Every instance beats each second for four seconds; then b's stop.
	step := func(d time.Duration, beat func(id string) bool) {
		for end := clk.Now().Add(d); clk.Now().Before(end); {
			clk.Advance(time.Second)
			for _, id := range ids {
				if beat(id) {
					live.Beat(id, clk.Now())
				}
			}
			floor, _ := live.Floor()
			sw.Sweep(context.Background(), floor)
		}
	}
	step(4*time.Second, func(string) bool { return true })
	if reg.Protection() {
		t.Fatal("protection while every instance beats")
	}
	step(2*ttl, func(id string) bool { return id[0] == 'a' })

	if !reg.Protection() {
		t.Fatal("no protection while half the catalog is silent")
	}
	rd, err := reg.Service("b")
	if err != nil {
		t.Fatal(err)
	}
	if !rd.Protection() {
		t.Error("a ServiceRead during the hold does not say protection")
	}
	n := 0
	rd.Each(registry.Filter{}, func(_ int, e registry.Entry) bool { n++; return true })
	if n != 20 {
		t.Errorf("a default lookup of b during the hold yields %d passing instances, want 20", n)
	}
	sums, _, err := reg.Services()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sums {
		if s.Passing != 20 || s.Critical != 0 {
			t.Errorf("service list during the hold: %+v", s)
		}
	}
	ps := reg.ProtectionState()
	if !ps.Active || ps.Activations != 1 || ps.Overdue != 20 || ps.Live != 40 || !ps.Until.Equal(ps.Since.Add(pc.MaxHold)) {
		t.Errorf("ProtectionState = %+v", ps)
	}
	if len(prop.proposed()) != 0 {
		t.Errorf("the sweep proposed %+v during the hold", prop.proposed())
	}

	lead.set(false, time.Time{})
	if reg.Protection() {
		t.Error("a node that is not a ready leader reports protection")
	}
	if ps := reg.ProtectionState(); ps.Active || ps.Activations != 1 {
		t.Errorf("ProtectionState when not leading = %+v; want inactive, the count kept", ps)
	}
	var zero registry.ServiceRead
	if zero.Protection() {
		t.Error("a zero ServiceRead reports protection")
	}
}
