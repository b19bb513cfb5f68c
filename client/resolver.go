package client

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Strategy chooses among a service's instances.
type Strategy int

// The strategies Pick knows.
const (
	// RoundRobin takes instances in turn (the default).
	RoundRobin Strategy = iota
	// Random takes an instance uniformly at random.
	Random
	// QualityWeighted takes an instance at random, weighted by its
	// quality, so that instances whose liveness is less certain (new,
	// irregular, close to their TTL) get less traffic.
	QualityWeighted
)

// ResolverConfig configures a Resolver.
type ResolverConfig struct {
	// Client talks to the registry. Required.
	Client *Client
	// MaxAge is how long an answer is served from the cache before it is
	// revalidated with the registry; default 2s. The age counts from the
	// last moment the registry vouched for the answer: when it was
	// fetched, or the event stream's last message (the registry sends one
	// at least every 15 s), so with a MaxAge above that a healthy stream
	// makes revalidation unnecessary.
	MaxAge time.Duration
	// MaxStale is how old a cached answer may be and still be served,
	// marked Stale, when the registry cannot be reached; default 60s.
	// Beyond it, lookups fail with ErrStale.
	MaxStale time.Duration
	// Strategy is Pick's balancing strategy; default RoundRobin.
	Strategy Strategy
	// EjectFor is how long an instance reported failing is left out of
	// Pick; default 10s.
	EjectFor time.Duration
	// RevalidateTimeout bounds one revalidation with the registry, whatever
	// the Client's own HTTP timeout; default 10s.
	RevalidateTimeout time.Duration
	// Logger receives stale-cache warnings (at most one per cached service
	// every 10 s) and the event stream's troubles (a warning when it is
	// lost, a note when it is back); default slog.Default() as of
	// NewResolver. To silence it, set slog.New(slog.DiscardHandler).
	Logger *slog.Logger
	// QualityMaxAge is how long the qualities and heartbeat ages of a
	// cached answer are served before the answer is fetched again, in the
	// background, the cached one served meanwhile: the event stream
	// carries changes, not qualities, so an answer it keeps current
	// would otherwise show the qualities it was fetched with for ever (a
	// new instance at 0.5 while it has long been heartbeating). Default
	// 10s; negative: never, for callers that do not read qualities and
	// want no requests while the stream is up.
	QualityMaxAge time.Duration
	// DisableStream turns the event stream off: the cache is kept by
	// revalidation alone (MaxAge), and Watch sees a change only when a
	// Lookup's revalidation finds it. For registries with more resolvers
	// than the streams they allow (4,096), or networks that cut long-lived
	// connections.
	DisableStream bool
}

// Resolver is the client side of the SDK: cached lookups with an explicit
// staleness policy, load balancing, and outlier ejection. It is safe for
// concurrent use.
//
// The services it has cached are kept current by one event stream from
// the registry (see Lookup, Watch and docs/sdk.md), opened after the
// first lookup and read by one goroutine of the Resolver's. Close ends
// both; so does the garbage collector, some time after a Resolver that
// was not closed becomes unreachable.
type Resolver struct {
	// The Resolver's state is apart from it, so that the stream's
	// goroutine, which holds the state, does not keep the Resolver from
	// being collected; a cleanup then ends the goroutine.
	*cache
}

// cache is a Resolver's state.
type cache struct {
	cfg   ResolverConfig
	epoch time.Time // the base of the clock readings kept in atomics

	mu       sync.Mutex
	entries  map[string]*cacheEntry // by cache key (service and filters)
	services map[string]*service
	feed     feed
	closed   atomic.Bool

	ejected sync.Map // instance ID → time.Time until which it is ejected
}

// service is what the Resolver holds of one service: its cache entries,
// and the connection of the event stream that carries its changes.
type service struct {
	name string
	// Guarded by cache.mu.
	entries []*cacheEntry
	watched bool // in the event stream's set
	// cover is the stream connection that carries the service's changes,
	// or the last one that did: its last message vouches for the cache.
	cover atomic.Pointer[streamConn]
}

type cacheEntry struct {
	svc      *service
	filtered bool // a lookup with options: revalidated, never patched
	result   atomic.Pointer[Result]
	next     atomic.Uint64 // round-robin cursor
	// dirty: the event stream announced a change that result may not
	// show (a filtered entry, whose filters only the registry applies, is
	// always marked so rather than patched): the next Lookup revalidates.
	dirty atomic.Bool

	mu       sync.Mutex
	inflight chan struct{} // closed when the running revalidation ends
	lastErr  error         // the last revalidation's failure, if it failed
	failedAt time.Time
	warnedAt time.Time // last stale-cache warning
	// through: result shows every change to the service up to this index.
	through uint64
	// missed: the highest index of a change announced that result may not
	// show (dirty).
	missed uint64
	// fetched is when result last came from a lookup (not from the
	// stream's patches), or a background fetch was last started, in
	// Unix nanoseconds: its qualities are as of then (QualityMaxAge).
	// Atomic, so that a cache hit reads it without the lock.
	fetched atomic.Int64
	// gen counts the snapshots applied; a revalidation that spans one
	// cannot tell its answer's age from the snapshot's.
	gen      uint64
	watchers map[*watcher]struct{} // Watch's channels (unfiltered entries)
}

// NewResolver returns a resolver.
func NewResolver(cfg ResolverConfig) (*Resolver, error) {
	if cfg.Client == nil {
		return nil, errors.New("client: resolver needs a Client")
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 2 * time.Second
	}
	if cfg.MaxStale == 0 {
		cfg.MaxStale = 60 * time.Second
	}
	if cfg.EjectFor == 0 {
		cfg.EjectFor = 10 * time.Second
	}
	if cfg.QualityMaxAge == 0 {
		cfg.QualityMaxAge = 10 * time.Second
	}
	if cfg.RevalidateTimeout == 0 {
		cfg.RevalidateTimeout = 10 * time.Second
	}
	if cfg.MaxAge < 0 || cfg.MaxStale < cfg.MaxAge || cfg.EjectFor < 0 {
		return nil, errors.New("client: resolver needs 0 <= MaxAge <= MaxStale and EjectFor >= 0")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &cache{cfg: cfg, epoch: time.Now(), entries: map[string]*cacheEntry{}, services: map[string]*service{}}
	r := &Resolver{c}
	runtime.AddCleanup(r, func(c *cache) { c.close(false) }, c)
	return r, nil
}

func cacheKey(service string, opts []LookupOption) string {
	if len(opts) == 0 {
		return service
	}
	q := url.Values{}
	for _, o := range opts {
		o(q)
	}
	for _, vs := range q {
		sort.Strings(vs)
	}
	return service + "?" + q.Encode()
}

func (r *cache) entry(name string, opts []LookupOption) *cacheEntry {
	key := cacheKey(name, opts)
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[key]
	if e == nil {
		s := r.services[name]
		if s == nil {
			s = &service{name: name}
			r.services[name] = s
		}
		e = &cacheEntry{svc: s, filtered: len(opts) > 0}
		s.entries = append(s.entries, e)
		r.entries[key] = e
	}
	return e
}

// asOf is the time up to which res, e's result, is known to be current:
// when it was fetched, or later, the last message of the stream
// connection that carries the service's changes, unless e may miss one.
func (r *cache) asOf(e *cacheEntry, res *Result) time.Time {
	at := res.FetchedAt
	if e.dirty.Load() {
		return at
	}
	if c := e.svc.cover.Load(); c != nil {
		if h := c.heard(r.epoch); h.After(at) {
			at = h
		}
	}
	return at
}

// fresh returns e's result if it is younger than MaxAge, counting from
// asOf.
func (r *cache) fresh(e *cacheEntry) (Result, bool) {
	res := e.result.Load()
	if res == nil || e.dirty.Load() {
		return Result{}, false
	}
	at := r.asOf(e, res)
	if time.Since(at) >= r.cfg.MaxAge {
		return Result{}, false
	}
	out := *res
	out.FetchedAt = at
	return out, true
}

// Lookup returns the service's instances from the cache while the answer
// is younger than MaxAge, and asks the registry otherwise. When the
// registry cannot be reached (or has no leader), a cached answer up to
// MaxStale old is returned with Stale set; an older one gives ErrStale.
// Refusals from the registry (a bad name, say) are returned as they are.
//
// An answer's age counts from the last moment the registry vouched for
// it: when it was fetched, or, for a service the event stream carries,
// the stream's last message, since every change up to then has been
// applied (Result.FetchedAt is that moment). A lookup with options is not
// patched by the stream: a change to its service makes the next Lookup
// revalidate it.
//
// One revalidation per service and filter runs at a time; other callers
// wait for it only as long as their own ctx allows, and then get the stale
// answer. After a failed revalidation, callers get the stale answer at once
// for MaxAge before the registry is tried again.
func (r *Resolver) Lookup(ctx context.Context, service string, opts ...LookupOption) (Result, error) {
	e := r.entry(service, opts)
	if res, ok := r.fresh(e); ok {
		r.refreshQualities(e, service, opts)
		return res, nil
	}
	e.mu.Lock()
	if res, ok := r.fresh(e); ok {
		e.mu.Unlock()
		return res, nil
	}
	if e.lastErr != nil && time.Since(e.failedAt) < r.cfg.MaxAge {
		err := e.lastErr
		e.mu.Unlock()
		if !errors.Is(err, ErrUnavailable) {
			return Result{}, err
		}
		return r.stale(e, service, err, false)
	}
	ch := e.inflight
	if ch == nil {
		ch = make(chan struct{})
		e.inflight = ch
		// Detached from the caller entirely: its cancellation must not
		// cut the revalidation short for everyone, and its values (a
		// request trace, say) must not fire on this goroutine.
		go r.revalidate(e, ch, service, opts)
	}
	e.mu.Unlock()

	select {
	case <-ch:
	case <-ctx.Done():
		return r.stale(e, service, ctx.Err(), true)
	}
	e.mu.Lock()
	err := e.lastErr
	e.mu.Unlock()
	if err == nil {
		res := e.result.Load()
		out := *res
		out.FetchedAt = r.asOf(e, res)
		return out, nil
	}
	if !errors.Is(err, ErrUnavailable) {
		return Result{}, err
	}
	return r.stale(e, service, err, false)
}

// refreshQualities starts a revalidation of e in the background when its
// answer, current by the stream, was fetched more than QualityMaxAge ago
// (see ResolverConfig.QualityMaxAge), unless one is running.
func (r *cache) refreshQualities(e *cacheEntry, service string, opts []LookupOption) {
	if r.cfg.QualityMaxAge < 0 || time.Since(time.Unix(0, e.fetched.Load())) < r.cfg.QualityMaxAge {
		return // the hot path: a cache hit takes no lock
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inflight != nil || time.Since(time.Unix(0, e.fetched.Load())) < r.cfg.QualityMaxAge {
		return
	}
	e.fetched.Store(time.Now().UnixNano()) // an attempt, whatever its outcome: one per QualityMaxAge
	e.inflight = make(chan struct{})
	go r.revalidate(e, e.inflight, service, opts)
}

// revalidate asks the registry and records the outcome. It runs detached
// from any one caller's context, bounded by the client's own timeout.
//
// The answer shows every change to the service up to its index, and up to
// the event stream's position when the request was sent (the registry had
// applied that index). It replaces the entry's result unless the stream
// has since patched in a later change (or replaced it with a snapshot),
// and its service then joins the stream's set.
func (r *cache) revalidate(e *cacheEntry, done chan struct{}, service string, opts []LookupOption) {
	e.mu.Lock()
	gen := e.gen
	e.mu.Unlock()
	sent := r.feed.cursor.Load()
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.RevalidateTimeout)
	defer cancel()
	fresh, err := r.cfg.Client.Lookup(ctx, service, opts...)
	if err != nil && ctx.Err() != nil {
		err = errorf("lookup: %w: no answer within %s", ErrUnavailable, r.cfg.RevalidateTimeout)
	}
	e.mu.Lock()
	if err == nil {
		through := max(fresh.Index, sent)
		if cur := e.result.Load(); e.filtered || cur == nil || (e.gen == gen && through >= e.through) {
			e.setResult(&fresh)
			e.through = through
			e.fetched.Store(time.Now().UnixNano())
			e.dirty.Store(e.gen != gen || e.missed > through)
		} // else the stream's result is newer: keep it
		e.lastErr = nil
	} else {
		e.lastErr, e.failedAt = err, time.Now()
	}
	e.inflight = nil
	close(done)
	e.mu.Unlock()
	if err == nil {
		r.watchService(e.svc)
	}
}

// stale applies the staleness policy after a failed or abandoned
// revalidation: the cached answer, marked, if it is young enough.
// callerGaveUp says the caller's own deadline ended the wait, which is not
// the registry's fault.
func (r *cache) stale(e *cacheEntry, service string, cause error, callerGaveUp bool) (Result, error) {
	cached := e.result.Load()
	if cached == nil {
		return Result{}, cause
	}
	at := r.asOf(e, cached)
	age := time.Since(at)
	if age > r.cfg.MaxStale {
		return Result{}, errorf("%w: %s has an answer %s old (max stale %s): %w", ErrStale, service, age.Round(time.Millisecond), r.cfg.MaxStale, cause)
	}
	r.warnStale(e, service, age, cause, callerGaveUp)
	out := *cached
	out.FetchedAt = at
	out.Stale, out.StaleErr = true, cause
	return out, nil
}

// warnStale logs that a stale answer is served, at most once per entry
// every 10 s; a caller's own deadline is not the registry's fault and is
// logged at debug level.
func (r *cache) warnStale(e *cacheEntry, service string, age time.Duration, cause error, callerGaveUp bool) {
	if callerGaveUp {
		r.cfg.Logger.Debug("caller's deadline before revalidation; serving cached instances", "service", service, "age", age.Round(time.Millisecond))
		return
	}
	e.mu.Lock()
	quiet := time.Since(e.warnedAt) < 10*time.Second
	if !quiet {
		e.warnedAt = time.Now()
	}
	e.mu.Unlock()
	if !quiet {
		r.cfg.Logger.Warn("registry unreachable; serving cached instances", "service", service, "age", age.Round(time.Millisecond), "err", cause)
	}
}

// Pick returns one instance of the service by the resolver's strategy,
// leaving out instances ejected after ReportFailure. If every instance is
// ejected, it picks among all of them rather than fail. With no passing
// instance, the error matches ErrNoInstances.
func (r *Resolver) Pick(ctx context.Context, service string, opts ...LookupOption) (Instance, error) {
	inst, err := r.pick(ctx, service, nil, opts)
	if err != nil {
		return Instance{}, errorf("pick %s: %w", service, err)
	}
	return inst, nil
}

func (r *Resolver) pick(ctx context.Context, service string, exclude map[string]bool, opts []LookupOption) (Instance, error) {
	res, err := r.Lookup(ctx, service, opts...)
	if err != nil {
		return Instance{}, err
	}
	now := time.Now()
	cands := make([]Instance, 0, len(res.Instances))
	for _, in := range res.Instances {
		if !exclude[in.ID] && !r.isEjected(in.ID, now) {
			cands = append(cands, in)
		}
	}
	if len(cands) == 0 {
		for _, in := range res.Instances {
			if !exclude[in.ID] {
				cands = append(cands, in)
			}
		}
	}
	if len(cands) == 0 {
		return Instance{}, ErrNoInstances // the caller names the service
	}
	switch r.cfg.Strategy {
	case Random:
		return cands[rand.IntN(len(cands))], nil
	case QualityWeighted:
		return weighted(cands), nil
	default:
		e := r.entry(service, opts)
		return cands[int(e.next.Add(1)-1)%len(cands)], nil
	}
}

// weighted picks by quality, with a small floor so that an instance of
// quality 0 (just restarted registry) can still be chosen.
func weighted(cands []Instance) Instance {
	const floor = 0.01
	total := 0.0
	for _, in := range cands {
		total += max(in.Quality, floor)
	}
	x := rand.Float64() * total
	for _, in := range cands {
		x -= max(in.Quality, floor)
		if x < 0 {
			return in
		}
	}
	return cands[len(cands)-1]
}

func (r *Resolver) isEjected(id string, now time.Time) bool {
	v, ok := r.ejected.Load(id)
	if !ok {
		return false
	}
	if now.After(v.(time.Time)) {
		r.ejected.Delete(id)
		return false
	}
	return true
}

// ReportFailure ejects an instance from Pick for EjectFor, after a local
// failure (refused connection, timeout).
func (r *Resolver) ReportFailure(id string) {
	r.ejected.Store(id, time.Now().Add(r.cfg.EjectFor))
}

// ReportSuccess lifts an ejection early.
func (r *Resolver) ReportSuccess(id string) {
	r.ejected.Delete(id)
}
