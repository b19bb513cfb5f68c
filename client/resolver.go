package client

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/url"
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
	// revalidated with the registry; default 2s.
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
	// every 10 s); default slog.Default() as of NewResolver. To silence
	// it, set slog.New(slog.DiscardHandler).
	Logger *slog.Logger
}

// Resolver is the client side of the SDK: cached lookups with an explicit
// staleness policy, load balancing, and outlier ejection. It is safe for
// concurrent use.
type Resolver struct {
	cfg     ResolverConfig
	mu      sync.Mutex
	entries map[string]*cacheEntry
	ejected sync.Map // instance ID → time.Time until which it is ejected
}

type cacheEntry struct {
	result atomic.Pointer[Result]
	next   atomic.Uint64 // round-robin cursor

	mu       sync.Mutex
	inflight chan struct{} // closed when the running revalidation ends
	lastErr  error         // the last revalidation's failure, if it failed
	failedAt time.Time
	warnedAt time.Time // last stale-cache warning
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
	if cfg.RevalidateTimeout == 0 {
		cfg.RevalidateTimeout = 10 * time.Second
	}
	if cfg.MaxAge < 0 || cfg.MaxStale < cfg.MaxAge || cfg.EjectFor < 0 {
		return nil, errors.New("client: resolver needs 0 <= MaxAge <= MaxStale and EjectFor >= 0")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Resolver{cfg: cfg, entries: map[string]*cacheEntry{}}, nil
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

func (r *Resolver) entry(key string) *cacheEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[key]
	if e == nil {
		e = &cacheEntry{}
		r.entries[key] = e
	}
	return e
}

// Lookup returns the service's instances from the cache while the answer
// is younger than MaxAge, and asks the registry otherwise. When the
// registry cannot be reached (or has no leader), a cached answer up to
// MaxStale old is returned with Stale set; an older one gives ErrStale.
// Refusals from the registry (a bad name, say) are returned as they are.
//
// One revalidation per service and filter runs at a time; other callers
// wait for it only as long as their own ctx allows, and then get the stale
// answer. After a failed revalidation, callers get the stale answer at once
// for MaxAge before the registry is tried again.
func (r *Resolver) Lookup(ctx context.Context, service string, opts ...LookupOption) (Result, error) {
	e := r.entry(cacheKey(service, opts))
	if res := e.result.Load(); res != nil && time.Since(res.FetchedAt) < r.cfg.MaxAge {
		return *res, nil
	}
	e.mu.Lock()
	if res := e.result.Load(); res != nil && time.Since(res.FetchedAt) < r.cfg.MaxAge {
		e.mu.Unlock()
		return *res, nil
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
		return *e.result.Load(), nil
	}
	if !errors.Is(err, ErrUnavailable) {
		return Result{}, err
	}
	return r.stale(e, service, err, false)
}

// revalidate asks the registry and records the outcome. It runs detached
// from any one caller's context, bounded by the client's own timeout.
func (r *Resolver) revalidate(e *cacheEntry, done chan struct{}, service string, opts []LookupOption) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.RevalidateTimeout)
	defer cancel()
	fresh, err := r.cfg.Client.Lookup(ctx, service, opts...)
	if err != nil && ctx.Err() != nil {
		err = errorf("lookup: %w: no answer within %s", ErrUnavailable, r.cfg.RevalidateTimeout)
	}
	e.mu.Lock()
	if err == nil {
		e.result.Store(&fresh)
		e.lastErr = nil
	} else {
		e.lastErr, e.failedAt = err, time.Now()
	}
	e.inflight = nil
	close(done)
	e.mu.Unlock()
}

// stale applies the staleness policy after a failed or abandoned
// revalidation: the cached answer, marked, if it is young enough.
// callerGaveUp says the caller's own deadline ended the wait, which is not
// the registry's fault.
func (r *Resolver) stale(e *cacheEntry, service string, cause error, callerGaveUp bool) (Result, error) {
	cached := e.result.Load()
	if cached == nil {
		return Result{}, cause
	}
	age := time.Since(cached.FetchedAt)
	if age > r.cfg.MaxStale {
		return Result{}, errorf("%w: %s has an answer %s old (max stale %s): %w", ErrStale, service, age.Round(time.Millisecond), r.cfg.MaxStale, cause)
	}
	r.warnStale(e, service, age, cause, callerGaveUp)
	out := *cached
	out.Stale, out.StaleErr = true, cause
	return out, nil
}

// warnStale logs that a stale answer is served, at most once per entry
// every 10 s; a caller's own deadline is not the registry's fault and is
// logged at debug level.
func (r *Resolver) warnStale(e *cacheEntry, service string, age time.Duration, cause error, callerGaveUp bool) {
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
		e := r.entry(cacheKey(service, opts))
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
