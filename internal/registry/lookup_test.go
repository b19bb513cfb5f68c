package registry_test

import (
	"slices"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// lookupRig holds service "web":
//
//	a  tags v1,blue  zone:a  passing, heard now
//	b  tags v2,blue  zone:b  passing, heard now
//	c  tags v1               critical (committed)
//	d                        passing, drained, heard now
//	e                        passing in the catalog, registered an hour
//	                         ago and never heard: critical by its TTL
//	f                        passing, registered now, never heard
//
// and service "api" with one passing instance.
func lookupRig(tb testing.TB) *rig {
	tb.Helper()
	r := newRig(tb)
	now := r.clock.Now()
	r.put(tb, catalog.Instance{ID: "a", Service: "web", Tags: []string{"v1", "blue"}, Meta: map[string]string{"zone": "a"}})
	r.put(tb, catalog.Instance{ID: "b", Service: "web", Tags: []string{"v2", "blue"}, Meta: map[string]string{"zone": "b"}})
	r.put(tb, catalog.Instance{ID: "c", Service: "web", Tags: []string{"v1"}, Status: catalog.StatusCritical})
	r.put(tb, catalog.Instance{ID: "d", Service: "web"})
	r.commit(tb, catalog.Command{Op: catalog.OpDrain, ID: "d"})
	r.put(tb, catalog.Instance{ID: "e", Service: "web", RegisteredAt: now.Add(-time.Hour).UTC()})
	r.put(tb, catalog.Instance{ID: "f", Service: "web"})
	r.put(tb, catalog.Instance{ID: "z", Service: "api"})
	for _, id := range []string{"a", "b", "d", "z"} {
		if _, _, err := r.reg.Heartbeat(tb.Context(), id, id); err != nil {
			tb.Fatal(err)
		}
	}
	return r
}

func TestServiceRead_Each(t *testing.T) {
	r := lookupRig(t)
	for _, tc := range []struct {
		name string
		f    registry.Filter
		want []string
	}{
		{"default is passing", registry.Filter{}, []string{"a", "b", "f"}},
		{"passing", registry.Filter{Status: catalog.StatusPassing}, []string{"a", "b", "f"}},
		{"any", registry.Filter{Status: registry.StatusAny}, []string{"a", "b", "c", "d", "e", "f"}},
		{"critical, committed or by TTL", registry.Filter{Status: catalog.StatusCritical}, []string{"c", "e"}},
		{"draining", registry.Filter{Status: catalog.StatusDraining}, []string{"d"}},
		{"tag", registry.Filter{Tags: []string{"blue"}}, []string{"a", "b"}},
		{"tag, passing only", registry.Filter{Tags: []string{"v1"}}, []string{"a"}},
		{"tag, any status", registry.Filter{Tags: []string{"v1"}, Status: registry.StatusAny}, []string{"a", "c"}},
		{"every tag", registry.Filter{Tags: []string{"v1", "blue"}}, []string{"a"}},
		{"unknown tag", registry.Filter{Tags: []string{"green"}, Status: registry.StatusAny}, nil},
		{"meta", registry.Filter{Meta: []string{"zone:b"}}, []string{"b"}},
		{"meta value must match", registry.Filter{Meta: []string{"zone:c"}, Status: registry.StatusAny}, nil},
		{"meta key alone matches no value", registry.Filter{Meta: []string{"zone"}, Status: registry.StatusAny}, nil},
		{"meta and tag", registry.Filter{Meta: []string{"zone:a"}, Tags: []string{"v2"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sr, err := r.reg.Service("web")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			sr.Each(tc.f, func(i int, e registry.Entry) bool {
				if sr.View.Instances[i] != e.Instance {
					t.Fatalf("yield(%d, %s): i is not the instance's position in the view", i, e.Instance.ID)
				}
				got = append(got, e.Instance.ID)
				return true
			})
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Each(%+v) yields %v, want %v", tc.f, got, tc.want)
			}
		})
	}

	t.Run("stops when yield says so", func(t *testing.T) {
		sr, _ := r.reg.Service("web")
		n := 0
		sr.Each(registry.Filter{Status: registry.StatusAny}, func(int, registry.Entry) bool { n++; return n < 2 })
		if n != 2 {
			t.Fatalf("yield called %d times after returning false", n)
		}
	})
}

// TestServiceRead_entries: each entry carries its effective status and
// its freshness as this node heard it.
func TestServiceRead_entries(t *testing.T) {
	r := lookupRig(t)
	r.clock.Advance(2 * time.Second)
	sr, err := r.reg.Service("web")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]registry.Entry{}
	sr.Each(registry.Filter{Status: registry.StatusAny}, func(_ int, e registry.Entry) bool {
		got[e.Instance.ID] = e
		return true
	})
	for _, tc := range []struct {
		id      string
		status  catalog.Status
		age     time.Duration
		quality func(float64) bool
	}{
		{"a", catalog.StatusPassing, 2 * time.Second, func(q float64) bool { return q > 0 && q <= 1 }},
		{"c", catalog.StatusCritical, -1, func(q float64) bool { return q == 0 }},
		{"d", catalog.StatusDraining, 2 * time.Second, func(q float64) bool { return q > 0 && q <= 1 }},
		{"e", catalog.StatusCritical, -1, func(q float64) bool { return q == 0 }},
		{"f", catalog.StatusPassing, -1, func(q float64) bool { return q == 0 }},
	} {
		e := got[tc.id]
		if e.Status != tc.status || e.Age != tc.age || !tc.quality(e.Quality) {
			t.Errorf("%s: status %q age %s quality %v; want %q, %s", tc.id, e.Status, e.Age, e.Quality, tc.status, tc.age)
		}
	}
	if st := got["e"].Instance.Status; st != catalog.StatusPassing {
		t.Fatalf("the catalog says %q for e; the test needs passing", st)
	}
	// A read is a moment: a later clock does not change it.
	r.clock.Advance(time.Hour)
	sr.Each(registry.Filter{Tags: []string{"blue"}}, func(_ int, e registry.Entry) bool {
		if e.Age != 2*time.Second {
			t.Errorf("%s: age %s in an older read", e.Instance.ID, e.Age)
		}
		return true
	})
}

// TestRegistry_Service_ttl: an instance not heard for longer than its TTL
// leaves default lookups at once, before any sweep commits it critical,
// and comes back with its next heartbeat.
func TestRegistry_Service_ttl(t *testing.T) {
	r := newRig(t)
	_, secret := r.key(t, "web")
	in := newInstance(t, secret)
	reg := r.register(t, secret, "web", in, at(in))

	r.clock.Advance(10 * time.Second) // exactly the TTL: still passing
	if ids := passingIDs(t, r, "web"); !slices.Equal(ids, []string{reg.ID}) {
		t.Fatalf("at the TTL: %v", ids)
	}
	r.clock.Advance(time.Millisecond)
	if ids := passingIDs(t, r, "web"); len(ids) != 0 {
		t.Fatalf("past the TTL: %v", ids)
	}
	sr, _ := r.reg.Service("web")
	var critical []string
	sr.Each(registry.Filter{Status: catalog.StatusCritical}, func(_ int, e registry.Entry) bool {
		critical = append(critical, e.Instance.ID)
		if e.Instance.Status != catalog.StatusPassing {
			t.Fatalf("the catalog says %q", e.Instance.Status)
		}
		return true
	})
	if !slices.Equal(critical, []string{reg.ID}) {
		t.Fatalf("critical: %v", critical)
	}
	sums, _, _ := r.reg.Services()
	if len(sums) != 1 || sums[0].Critical != 1 || sums[0].Passing != 0 {
		t.Fatalf("Services = %+v", sums)
	}

	r.prop.reset()
	if _, status, err := r.reg.Heartbeat(t.Context(), reg.ID, reg.Token); err != nil || status != catalog.StatusPassing {
		t.Fatalf("Heartbeat = %q, %v", status, err)
	}
	if n := len(r.prop.proposed()); n != 0 {
		t.Fatalf("%d commands for the heartbeat of an instance the catalog says is passing", n)
	}
	if ids := passingIDs(t, r, "web"); !slices.Equal(ids, []string{reg.ID}) {
		t.Fatalf("after the heartbeat: %v", ids)
	}
}

// TestRegistry_Service_grace: after an election no instance expires
// before TTL + grace from the moment this node became a ready leader.
func TestRegistry_Service_grace(t *testing.T) {
	const grace = 30 * time.Second
	r := newRig(t, withGrace(grace))
	since := r.clock.Now()
	r.lead.set(true, since)
	r.put(t, catalog.Instance{ID: "old", Service: "web", RegisteredAt: r.clock.Now().Add(-time.Hour).UTC()})
	for _, tc := range []struct {
		after time.Duration
		want  []string
	}{
		{0, []string{"old"}},
		{grace + 10*time.Second, []string{"old"}},
		{grace + 10*time.Second + time.Millisecond, nil},
	} {
		r.clock.Set(since.Add(tc.after))
		if ids := passingIDs(t, r, "web"); !slices.Equal(ids, tc.want) {
			t.Fatalf("%s after the election: %v, want %v", tc.after, ids, tc.want)
		}
	}
}

func TestRegistry_Service(t *testing.T) {
	r := lookupRig(t)
	t.Run("index", func(t *testing.T) {
		sr, err := r.reg.Service("web")
		if err != nil {
			t.Fatal(err)
		}
		if sr.View == nil || sr.View.Name != "web" || sr.Index() != sr.View.Index || sr.Index() == 0 {
			t.Fatalf("view %+v, index %d", sr.View, sr.Index())
		}
		api, _ := r.reg.Service("api")
		if api.Index() <= sr.Index() {
			t.Fatalf("api changed last, at %d; web at %d", api.Index(), sr.Index())
		}
		// A change to the service gives a new view and index; the old
		// read keeps its own.
		if _, _, err := r.reg.Drain(t.Context(), "a", "a"); err != nil {
			t.Fatal(err)
		}
		after, _ := r.reg.Service("web")
		if after.View == sr.View || after.Index() != r.cat.Index() || after.Index() <= sr.Index() {
			t.Fatalf("after a drain: view changed %v, index %d (catalog %d, before %d)", after.View != sr.View, after.Index(), r.cat.Index(), sr.Index())
		}
		if !slices.Equal(passingIDs(t, r, "web"), []string{"b", "f"}) {
			t.Fatalf("after a drain: %v", passingIDs(t, r, "web"))
		}
		n := 0
		sr.Each(registry.Filter{}, func(int, registry.Entry) bool { n++; return true })
		if n != 3 {
			t.Fatalf("the older read changed: %d passing", n)
		}
	})
	t.Run("unknown service", func(t *testing.T) {
		sr, err := r.reg.Service("nope")
		if err != nil || sr.View != nil || sr.Index() != 0 {
			t.Fatalf("Service = %+v, %v", sr, err)
		}
		sr.Each(registry.Filter{Status: registry.StatusAny}, func(int, registry.Entry) bool {
			t.Fatal("yield called for an unknown service")
			return false
		})
	})
	t.Run("not ready", func(t *testing.T) {
		r.notReady()
		defer r.lead.set(true, r.clock.Now().Add(-time.Hour))
		_, err := r.reg.Service("web")
		checkErr(t, err, is(registry.ErrNotReady))
	})
}

func TestRegistry_Services(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		r := newRig(t)
		sums, index, err := r.reg.Services()
		if err != nil || sums == nil || len(sums) != 0 || index != 0 {
			t.Fatalf("Services = %v, %d, %v; want an empty list", sums, index, err)
		}
	})
	t.Run("counts", func(t *testing.T) {
		r := lookupRig(t)
		r.put(t, catalog.Instance{ID: "gone", Service: "old"})
		r.commit(t, catalog.Command{Op: catalog.OpDeregister, ID: "gone"})
		sums, index, err := r.reg.Services()
		if err != nil {
			t.Fatal(err)
		}
		api, _ := r.reg.Service("api")
		web, _ := r.reg.Service("web")
		want := []registry.Summary{
			{Name: "api", Index: api.Index(), Instances: 1, Passing: 1},
			{Name: "web", Index: web.Index(), Instances: 6, Passing: 3, Critical: 2, Draining: 1},
		}
		if !slices.Equal(sums, want) || index != r.cat.Index() {
			t.Fatalf("Services = %+v, %d\nwant %+v, %d", sums, index, want, r.cat.Index())
		}
	})
	t.Run("not ready", func(t *testing.T) {
		r := lookupRig(t)
		r.notReady()
		_, _, err := r.reg.Services()
		checkErr(t, err, is(registry.ErrNotReady))
	})
}
