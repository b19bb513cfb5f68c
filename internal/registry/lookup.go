package registry

import (
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/checks"
	"github.com/musterhq/muster/internal/health"
)

// StatusAny in a Filter selects instances whatever their status.
const StatusAny catalog.Status = "any"

// Filter selects instances of a service.
type Filter struct {
	// Tags the instance must all carry.
	Tags []string
	// Meta entries ("key:value") the instance must all have.
	Meta []string
	// Status the instance must have now (its effective status), or
	// StatusAny; "" means catalog.StatusPassing.
	Status catalog.Status
}

// Entry is one instance as a reader sees it now: its effective status
// (the one rule of package health, the same as the sweep's) and its
// freshness.
type Entry struct {
	Instance *catalog.Instance
	Status   catalog.Status
	// Age is the time since the last heartbeat this node heard; negative
	// when it has heard none since it became leader.
	Age time.Duration
	// Quality in [0,1] is how far the instance's liveness can be trusted.
	Quality float64
	// Checks are the states of its active health checks (nil when it
	// declares none).
	Checks []api.CheckState
}

func entry(live *health.Liveness, mon *checks.Monitor, inst *catalog.Instance, floor, now time.Time) Entry {
	st, f := live.View(inst, floor, now)
	return entryOf(mon, inst, st, f)
}

// entryOf completes the Entry of inst, whose status and freshness are st
// and f.
func entryOf(mon *checks.Monitor, inst *catalog.Instance, st catalog.Status, f health.Freshness) Entry {
	e := Entry{Instance: inst, Status: st, Age: f.Age, Quality: f.Quality}
	if len(inst.Checks) > 0 {
		e.Checks = checkStates(mon, inst)
		if inst.TTL == 0 {
			checkFreshness(&e)
		}
	}
	return e
}

// checkStates are the states of inst's declared checks: the Monitor's,
// or, where no Monitor holds it (a follower, which runs none; the
// leader's Monitor before it has taken a new instance up), each check
// as a Monitor starts it, at the instance's committed status and never
// run (LastRunMS -1): a reader always sees the checks an instance
// declared.
func checkStates(mon *checks.Monitor, inst *catalog.Instance) []api.CheckState {
	if mon != nil {
		if states := mon.States(inst.ID); states != nil {
			return states
		}
	}
	status := api.StatusPassing
	if inst.Status == catalog.StatusCritical {
		status = api.StatusCritical
	}
	out := make([]api.CheckState, len(inst.Checks))
	for i, c := range inst.Checks {
		out[i] = api.CheckState{Type: c.Type, Status: status, LastRunMS: -1}
	}
	return out
}

// checkFreshness gives a check-only instance (TTL 0, which never
// heartbeats) the freshness its checks show: last seen at its latest
// probe, and a quality of 1 while it is passing and every check has been
// probed and passes, else 0.
func checkFreshness(e *Entry) {
	e.Age, e.Quality = -1, 0
	all := e.Status != catalog.StatusCritical
	for _, c := range e.Checks {
		if c.LastRunMS >= 0 && (e.Age < 0 || time.Duration(c.LastRunMS)*time.Millisecond < e.Age) {
			e.Age = time.Duration(c.LastRunMS) * time.Millisecond
		}
		if c.LastRunMS < 0 || c.Status != api.StatusPassing {
			all = false
		}
	}
	if all {
		e.Quality = 1
	}
}

// ServiceRead is one service as read at one moment: an immutable view of
// its instances and the floor and time their liveness is judged by.
type ServiceRead struct {
	// View is the catalog's view of the service, nil if the service has
	// never had an instance. Its pointer changes with every change to the
	// service, so front ends may key caches by it.
	View *catalog.ServiceView
	// Evicted are the bars of evictions on the service's endpoints that
	// have not ended: endpoints an operator keeps out, and until when.
	Evicted []*catalog.Bar
	live    *health.Liveness
	mon     *checks.Monitor // nil when no checks run
	floor   time.Time
	now     time.Time
}

// Protection reports whether mass-expiry protection held expiries at the
// moment of this read: the statuses Each yields were judged under it, so
// an answer built from this read should say so. False for a zero
// ServiceRead.
func (s *ServiceRead) Protection() bool {
	return s.live != nil && s.live.Protecting(s.floor, s.now)
}

// Index returns the service's index (0 for a service never seen).
func (s *ServiceRead) Index() uint64 {
	if s.View == nil {
		return 0
	}
	return s.View.Index
}

// Each calls yield for every instance that passes f, in ID order, until
// yield returns false; i is the instance's position in View.Instances. It reads the heartbeat tracker once per instance
// that passes the tag and meta filters, and allocates nothing.
func (s *ServiceRead) Each(f Filter, yield func(i int, e Entry) bool) {
	if s.View == nil {
		return
	}
	want := f.Status
	if want == "" {
		want = catalog.StatusPassing
	}
	var rs *health.Records
	for i, inst := range s.View.Instances {
		if !inst.HasTags(f.Tags) || !inst.HasMeta(f.Meta) {
			continue
		}
		if rs == nil {
			rs = s.live.Records(s.View)
		}
		st, fr := s.live.ViewAt(rs, i, s.floor, s.now)
		e := entryOf(s.mon, inst, st, fr)
		if want != StatusAny && e.Status != want {
			continue
		}
		if !yield(i, e) {
			return
		}
	}
}

// Service returns the service name as read now, served from memory with
// no disk and no Raft round trip. Errors: ErrNotReady.
func (r *Registry) Service(name string) (ServiceRead, error) {
	floor, ok := r.live.Floor()
	if !ok {
		return ServiceRead{}, ErrNotReady
	}
	now := r.now()
	sr := ServiceRead{View: r.cat.Service(name), live: r.live, mon: r.monitor.Load(), floor: floor, now: now}
	if sr.View != nil && len(sr.View.Bars) > 0 {
		for _, b := range sr.View.Bars {
			if b.Until.After(now) {
				sr.Evicted = append(sr.Evicted, b)
			}
		}
	}
	return sr, nil
}

// Summary is one service in the service list.
type Summary struct {
	Name      string
	Index     uint64
	Instances int
	Passing   int
	Critical  int
	Draining  int
}

// Count counts one more instance, of status st.
func (s *Summary) Count(st catalog.Status) {
	s.Instances++
	switch st {
	case catalog.StatusPassing:
		s.Passing++
	case catalog.StatusCritical:
		s.Critical++
	case catalog.StatusDraining:
		s.Draining++
	}
}

// Services returns every service that has instances, sorted by name, with
// counts by effective status, and the catalog's index. Errors: ErrNotReady.
func (r *Registry) Services() ([]Summary, uint64, error) {
	floor, ok := r.live.Floor()
	if !ok {
		return nil, 0, ErrNotReady
	}
	now := r.now()
	index := r.cat.Index()
	out := []Summary{}
	for _, v := range r.cat.Services() {
		if len(v.Instances) == 0 {
			continue
		}
		s := Summary{Name: v.Name, Index: v.Index}
		for _, inst := range v.Instances {
			s.Count(r.live.Status(inst, floor, now))
		}
		out = append(out, s)
	}
	return out, index, nil
}

// Protection reports whether mass-expiry protection holds expiries now:
// a large share of the catalog fell silent at once, and until heartbeats
// come back (or the hold's bound passes) no reader sees those instances
// critical and the sweep does not expire them. False when this node is
// not a ready leader. It costs one atomic load: front ends may call it on
// every answer and every stream event.
func (r *Registry) Protection() bool {
	floor, ok := r.live.Floor()
	return ok && r.live.Protecting(floor, r.now())
}

// ProtectionChanged returns a channel closed the next time mass-expiry
// protection starts or ends; then ask Protection again.
func (r *Registry) ProtectionChanged() <-chan struct{} { return r.live.ProtectionChanged() }

// ProtectionState is mass-expiry protection as an operator sees it.
type ProtectionState struct {
	// Active reports whether expiries are held now.
	Active bool
	// Since is when the latest hold began, and Until the bound past which
	// none of its expiries waits; zero when there has been none since
	// this node last became leader (or resumed from a pause).
	Since, Until time.Time
	// Overdue of Live instances were counted when the hold last started,
	// resumed or ended.
	Overdue, Live int
	// Activations counts the times protection turned on since this
	// process started.
	Activations uint64
	// CooldownUntil is, once the latest hold is over, when a new one may
	// begin; zero when none is waited for.
	CooldownUntil time.Time
}

// ProtectionState returns the state of mass-expiry protection. On a node
// that is not a ready leader only Activations is set.
func (r *Registry) ProtectionState() ProtectionState {
	floor, ok := r.live.Floor()
	if !ok {
		return ProtectionState{Activations: r.live.Protection(time.Time{}, time.Time{}).Activations}
	}
	p := r.live.Protection(floor, r.now())
	st := ProtectionState{Active: p.Active, Since: p.Since, Until: p.Until, Overdue: p.Overdue, Live: p.Live, Activations: p.Activations}
	if p.CooldownUntil.After(r.now()) {
		st.CooldownUntil = p.CooldownUntil
	}
	return st
}

// Intervals returns the gaps between the instance's last heartbeats that
// this node heard, oldest first: what its quality is computed from.
func (r *Registry) Intervals(id string) []time.Duration { return r.live.Tracker().Intervals(id) }

// Recent returns the newest changes to the service still in this
// server's event history, at most max, newest first.
func (r *Registry) Recent(service string, max int) []*catalog.Event {
	return r.cat.Recent(service, max)
}
