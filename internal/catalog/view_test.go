package catalog

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

// viewT0 is the registration time of the instances of these tests.
var viewT0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// viewInstance returns a complete passing instance of key at address and
// port of service.
func viewInstance(id, service, key, address string, port int) *Instance {
	return &Instance{
		ID: id, Service: service, Address: address, Port: port, Scheme: "http",
		TTL: 10 * time.Second, DeregisterAfter: 100 * time.Second,
		TokenHash: HashSecret("token-" + id), KeyID: key, Proof: ProofAddressPort,
		Status: StatusPassing, RegisteredAt: viewT0,
	}
}

// bySvc groups the catalog's instances by service: what every view must
// hold.
func (c *Catalog) bySvc() map[string][]*Instance {
	out := map[string][]*Instance{}
	for _, inst := range c.instances {
		out[inst.Service] = append(out[inst.Service], inst)
	}
	return out
}

// otherProtocolByPass is the rule of protocols as it was judged before
// otherProtocol kept counts: a pass over the service's instances.
func (c *Catalog) otherProtocolByPass(in *Instance) bool {
	own, other := false, false
	for _, ex := range c.bySvc()[in.Service] {
		switch {
		case (ex.KeyID == SeedKeyID) == (in.KeyID == SeedKeyID):
			own = true
		case ex.Address == in.Address && ex.Port == in.Port:
		default:
			other = true
		}
	}
	return other && !own
}

// checkViews fails tb unless every service's instances, and its view when
// read, hold the instances a rebuild from the catalog's instances holds,
// in its order, with the count of those with checks, and the counts of
// the tutorial protocol's instances are right. It reads the views only
// when read is set, so that between reads changes pile up unseen. (Its bars are not compared: a
// registration that drops an ended bar and is then refused leaves the
// bar in the view until the service's next change, as it always has;
// readers judge a bar by its end.)
func checkViews(tb testing.TB, c *Catalog, read bool) {
	tb.Helper()
	groups := c.bySvc()
	for name, s := range c.services {
		set := groups[name]
		want := make([]*Instance, 0, len(set))
		seeds := 0
		for _, inst := range set {
			want = append(want, inst)
			if inst.KeyID == SeedKeyID {
				seeds++
			}
		}
		slices.SortFunc(want, byID)
		if !slices.Equal(s.list, want) {
			tb.Fatalf("service %s: %d instances listed, not the %d a rebuild holds", name, len(s.list), len(want))
		}
		checked := 0
		for _, inst := range want {
			checked += hasChecks(inst)
		}
		if s.checked != checked {
			tb.Fatalf("service %s: %d with checks counted, but %d of its instances have checks", name, s.checked, checked)
		}
		if !read {
			continue
		}
		v := c.Service(name)
		if !slices.Equal(v.Instances, want) {
			tb.Fatalf("view of %s: %d instances, not the %d a rebuild holds", name, len(v.Instances), len(want))
		}
		if v.Checked != checked || v.Index != s.index || v.Name != name {
			tb.Fatalf("view of %s: Checked %d, index %d, name %q; want %d, %d, %q", name, v.Checked, v.Index, v.Name, checked, s.index, name)
		}
		if c.seeds[name] != seeds {
			tb.Fatalf("service %s: %d tutorial-protocol instances counted, %d held", name, c.seeds[name], seeds)
		}
	}
	for name := range groups {
		if c.services[name] == nil {
			tb.Fatalf("service %s has instances and no view", name)
		}
	}
}

// TestCatalog_update: after every command of a random history (new
// instances, replacements at an endpoint, across keys and protocols,
// status changes, drains, evictions, deregistrations), every service's
// instances are the ones a rebuild from scratch holds, and its view, read
// after one change or after several, is that too; a view once read never
// changes, whatever comes after; and the rule of protocols judged from
// counts agrees with the pass over the service it replaced.
func TestCatalog_update(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			c := New()
			idx := uint64(0)
			apply := func(cmd Command) Result {
				idx++
				return c.Apply(idx, cmd)
			}
			for _, k := range []string{"k1", "k2", SeedKeyID} {
				if res := apply(Command{Op: OpCreateKey, Key: &Key{ID: k, SecretHash: HashSecret(k), Services: []string{"*"}}}); res.Err != nil {
					t.Fatal(res.Err)
				}
			}
			services := []string{"a", "b", "c"}
			keys := []string{"k1", "k2", SeedKeyID}
			next := 0
			ids := func() []string {
				out := make([]string, 0, len(c.instances))
				for id := range c.instances {
					out = append(out, id)
				}
				slices.Sort(out)
				return out
			}
			// held are views read earlier, with a copy of what they held.
			type heldView struct {
				v         *ServiceView
				instances []*Instance
				index     uint64
			}
			var held []heldView
			for range 600 {
				if rng.IntN(4) == 0 {
					for _, name := range services {
						if v := c.Service(name); v != nil {
							held = append(held, heldView{v, slices.Clone(v.Instances), v.Index})
						}
					}
				}
				switch op := rng.IntN(10); {
				case op < 5 || len(c.instances) == 0:
					next++
					in := viewInstance(fmt.Sprintf("%08x", rng.Uint32()), services[rng.IntN(len(services))], keys[rng.IntN(len(keys))],
						fmt.Sprintf("10.0.0.%d", rng.IntN(4)), 8000+rng.IntN(4))
					if rng.IntN(3) == 0 {
						in.Checks = []Check{{Type: "tcp", Interval: 10 * time.Second, Timeout: time.Second, FailuresBeforeCritical: 1, SuccessesBeforePassing: 1}}
					}
					if want, got := c.otherProtocolByPass(in), c.otherProtocol(in); got != want {
						t.Fatalf("instance %+v: otherProtocol %v, the pass says %v", in, got, want)
					}
					apply(Command{Op: OpRegister, Instance: in, Rules: RulesCurrent})
				case op < 7:
					all := ids()
					apply(Command{Op: OpSetStatus, ID: all[rng.IntN(len(all))], Status: []Status{StatusPassing, StatusCritical}[rng.IntN(2)]})
				case op < 8:
					all := ids()
					apply(Command{Op: OpDrain, ID: all[rng.IntN(len(all))]})
				case op < 9:
					all := ids()
					apply(Command{Op: OpDeregister, ID: all[rng.IntN(len(all))]})
				default:
					all := ids()
					apply(Command{Op: OpEvict, ID: all[rng.IntN(len(all))], Until: viewT0.Add(time.Duration(rng.IntN(3)-1) * time.Minute)})
				}
				checkViews(t, c, rng.IntN(3) == 0)
				for _, h := range held {
					if !slices.Equal(h.v.Instances, h.instances) || h.v.Index != h.index {
						t.Fatalf("a view of %s read at index %d changed after it was read", h.v.Name, h.index)
					}
				}
			}
		})
	}
}

// BenchmarkCatalog_Register measures changes applied to a service that
// already holds n instances (a new instance, then its deregistration, so
// that the service keeps its size), against the cost of rebuilding that
// service's view from scratch, which each change paid before views were
// updated in place. Figures: ns/op (a change) and rebuild-ns/change. Run
// it with
//
//	go test -run xxx -bench Catalog_Register ./internal/catalog/
func BenchmarkCatalog_Register(b *testing.B) {
	for _, n := range []int{100, 1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c := New()
			idx := uint64(1)
			c.Apply(idx, Command{Op: OpCreateKey, Key: &Key{ID: "k1", SecretHash: HashSecret("k1"), Services: []string{"*"}}})
			// The service is filled directly, as a restore does: one
			// rebuild, not n registrations.
			for i := range n {
				c.putInstance(viewInstance(fmt.Sprintf("%016x", rand.Uint64()), "big", "k1", "10.0.0.1", 1+i))
			}
			c.rebuild("big", idx, c.bySvc()["big"])
			b.ReportAllocs()
			b.ResetTimer()
			var in *Instance
			for i := range b.N {
				idx++
				cmd := Command{Op: OpRegister, Rules: RulesCurrent}
				if i%2 == 0 {
					in = viewInstance(fmt.Sprintf("%016x", rand.Uint64()), "big", "k1", "10.0.0.2", 1+i%60000)
					cmd.Instance = in
				} else {
					cmd = Command{Op: OpDeregister, ID: in.ID}
				}
				if res := c.Apply(idx, cmd); res.Err != nil {
					b.Fatal(res.Err)
				}
			}
			b.StopTimer()
			const rebuilds = 20
			all := c.bySvc()["big"]
			start := time.Now()
			for range rebuilds {
				c.rebuild("big", idx, slices.Clone(all))
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/rebuilds, "rebuild-ns/change")
		})
	}
}

// TestCatalog_ViewsReadWhileChanging: readers of one service, its view
// made by whichever of them comes first after a change, while commands
// add and remove its instances. Every view read is sorted, holds what it
// held when read, and its index only grows; run with -race, it also
// shows that making a view under the read lock races with nothing.
func TestCatalog_ViewsReadWhileChanging(t *testing.T) {
	c := New()
	c.Apply(1, Command{Op: OpCreateKey, Key: &Key{ID: "k1", SecretHash: HashSecret("k1"), Services: []string{"*"}}})
	const n = 2000
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			var last uint64
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				v := c.Service("s")
				if v == nil {
					continue
				}
				held := slices.Clone(v.Instances)
				if !slices.IsSortedFunc(v.Instances, byID) || v.Index < last {
					errs <- fmt.Errorf("view at index %d (after %d): sorted %v", v.Index, last, slices.IsSortedFunc(v.Instances, byID))
					return
				}
				last = v.Index
				runtime.Gosched()
				if !slices.Equal(v.Instances, held) {
					errs <- fmt.Errorf("a view at index %d changed after it was read", v.Index)
					return
				}
			}
		}()
	}
	idx := uint64(1)
	var ids []string
	for i := range n {
		idx++
		in := viewInstance(fmt.Sprintf("%08x", i*2654435761%(1<<32)), "s", "k1", "10.0.0.1", 1+i)
		if res := c.Apply(idx, Command{Op: OpRegister, Instance: in, Rules: RulesCurrent}); res.Err != nil {
			t.Fatal(res.Err)
		}
		ids = append(ids, in.ID)
		if i%3 == 2 {
			idx++
			c.Apply(idx, Command{Op: OpDeregister, ID: ids[i/2]})
		}
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkViews(t, c, true)
}

// TestCatalog_ViewMadeOncePerChange: a view is made once per change (the same
// pointer while nothing changes), carries the bars of the service's last
// change, and a service whose last instance left, or that a restore
// keeps without instances, has an empty, non-nil Instances.
func TestCatalog_ViewMadeOncePerChange(t *testing.T) {
	c := New()
	c.Apply(1, Command{Op: OpCreateKey, Key: &Key{ID: "k1", SecretHash: HashSecret("k1"), Services: []string{"*"}}})
	a := viewInstance("a", "s", "k1", "10.0.0.1", 1)
	b := viewInstance("b", "s", "k1", "10.0.0.2", 2)
	for i, in := range []*Instance{a, b} {
		if res := c.Apply(uint64(2+i), Command{Op: OpRegister, Instance: in, Rules: RulesCurrent}); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	v1 := c.Service("s")
	if v2 := c.Service("s"); v2 != v1 || c.Services()[0] != v1 {
		t.Fatal("a view was made again with no change")
	}
	if _, vs := c.SnapshotOf([]string{"s"}); vs[0] != v1 {
		t.Fatal("SnapshotOf made the view again")
	}
	c.Apply(4, Command{Op: OpEvict, ID: "a", Until: viewT0.Add(time.Minute)})
	v := c.Service("s")
	if v == v1 || v.Index != 4 || len(v.Bars) != 1 || v.Bars[0].Instance != "a" || len(v.Instances) != 1 {
		t.Fatalf("after the eviction: %+v", v)
	}
	c.Apply(5, Command{Op: OpDeregister, ID: "b"})
	v = c.Service("s")
	if v.Instances == nil || len(v.Instances) != 0 || v.Index != 5 || len(v.Bars) != 1 {
		t.Fatalf("after the last left: %+v", v)
	}
	var buf bytes.Buffer
	if _, err := c.Snapshot().WriteBinary(&buf); err != nil {
		t.Fatal(err)
	}
	c2 := New()
	if err := c2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	v = c2.Service("s")
	if v == nil || v.Instances == nil || len(v.Instances) != 0 || v.Index != 5 || len(v.Bars) != 1 {
		t.Fatalf("restored: %+v", v)
	}
	// A registration at the evicted endpoint after the bar ended drops it:
	// the view of that change holds no bar.
	a2 := viewInstance("a2", "s", "k1", "10.0.0.1", 1)
	a2.RegisteredAt = viewT0.Add(2 * time.Minute)
	if res := c.Apply(6, Command{Op: OpRegister, Instance: a2, Rules: RulesCurrent}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if v = c.Service("s"); len(v.Bars) != 0 || v.Index != 6 {
		t.Fatalf("after the bar ended and the endpoint registered again: %+v", v)
	}
}
