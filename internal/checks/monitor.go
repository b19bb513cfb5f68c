package checks

import (
	"container/heap"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/verify"
)

// Config configures a Monitor.
type Config struct {
	// Concurrency bounds the probes in flight at once. When every slot is
	// taken, due probes wait for one, in order of their due times.
	Concurrency int
	// MinInterval is the shortest check interval Set accepts; zero is
	// MinInterval (1s). Tests lower it; a Monitor accepts any timeout
	// from 1ms up to the interval, so that they can lower those too.
	MinInterval time.Duration
	// Roots, when set, returns the CA bundle an https instance's
	// certificate must chain to for its HTTP and gRPC checks to pass: the
	// registry's --verify-ca, the verify callback's own (verify.Config's
	// Roots); nil, or a nil pool, trusts the system's roots. It is called
	// for each such probe, so it must be cheap and safe for concurrent
	// use.
	Roots func() *x509.CertPool
	// Vouches, when set, is asked before each probe of a target with
	// AnyCertificate whether its Owner still vouches for its
	// certificates (the registry: the instance's key is neither revoked
	// nor expired); when it says no, the certificate is judged as any
	// other's.
	Vouches func(owner string) bool
}

// DefaultConfig returns the production settings: 64 probes at once.
func DefaultConfig() Config {
	return Config{Concurrency: 64, MinInterval: MinInterval}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Concurrency < 1 || c.Concurrency > 4096 {
		return errors.New("checks: concurrency must be between 1 and 4096")
	}
	if c.MinInterval < 0 || c.MinInterval > MinInterval {
		return fmt.Errorf("checks: min interval must be between 0 (the default) and %s", MinInterval)
	}
	return nil
}

// ErrRan means Run was called on a Monitor that has already run: a
// Monitor serves one leadership term.
var ErrRan = errors.New("checks: monitor already ran; make a new one for each term")

// ErrNotAllowed means a target's address is outside the networks probes
// may reach. It is verify.ErrNotAllowed, so that a registry maps it as it
// maps a refused callback address.
var ErrNotAllowed = verify.ErrNotAllowed

// Target is an instance to probe: where it is and what to ask it.
type Target struct {
	// ID is the instance's ID.
	ID string
	// Address is the instance's advertised address, an IP address or a
	// host name; every check connects to it and to nothing else.
	Address string
	// Port is the instance's port, where checks without a port connect.
	Port int
	// Scheme is the instance's scheme; "" is api.DefaultScheme. The HTTP
	// and gRPC checks of an https instance speak TLS (see tls.go).
	Scheme string
	// ServerName is the name an https instance's certificate must be
	// valid for, which the TLS handshake asks for (and the Host header
	// names): the instance's advertised host name, when Address is the
	// IP address it resolved to. Empty is Address; an IP address is
	// checked against the certificate's IP addresses.
	ServerName string
	// AnyCertificate accepts whatever certificate an https instance
	// presents, for an instance whose enrolment key asked for it
	// (callback_tls any), as its verify callback does.
	AnyCertificate bool
	// Checks are the instance's checks, from Parse.
	Checks []Check
	// Status is the instance's committed status (api.StatusPassing or
	// api.StatusCritical; "" is passing). Its checks start there; see the
	// package documentation for why.
	Status string
	// Owner is who answers for the target (its enrolment key): the probe
	// slots are shared fairly among owners, so that one owner's targets
	// that hang until their timeout cannot hold every slot.
	Owner string
}

// Transition is a change of an instance's aggregate check status: every
// check passing (api.StatusPassing), or any critical (api.StatusCritical).
type Transition struct {
	ID     string
	Status string
}

// Monitor probes targets on schedule and keeps each check's state in
// memory. It reports only transitions of a target's aggregate status
// (Pending), which the caller turns into status commands. It is safe for
// concurrent use.
//
// One goroutine, Run's, schedules every probe from a heap of due times,
// and each probe runs in a goroutine of its own that exists only while
// the probe is in flight, at most Config.Concurrency at once. An idle
// Monitor has no goroutine but Run's, asleep on one timer; its work is
// proportional to the probes due, not to the number of targets.
//
// A Monitor serves one leadership term: Run it on the leader, cancel its
// context when leadership is lost, and make a new Monitor, fed from the
// catalog, for the next term. The in-memory state of the old term (the
// counters, the outputs) is dropped with it: the catalog's committed
// status is where the new term's checks start.
type Monitor struct {
	cfg    Config
	guard  Guard
	prober *prober

	// mu guards everything below, and the state of every check and
	// target reachable from it; a check's spec and its target's Target
	// never change after Set, and a probe reads them without it. Probes
	// never run under it.
	mu      sync.RWMutex
	targets map[string]*target
	due     schedule
	// pending holds the targets whose aggregate status differs from the
	// one the caller last acknowledged.
	pending map[string]*target
	ran     bool

	// wake tells Run that the earliest due time may have moved earlier.
	wake chan struct{}
	// changes tells the caller that Pending may hold more.
	changes chan struct{}

	// inflight counts the probes in flight by owner (guarded by mu).
	inflight map[string]int
}

// MinShare is the least share of the probe slots an owner is held to:
// an owner's share is the slots divided among the owners with probes in
// flight, plus one for a newcomer, and never less than this.
const MinShare = 4

// deferStep is how long a due probe whose owner holds its share waits
// before it is looked at again.
const deferStep = 50 * time.Millisecond

// share reports whether owner may start one more probe. m.mu must be
// held.
func (m *Monitor) share(owner string) bool {
	held := m.inflight[owner]
	owners := len(m.inflight)
	if held == 0 {
		owners++
	}
	return held < max(MinShare, m.cfg.Concurrency/(owners+1))
}

// target is a Target with the state of its checks.
type target struct {
	Target
	checks []*check
	// agg is StatusPassing if every check passes, else StatusCritical.
	agg string
	// acked is the aggregate status the caller last acknowledged (Ack),
	// at first Target.Status.
	acked string
	// removed is set when the target leaves the Monitor, so that a probe
	// in flight drops its result.
	removed bool
}

// check is one check of a target, with its state.
type check struct {
	t    *target
	spec Check
	// idx is the check's place in the heap, -1 while a probe of it is in
	// flight (or the target is removed).
	idx int
	due time.Time

	status              string
	successes, failures int
	output              string
	lastRun             time.Time // zero until the first probe
}

// NewMonitor returns a Monitor whose probes connect only where guard
// allows (the verify callback's *verify.Verifier).
func NewMonitor(cfg Config, guard Guard) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if guard == nil {
		return nil, errors.New("checks: a guard is required")
	}
	if cfg.MinInterval == 0 {
		cfg.MinInterval = MinInterval
	}
	return &Monitor{
		cfg:      cfg,
		guard:    guard,
		prober:   newProber(guard, cfg.Roots),
		targets:  make(map[string]*target),
		pending:  make(map[string]*target),
		inflight: make(map[string]int),
		wake:     make(chan struct{}, 1),
		changes:  make(chan struct{}, 1),
	}, nil
}

// Set adds t, or replaces the target with its ID. A target equal to the
// one held (same address, port, scheme and checks) keeps its state, so
// that a caller may Set every instance again whenever the catalog
// changes; t.Status is then ignored. A target with no checks is removed.
// A new or changed target's checks start at t.Status, and the first
// probe of each is at a random time within its interval, so that many
// targets set at once do not probe together.
//
// Errors: a *FieldError for a malformed target or check; ErrNotAllowed
// for an IP address outside the allowlist (a host name is checked at
// every dial instead).
func (m *Monitor) Set(t Target) error {
	if len(t.Checks) == 0 {
		m.Remove(t.ID)
		return nil
	}
	// A caller re-sets every instance of a service at each change of it:
	// the common case is an unchanged target, answered under the read
	// lock without building anything.
	m.mu.RLock()
	old, ok := m.targets[t.ID]
	same := ok && old.same(t)
	m.mu.RUnlock()
	if same {
		return nil
	}
	if err := m.validate(t); err != nil {
		return err
	}
	t.Checks = slices.Clone(t.Checks)
	status := api.StatusPassing
	if t.Status == api.StatusCritical {
		status = api.StatusCritical
	}
	t.Status = status
	nt := &target{Target: t, agg: status, acked: status}
	now := time.Now()
	for _, c := range t.Checks {
		nt.checks = append(nt.checks, &check{t: nt, spec: c, idx: -1, status: status, due: now.Add(jitter(c.Interval))})
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.targets[t.ID]; ok {
		if old.same(t) {
			return nil // set by another caller meanwhile
		}
		m.drop(old)
	}
	m.targets[t.ID] = nt
	first := false
	for _, c := range nt.checks {
		heap.Push(&m.due, c)
		first = first || c.idx == 0
	}
	if first {
		signal(m.wake)
	}
	return nil
}

// same reports whether t probes what this target probes, the same way.
func (t *target) same(o Target) bool {
	return t.Address == o.Address && t.Port == o.Port && t.Scheme == o.Scheme && t.ServerName == o.ServerName &&
		t.AnyCertificate == o.AnyCertificate && t.Owner == o.Owner && slices.Equal(t.Checks, o.Checks)
}

// validate checks a target with this Monitor's lower bounds.
func (m *Monitor) validate(t Target) error {
	switch {
	case t.ID == "":
		return badField("id", "id is required")
	case t.Address == "":
		return badField("address", "address is required")
	case t.Port < 1 || t.Port > 65535:
		return badField("port", "port must be between 1 and 65535")
	case t.Status != "" && t.Status != api.StatusPassing && t.Status != api.StatusCritical:
		return badField("status", "status must be passing or critical")
	case len(t.Checks) > MaxChecks:
		return badField("checks", "at most %d checks per instance", MaxChecks)
	}
	for i, c := range t.Checks {
		err := c.validate(m.cfg.MinInterval, time.Millisecond)
		if err == nil {
			err = c.supports(t.Scheme)
		}
		if err != nil {
			fe := err.(*FieldError)
			return badField(fmt.Sprintf("checks[%d].%s", i, fe.Field), "%s", fe.Message)
		}
	}
	if ip, err := netip.ParseAddr(t.Address); err == nil && !m.guard.Allowed(ip) {
		return fmt.Errorf("%w: %s", ErrNotAllowed, t.Address)
	}
	return nil
}

// Remove forgets the target with id, if there is one. A probe of it in
// flight finishes, and its result is dropped.
func (m *Monitor) Remove(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.targets[id]; ok {
		m.drop(t)
	}
}

// drop takes t out of every structure. m.mu must be held.
func (m *Monitor) drop(t *target) {
	t.removed = true
	for _, c := range t.checks {
		if c.idx >= 0 {
			heap.Remove(&m.due, c.idx)
		}
	}
	delete(m.targets, t.ID)
	delete(m.pending, t.ID)
}

// States returns the state of each check of the target with id, in the
// order declared, for lookups; nil if the Monitor holds no such target.
// LastRunMS is measured to now.
func (m *Monitor) States(id string) []api.CheckState {
	now := time.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.targets[id]
	if !ok {
		return nil
	}
	out := make([]api.CheckState, len(t.checks))
	for i, c := range t.checks {
		age := int64(-1)
		if !c.lastRun.IsZero() {
			age = now.Sub(c.lastRun).Milliseconds()
		}
		out[i] = api.CheckState{Type: c.spec.Type, Status: c.status, Output: c.output, LastRunMS: age}
	}
	return out
}

// Passing reports whether every check of the target with id passes, and
// whether the Monitor holds such a target. The heartbeat path asks it
// before it revives a critical instance: an instance without a target
// here has no checks to hold it back.
func (m *Monitor) Passing(id string) (passing, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.targets[id]
	if !ok {
		return false, false
	}
	return t.agg == api.StatusPassing, true
}

// Pending returns, sorted by ID, the targets whose aggregate check status
// differs from the one last acknowledged (Ack), with their current
// aggregate. A transition stays pending until it is acknowledged or the
// aggregate returns to the acknowledged status, so a caller whose
// proposal failed simply tries again later: nothing is lost.
func (m *Monitor) Pending() []Transition {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Transition, 0, len(m.pending))
	for id, t := range m.pending {
		out = append(out, Transition{ID: id, Status: t.agg})
	}
	slices.SortFunc(out, func(a, b Transition) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Changes returns a channel that receives a value when Pending may have
// grown. Values coalesce: one value may stand for many transitions, and
// a receiver must call Pending to learn them.
func (m *Monitor) Changes() <-chan struct{} { return m.changes }

// Ack records that the caller has acted on tr: proposed its status and
// had it committed, found the catalog already there (a conflict), or
// decided that no command is needed (a recovered check of an instance
// whose heartbeat is stale). Ack of a status the aggregate has since left
// makes the current aggregate pending again, so that the catalog follows
// it. An Ack for an unknown target does nothing.
func (m *Monitor) Ack(tr Transition) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.targets[tr.ID]
	if !ok || (tr.Status != api.StatusPassing && tr.Status != api.StatusCritical) {
		return
	}
	t.acked = tr.Status
	m.settle(t)
}

// settle puts t in pending, or takes it out, after its agg or acked
// changed. m.mu must be held.
func (m *Monitor) settle(t *target) {
	if t.agg == t.acked {
		delete(m.pending, t.ID)
		return
	}
	if _, ok := m.pending[t.ID]; !ok {
		m.pending[t.ID] = t
		signal(m.changes)
	}
}

// Run probes the targets on schedule until ctx ends, then waits for the
// probes in flight, whose results it drops, and returns ctx's error. The
// first probe of each check held before Run is at a random time within
// its interval from Run's start. Run may be called once (ErrRan).
func (m *Monitor) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.ran {
		m.mu.Unlock()
		return ErrRan
	}
	m.ran = true
	now := time.Now()
	for _, c := range m.due {
		c.due = now.Add(jitter(c.spec.Interval))
	}
	heap.Init(&m.due)
	m.mu.Unlock()

	slots := make(chan struct{}, m.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		c, t, start := m.next(ctx, timer)
		if c == nil {
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-slots }()
			defer m.done(t.Owner)
			m.run(ctx, c, t, start)
		})
	}
}

// next waits for the earliest due check, takes it off the heap and
// returns it with a copy of its target's address, port and TLS
// settings; nil when ctx ends.
func (m *Monitor) next(ctx context.Context, timer *time.Timer) (*check, Target, time.Time) {
	for {
		m.mu.Lock()
		now := time.Now()
		wait := time.Hour
		for len(m.due) > 0 {
			c := m.due[0]
			if c.due.After(now) {
				wait = c.due.Sub(now)
				break
			}
			if !m.share(c.t.Owner) {
				// Its owner holds its share of the slots: the probe waits,
				// and others' probes go first.
				c.due = now.Add(deferStep)
				heap.Fix(&m.due, 0)
				continue
			}
			heap.Pop(&m.due)
			m.inflight[c.t.Owner]++
			t := Target{ID: c.t.ID, Address: c.t.Address, Port: c.t.Port, Scheme: c.t.Scheme,
				ServerName: c.t.ServerName, AnyCertificate: c.t.AnyCertificate, Owner: c.t.Owner}
			m.mu.Unlock()
			if t.AnyCertificate && m.cfg.Vouches != nil {
				t.AnyCertificate = m.cfg.Vouches(t.Owner)
			}
			return c, t, now
		}
		m.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-m.wake:
		case <-ctx.Done():
			return nil, Target{}, time.Time{}
		}
	}
}

// done counts the end of a probe of owner's.
func (m *Monitor) done(owner string) {
	m.mu.Lock()
	if m.inflight[owner]--; m.inflight[owner] <= 0 {
		delete(m.inflight, owner)
	}
	m.mu.Unlock()
}

// run probes c once and records the result. It runs in its own goroutine.
func (m *Monitor) run(ctx context.Context, c *check, t Target, start time.Time) {
	pctx, cancel := context.WithTimeout(ctx, c.spec.Timeout)
	res := m.prober.probe(pctx, t, c.spec)
	cancel()
	if ctx.Err() != nil {
		return // cut short by the end of Run: no result
	}
	m.record(c, res, start)
}

// record applies one probe's result to c and its target's aggregate,
// and puts c back on the heap for its next probe, an interval after this
// one started.
func (m *Monitor) record(c *check, res result, start time.Time) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.t.removed {
		return
	}
	c.lastRun, c.output = now, res.output
	c.step(res.ok)
	agg := api.StatusPassing
	for _, o := range c.t.checks {
		if o.status != api.StatusPassing {
			agg = api.StatusCritical
			break
		}
	}
	if agg != c.t.agg {
		c.t.agg = agg
		m.settle(c.t)
	}
	c.due = start.Add(c.spec.Interval)
	if c.due.Before(now) {
		c.due = now
	}
	heap.Push(&m.due, c)
	if c.idx == 0 {
		signal(m.wake)
	}
}

// step counts one probe result and moves c's status when a threshold is
// reached: FailuresBeforeCritical consecutive failures turn a passing
// check critical, SuccessesBeforePassing consecutive successes turn a
// critical one passing. The counters stop at their thresholds.
func (c *check) step(ok bool) {
	if ok {
		c.failures = 0
		c.successes = min(c.successes+1, c.spec.SuccessesBeforePassing)
		if c.status == api.StatusCritical && c.successes >= c.spec.SuccessesBeforePassing {
			c.status = api.StatusPassing
		}
		return
	}
	c.successes = 0
	c.failures = min(c.failures+1, c.spec.FailuresBeforeCritical)
	if c.status == api.StatusPassing && c.failures >= c.spec.FailuresBeforeCritical {
		c.status = api.StatusCritical
	}
}

// jitter returns a random delay in [0, interval).
func jitter(interval time.Duration) time.Duration {
	return rand.N(interval)
}

// signal sends on a channel of capacity 1 without blocking: a value
// already there stands for this one too.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
