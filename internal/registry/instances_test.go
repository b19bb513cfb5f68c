package registry_test

import (
	"errors"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// Instances put by these tests have their ID as session token.

func TestRegistry_Heartbeat_errors(t *testing.T) {
	r := newRig(t)
	r.put(t, catalog.Instance{ID: "a", Service: "web"})
	r.put(t, catalog.Instance{ID: "b", Service: "web"})
	for _, tc := range []struct {
		name     string
		notReady bool
		id       string
		token    string
		want     errCheck
	}{
		{"not ready", true, "a", "a", is(registry.ErrNotReady)},
		{"not ready before unknown ID", true, "nope", "", is(registry.ErrNotReady)},
		{"unknown ID", false, "nope", "a", is(registry.ErrInstanceNotFound)},
		{"unknown ID before no token", false, "nope", "", is(registry.ErrInstanceNotFound)},
		{"no token", false, "a", "", is(registry.ErrNoCredential)},
		{"wrong token", false, "a", "guess", is(registry.ErrWrongToken)},
		{"another instance's token", false, "a", "b", is(registry.ErrWrongToken)},
		{"the admin token is not the instance's", false, "a", adminToken, is(registry.ErrWrongToken)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.lead.set(!tc.notReady, r.clock.Now().Add(-time.Hour))
			inst, status, err := r.reg.Heartbeat(t.Context(), tc.id, tc.token)
			checkErr(t, err, tc.want)
			if inst != nil || status != "" {
				t.Fatalf("refused heartbeat returned %v, %q", inst, status)
			}
			if ids := r.tracker().IDs(); len(ids) != 0 {
				t.Fatalf("refused heartbeat was recorded: %v", ids)
			}
		})
	}
	if cmds := r.prop.proposed(); len(cmds) != 0 {
		t.Fatalf("proposed %+v", cmds)
	}
}

// TestRegistry_Heartbeat: a heartbeat is recorded in memory; only a
// critical instance's return to passing is committed.
func TestRegistry_Heartbeat(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   catalog.Status // committed
		draining bool
		old      bool // registered long ago and never heard: critical by TTL
		want     catalog.Status
		proposes bool
	}{
		{"passing stays passing", catalog.StatusPassing, false, false, catalog.StatusPassing, false},
		{"expired by TTL, not yet swept", catalog.StatusPassing, false, true, catalog.StatusPassing, false},
		{"critical comes back", catalog.StatusCritical, false, false, catalog.StatusPassing, true},
		{"draining stays draining", catalog.StatusPassing, true, false, catalog.StatusDraining, false},
		{"critical and draining comes back draining", catalog.StatusCritical, true, false, catalog.StatusDraining, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			inst := catalog.Instance{ID: "a", Service: "web", Status: tc.status}
			if tc.old {
				inst.RegisteredAt = r.clock.Now().Add(-time.Minute).UTC()
			}
			r.put(t, inst)
			if tc.draining {
				r.commit(t, catalog.Command{Op: catalog.OpDrain, ID: "a"})
			}
			if e, _ := r.reg.Instance("a"); tc.old && e.Status != catalog.StatusCritical {
				t.Fatalf("before the heartbeat: %q, want critical", e.Status)
			}
			index := r.cat.Index()
			r.clock.Advance(time.Second)

			got, status, err := r.reg.Heartbeat(t.Context(), "a", "a")
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.want || got == nil || got.ID != "a" || got.TTL != 10*time.Second {
				t.Fatalf("Heartbeat = %+v, %q; want status %q", got, status, tc.want)
			}
			if seen, ok := r.tracker().Seen("a"); !ok || !seen.Equal(r.clock.Now()) {
				t.Fatalf("beat %v %v, want at %v", seen, ok, r.clock.Now())
			}
			cmds := r.prop.proposed()
			if !tc.proposes {
				if len(cmds) != 0 || r.cat.Index() != index {
					t.Fatalf("proposed %+v", cmds)
				}
			} else {
				want := catalog.Command{Op: catalog.OpSetStatus, ID: "a", Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical, Reason: "heartbeat"}
				if len(cmds) != 1 || cmds[0].Op != want.Op || cmds[0].ID != want.ID || cmds[0].Status != want.Status ||
					cmds[0].IfStatus != want.IfStatus || cmds[0].Reason != want.Reason {
					t.Fatalf("proposed %+v, want %+v", cmds, want)
				}
			}
			stored, _ := r.cat.Instance("a")
			if stored.Status != catalog.StatusPassing || stored.Draining != tc.draining {
				t.Fatalf("catalog holds %s (draining %v)", stored.Status, stored.Draining)
			}
			if e, _ := r.reg.Instance("a"); e.Status != tc.want || e.Age != 0 {
				t.Fatalf("after the heartbeat a reader sees %q, age %s", e.Status, e.Age)
			}
		})
	}
}

// TestRegistry_Heartbeat_race: what a critical instance's heartbeat
// answers when another write reaches the instance first.
func TestRegistry_Heartbeat_race(t *testing.T) {
	for _, tc := range []struct {
		name   string
		first  catalog.Command
		want   errCheck
		status catalog.Status
	}{
		{"another heartbeat brought it back", catalog.Command{Op: catalog.OpSetStatus, ID: "a", Status: catalog.StatusPassing}, nil, catalog.StatusPassing},
		{"it was drained", catalog.Command{Op: catalog.OpDrain, ID: "a"}, nil, catalog.StatusDraining},
		// The heartbeat's documented errors hold even when the sweep
		// removes the instance between the lookup and the commit: the
		// instance must hear "register again" (ErrInstanceNotFound, which
		// the tutorial protocol answers 400), not the catalog's
		// ErrNotFound.
		{"the sweep removed it", catalog.Command{Op: catalog.OpDeregister, ID: "a"}, is(registry.ErrInstanceNotFound), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.put(t, catalog.Instance{ID: "a", Service: "web", Status: catalog.StatusCritical})
			var once bool
			r.prop.setBefore(func(cmd catalog.Command) {
				if cmd.Op == catalog.OpSetStatus && !once {
					once = true
					r.commit(t, tc.first)
				}
			})
			_, status, err := r.reg.Heartbeat(t.Context(), "a", "a")
			checkErr(t, err, tc.want)
			if err == nil && status != tc.status {
				t.Fatalf("status %q, want %q", status, tc.status)
			}
		})
	}
}

// ownerCases are the callers of Drain and Deregister: the holder of the
// session token or of the admin token, and the others.
func ownerCases() []struct {
	name     string
	notReady bool
	id       string
	token    string
	want     errCheck
} {
	return []struct {
		name     string
		notReady bool
		id       string
		token    string
		want     errCheck
	}{
		{"not ready", true, "a", "a", is(registry.ErrNotReady)},
		{"unknown ID", false, "nope", adminToken, is(registry.ErrInstanceNotFound)},
		{"unknown ID before no token", false, "nope", "", is(registry.ErrInstanceNotFound)},
		{"no token", false, "a", "", is(registry.ErrNoCredential)},
		{"wrong token", false, "a", "guess", is(registry.ErrWrongToken)},
		{"another instance's token", false, "a", "b", is(registry.ErrWrongToken)},
		{"session token", false, "a", "a", nil},
		{"admin token", false, "a", adminToken, nil},
	}
}

func TestRegistry_Drain(t *testing.T) {
	for _, tc := range ownerCases() {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.put(t, catalog.Instance{ID: "a", Service: "web"})
			r.put(t, catalog.Instance{ID: "b", Service: "web"})
			if tc.notReady {
				r.notReady()
			}
			inst, status, err := r.reg.Drain(t.Context(), tc.id, tc.token)
			checkErr(t, err, tc.want)
			stored, _ := r.cat.Instance("a")
			if err != nil {
				if inst != nil || status != "" || stored.Draining || len(r.prop.proposed()) != 0 {
					t.Fatalf("refused drain: %v %q, draining %v, proposed %v", inst, status, stored.Draining, r.prop.proposed())
				}
				return
			}
			if inst == nil || inst.ID != "a" || status != catalog.StatusDraining || !stored.Draining {
				t.Fatalf("Drain = %+v, %q; catalog draining %v", inst, status, stored.Draining)
			}
			cmds := r.prop.proposed()
			if len(cmds) != 1 || cmds[0].Op != catalog.OpDrain || cmds[0].ID != "a" || cmds[0].Reason != "api" {
				t.Fatalf("proposed %+v", cmds)
			}
			// Readers see it draining; it leaves default lookups, and its
			// heartbeats say so.
			if e, _ := r.reg.Instance("a"); e.Status != catalog.StatusDraining {
				t.Fatalf("Instance status %q", e.Status)
			}
			if ids := passingIDs(t, r, "web"); len(ids) != 1 || ids[0] != "b" {
				t.Fatalf("default lookup returns %v", ids)
			}
			if _, status, err := r.reg.Heartbeat(t.Context(), "a", "a"); err != nil || status != catalog.StatusDraining {
				t.Fatalf("heartbeat after drain: %q %v", status, err)
			}
			// Draining again changes nothing.
			if _, status, err := r.reg.Drain(t.Context(), "a", "a"); err != nil || status != catalog.StatusDraining {
				t.Fatalf("second drain: %q %v", status, err)
			}
		})
	}

	t.Run("critical instance", func(t *testing.T) {
		r := newRig(t)
		r.put(t, catalog.Instance{ID: "a", Service: "web", Status: catalog.StatusCritical})
		if _, status, err := r.reg.Drain(t.Context(), "a", "a"); err != nil || status != catalog.StatusCritical {
			t.Fatalf("Drain = %q, %v; want critical", status, err)
		}
	})
	t.Run("removed meanwhile", func(t *testing.T) {
		r := newRig(t)
		r.put(t, catalog.Instance{ID: "a", Service: "web"})
		r.prop.setBefore(func(cmd catalog.Command) { r.commit(t, catalog.Command{Op: catalog.OpDeregister, ID: "a"}) })
		_, _, err := r.reg.Drain(t.Context(), "a", "a")
		checkErr(t, err, is(catalog.ErrNotFound))
	})
}

func TestRegistry_Deregister(t *testing.T) {
	for _, tc := range ownerCases() {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.put(t, catalog.Instance{ID: "a", Service: "web"})
			r.put(t, catalog.Instance{ID: "b", Service: "web"})
			r.live.Beat("a", r.clock.Now())
			if tc.notReady {
				r.notReady()
			}
			index, err := r.reg.Deregister(t.Context(), tc.id, tc.token)
			checkErr(t, err, tc.want)
			_, stored := r.cat.Instance("a")
			_, heard := r.tracker().Seen("a")
			if err != nil {
				if index != 0 || !stored || !heard || len(r.prop.proposed()) != 0 {
					t.Fatalf("refused deregistration: index %d, stored %v, heard %v, proposed %v", index, stored, heard, r.prop.proposed())
				}
				return
			}
			if stored || heard || index == 0 || index != r.cat.Index() {
				t.Fatalf("Deregister = %d (catalog at %d); still stored %v, still heard %v", index, r.cat.Index(), stored, heard)
			}
			cmds := r.prop.proposed()
			if len(cmds) != 1 || cmds[0].Op != catalog.OpDeregister || cmds[0].ID != "a" || cmds[0].Reason != "api" || cmds[0].IfStatus != "" {
				t.Fatalf("proposed %+v", cmds)
			}
			if _, _, err := r.reg.Heartbeat(t.Context(), "a", "a"); !errors.Is(err, registry.ErrInstanceNotFound) {
				t.Fatalf("heartbeat after deregistration: %v", err)
			}
			if _, err := r.reg.Deregister(t.Context(), "a", "a"); !errors.Is(err, registry.ErrInstanceNotFound) {
				t.Fatalf("second deregistration: %v", err)
			}
			if _, ok := r.cat.Instance("b"); !ok {
				t.Fatal("the other instance went too")
			}
		})
	}

	t.Run("removed meanwhile", func(t *testing.T) {
		r := newRig(t)
		r.put(t, catalog.Instance{ID: "a", Service: "web"})
		r.prop.setBefore(func(cmd catalog.Command) { r.commit(t, catalog.Command{Op: catalog.OpDeregister, ID: "a"}) })
		_, err := r.reg.Deregister(t.Context(), "a", "a")
		checkErr(t, err, is(catalog.ErrNotFound))
	})
}

func TestRegistry_Instance(t *testing.T) {
	r := newRig(t)
	r.put(t, catalog.Instance{ID: "a", Service: "web"})
	r.put(t, catalog.Instance{ID: "b", Service: "web"})
	r.live.Beat("b", r.clock.Now())
	r.clock.Advance(2 * time.Second)

	for _, tc := range []struct {
		name     string
		notReady bool
		id       string
		want     errCheck
		age      time.Duration
		quality  bool // > 0
	}{
		{"not ready", true, "a", is(registry.ErrNotReady), 0, false},
		{"unknown", false, "nope", is(registry.ErrInstanceNotFound), 0, false},
		{"never heard", false, "a", nil, -1, false},
		{"heard 2s ago", false, "b", nil, 2 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.lead.set(!tc.notReady, r.clock.Now().Add(-time.Hour))
			e, err := r.reg.Instance(tc.id)
			checkErr(t, err, tc.want)
			if err != nil {
				if e.Instance != nil {
					t.Fatalf("refused lookup returned %+v", e)
				}
				return
			}
			stored, _ := r.cat.Instance(tc.id)
			if e.Instance != stored || e.Status != catalog.StatusPassing || e.Age != tc.age || (e.Quality > 0) != tc.quality {
				t.Fatalf("Entry %+v", e)
			}
		})
	}
}

// passingIDs returns the IDs a default lookup of service returns.
func passingIDs(tb testing.TB, r *rig, service string) []string {
	tb.Helper()
	sr, err := r.reg.Service(service)
	if err != nil {
		tb.Fatal(err)
	}
	var ids []string
	sr.Each(registry.Filter{}, func(_ int, e registry.Entry) bool {
		ids = append(ids, e.Instance.ID)
		return true
	})
	return ids
}

// TestRegistry_Heartbeats_matchesHeartbeat: a batch judges each beat as
// Heartbeat judges it alone: two registries holding the same catalog,
// one given the beats one at a time and the other as one batch, answer
// alike, and end with the same statuses and the same beats recorded.
func TestRegistry_Heartbeats_matchesHeartbeat(t *testing.T) {
	setup := func(t *testing.T) *rig {
		r := newRig(t)
		r.put(t, catalog.Instance{ID: "a", Service: "web"})
		r.put(t, catalog.Instance{ID: "b", Service: "web", Status: catalog.StatusCritical})
		r.put(t, catalog.Instance{ID: "c", Service: "web"})
		r.commit(t, catalog.Command{Op: catalog.OpDrain, ID: "c"})
		r.put(t, catalog.Instance{ID: "d", Service: "db", Status: catalog.StatusCritical})
		r.commit(t, catalog.Command{Op: catalog.OpDrain, ID: "d"})
		r.clock.Advance(time.Second)
		return r
	}
	beats := []api.Beat{
		{ID: "a", Token: "a"}, {ID: "b", Token: "b"}, {ID: "c", Token: "c"}, {ID: "d", Token: "d"},
		{ID: "nope", Token: "a"}, {ID: "a", Token: ""}, {ID: "a", Token: "b"}, {ID: "b", Token: adminToken},
		{ID: "a", Token: "a"}, // twice in one batch
	}
	one, batch := setup(t), setup(t)
	out := make([]registry.BeatResult, len(beats))
	if err := batch.reg.Heartbeats(t.Context(), beats, out); err != nil {
		t.Fatal(err)
	}
	for i, b := range beats {
		inst, status, err := one.reg.Heartbeat(t.Context(), b.ID, b.Token)
		got := out[i]
		if (err == nil) != (got.Err == nil) || err != nil && err.Error() != got.Err.Error() || status != got.Status ||
			(inst == nil) != (got.Inst == nil) || inst != nil && inst.ID != got.Inst.ID {
			t.Errorf("beat %d %+v: alone %v %q %v; in a batch %v %q %v", i, b, inst, status, err, got.Inst, got.Status, got.Err)
		}
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		x, _ := one.reg.Instance(id)
		y, _ := batch.reg.Instance(id)
		if x.Status != y.Status {
			t.Errorf("%s: %q after single beats, %q after the batch", id, x.Status, y.Status)
		}
		sx, okx := one.tracker().Seen(id)
		sy, oky := batch.tracker().Seen(id)
		if okx != oky || sx.Sub(one.clock.Now()) != sy.Sub(batch.clock.Now()) { // each rig has its own clock
			t.Errorf("%s: seen %v %v after single beats, %v %v after the batch", id, sx, okx, sy, oky)
		}
	}
	if n := len(batch.prop.proposed()); n != 2 {
		t.Errorf("the batch proposed %d commands, want the 2 returns from critical", n)
	}

	// Not ready: the batch is refused whole and nothing is recorded.
	r := setup(t)
	r.lead.set(false, r.clock.Now())
	out = make([]registry.BeatResult, 1)
	if err := r.reg.Heartbeats(t.Context(), beats[:1], out); !errors.Is(err, registry.ErrNotReady) {
		t.Fatalf("not ready: %v", err)
	}
	if ids := r.tracker().IDs(); len(ids) != 0 {
		t.Fatalf("a refused batch was recorded: %v", ids)
	}
}
