package registry

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/checks"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/redact"
	"github.com/musterhq/muster/internal/verify"
)

// Proposer is the replication layer as the registry needs it;
// *cluster.Node implements it.
type Proposer interface {
	// Apply proposes cmd and blocks until it is committed and applied, or
	// refused. It returns the command's fate as one error: the catalog's
	// own (catalog.ErrNotFound…), or the replication layer's. Errors that
	// mean "no node can take this write now; retry" have an
	// Unavailable() bool method reporting true.
	Apply(ctx context.Context, cmd catalog.Command) (catalog.Result, error)
	// Leader returns the address of the current leader, or "".
	Leader() string
}

// Errors of the registry's workflows. Front ends map each to their wire
// code; the messages here are for logs.
var (
	// ErrNotReady means this node is not a ready leader: its catalog may
	// still be replaying the log, so it answers nothing from it.
	ErrNotReady = errors.New("registry: the catalog is still loading")
	// ErrUnavailable means no leader could take a write; the error also
	// wraps the replication layer's own.
	ErrUnavailable = errors.New("registry: no leader can accept writes right now")
	// ErrBusy means every slot for registration callbacks is taken.
	ErrBusy = errors.New("registry: too many registrations in flight")
	// ErrOverloaded means a registration callback timed out while this
	// server could not keep time (see lagMonitor): the caller should
	// retry, and spent nothing of its allowance of failures.
	ErrOverloaded = errors.New("registry: the callback timed out while this server was overloaded")
	// ErrTooManyWaiters means Config.MaxWaiters blocking queries are held
	// open already.
	ErrTooManyWaiters = errors.New("registry: too many blocking queries held open")
	// ErrNoCredential means the caller presented no token or key.
	ErrNoCredential = errors.New("registry: credential required")
	// ErrWrongToken means the caller's token is not one that may do this:
	// not the instance's session token (nor, where allowed, the admin
	// token), or not the admin token.
	ErrWrongToken = errors.New("registry: token not allowed here")
	// ErrInstanceNotFound means no instance has the ID (or, in the
	// tutorial protocol, the name, address and secret) given.
	ErrInstanceNotFound = errors.New("registry: instance not registered")
	// ErrAddressNotAllowed means a registration's address is outside the
	// networks the registry calls back. It is verify.ErrNotAllowed, so
	// that its message names the address.
	ErrAddressNotAllowed = verify.ErrNotAllowed
	// ErrSeedOff means the tutorial protocol is not enabled.
	ErrSeedOff = errors.New("registry: the tutorial protocol is off")
	// ErrSeedScope means the tutorial protocol may not register this name
	// (SeedConfig.Services).
	ErrSeedScope = errors.New("registry: the tutorial protocol may not register this service")
)

// FieldError is a request field that breaks a rule.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func badField(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// RateLimitError means a caller's allowance of failed verifications is
// spent. Who names the caller ("enrolment key and address", "address").
type RateLimitError struct {
	Wait time.Duration
	Who  string
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many failed verifications lately from this %s; retry in %s", e.Who, e.Wait.Round(time.Second)+time.Second)
}

// VerifyError means the registration callback did not prove the address.
// Reason is one of the api.Reason* codes. The network detail of the
// failure is logged by the registry and never carried here.
type VerifyError struct {
	Reason  string
	Message string
}

func (e *VerifyError) Error() string { return e.Message }

// unavailable reports whether err is a replication-layer error meaning
// "retry later".
func unavailable(err error) bool {
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
}

// Config configures a Registry.
type Config struct {
	// AdminTokenHash is SHA-256 of the admin token; empty refuses every
	// admin operation.
	AdminTokenHash []byte
	// Known are the secrets the node holds in the clear (the admin,
	// metrics and cluster secrets), withheld by value from the free text
	// the registry keeps (an eviction's reason, a key's description), as
	// what looks like a secret is (package redact).
	Known redact.Known
	// PrivateReads makes every read need a token the registry knows, of
	// any role, whose services cover what is read; lists show only
	// those (--anonymous-reads=false). Off, reads need no credential.
	PrivateReads bool
	// MaxTokens bounds the tokens of every role, keys among them, the
	// registry holds; 0 means DefaultMaxTokens.
	MaxTokens int
	// MaxVerifying caps concurrent registration callbacks.
	MaxVerifying int
	// MinVerifyingShare is the least share of the callback slots a caller
	// (an enrolment key, or a network calling through the tutorial
	// protocol) is held to: a caller's share is the capacity open to it
	// divided among the callers holding slots, plus one for a newcomer,
	// and never less than this. The tutorial protocol as a whole never
	// holds more than half of MaxVerifying. See slotPool.
	MinVerifyingShare int
	// FailureBurst failed verifications per enrolment key and address are
	// allowed at once, then one per FailureEvery (per key alone, three
	// times as many); beyond that, RateLimitError.
	FailureBurst int
	FailureEvery time.Duration
	// MaxInstancesPerKey is the default limit of instances registered
	// with one enrolment key at once; a key may set its own.
	MaxInstancesPerKey int
	// MaxInstancesPerAddress limits the instances at one address, of any
	// key and service: one listener proving a host (verify_port) cannot
	// vouch for more.
	MaxInstancesPerAddress int
	// RegisterBurst registrations per enrolment key are let through at
	// once, then one per RegisterEvery: the bound on how fast one key can
	// grow the Raft log.
	RegisterBurst int
	RegisterEvery time.Duration
	// MaxWaiters bounds the blocking queries held open at once; beyond
	// it, ErrBusy.
	MaxWaiters int
	// MaxWaitersPerClient bounds those of one client address, so that
	// one client cannot hold them all.
	MaxWaitersPerClient int
	// MaxStreams bounds the event streams open at once, and
	// MaxStreamsPerClient those of one client address; beyond them,
	// ErrTooManyStreams.
	MaxStreams, MaxStreamsPerClient int
	// Seed, when set, turns on the tutorial protocol's admission policy.
	Seed *SeedConfig
	// Replication says which node answers a read and how far behind its
	// replica may be, and makes consistent reads (see Read); nil on a
	// single node, where every read is the leader's.
	Replication Replication
	// MaxStale is how long a follower may go without hearing from a
	// leader and still answer default reads (see Read); 0 means
	// DefaultMaxStale.
	MaxStale time.Duration

	// CA configures the certificate authority (ca.go): the trust domain
	// and the certificates' TTL. Zero fields mean the defaults.
	CA CAConfig

	// Audit is the node's audit trail: the registry records there what it
	// decides alone (refusals above all; see audit.go). nil records
	// nothing.
	Audit *audit.Log

	// Logger receives the registry's log lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the production settings.
func DefaultConfig() Config {
	return Config{
		MaxVerifying: 128, MinVerifyingShare: 4, FailureBurst: 10, FailureEvery: 6 * time.Second,
		MaxInstancesPerKey: 1000, MaxInstancesPerAddress: 256, RegisterBurst: 500, RegisterEvery: 20 * time.Millisecond,
		MaxWaiters: 20000, MaxWaitersPerClient: 5000, MaxStreams: 4096, MaxStreamsPerClient: 1024,
		CA: DefaultCAConfig(),
	}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	var errs []error
	if c.MaxVerifying < 1 {
		errs = append(errs, errors.New("registry: at least one concurrent verification is required"))
	}
	if c.MinVerifyingShare < 1 {
		errs = append(errs, errors.New("registry: a caller's least share of verifications must be at least 1"))
	}
	if c.FailureBurst < 1 || c.FailureEvery <= 0 {
		errs = append(errs, errors.New("registry: verify failure burst must be at least 1 and its refill period positive"))
	}
	if c.MaxInstancesPerKey < 1 || c.MaxInstancesPerKey > MaxKeyInstances || c.MaxInstancesPerAddress < 1 {
		errs = append(errs, fmt.Errorf("registry: instance limits per key (1 to %d) and per address must be at least 1", MaxKeyInstances))
	}
	if c.MaxWaiters < 1 || c.MaxWaitersPerClient < 1 {
		errs = append(errs, errors.New("registry: at least one blocking query must be allowed"))
	}
	if c.MaxStreams < 1 || c.MaxStreamsPerClient < 1 {
		errs = append(errs, errors.New("registry: at least one event stream, in all and per client, must be allowed"))
	}
	if c.RegisterBurst < 1 || c.RegisterEvery <= 0 {
		errs = append(errs, errors.New("registry: register burst must be at least 1 and its refill period positive"))
	}
	if c.Seed != nil {
		if err := c.Seed.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.CA.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Registry runs the workflows over one catalog. See the package doc.
type Registry struct {
	// catchUps holds a token per catch-up running (replica.go).
	catchUps chan struct{}
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	cat      *catalog.Catalog
	prop     Proposer
	live     *health.Liveness
	verifier *verify.Verifier
	audit    *audit.Log

	slots *slotPool
	// failures limits failed verifications per (caller, address) and,
	// three times as generous, per caller alone (keyFailures).
	failures *buckets
	// lag tells a callback's timeout that is the registry's own fault
	// (lag.go).
	lag         *lagMonitor
	keyFailures *buckets
	// registrations limits registrations per key (their rate); quotas
	// the instances per key and per address.
	registrations *buckets
	// seedFailures bounds failed callbacks of the tutorial protocol as a
	// whole: its callers are only addresses, which a caller can rotate.
	seedFailures *buckets
	quotas       quotas
	waiters      waiters
	streams      streams
	// monitor runs the active health checks while this node leads (see
	// RunChecks); nil otherwise.
	monitor atomic.Pointer[checks.Monitor]
	// seedKey serialises the creation of the tutorial protocol's key.
	seedKey sync.Mutex
	// seed holds the tutorial protocol's verifications running in the
	// background (seed_verify.go); nil when the protocol is off.
	seed *seedVerifications
	// certs limits certificate requests per instance; cas holds the
	// catalog's CAs parsed (ca.go).
	certs *buckets
	cas   caCache
	caMu  sync.Mutex // one proposal of a first CA at a time
	// caNextTry is when ensureCA may try again after a failure (caMu);
	// caWarned when RunCA last warned of the signing CA's expiry (its
	// goroutine only).
	caNextTry, caWarned time.Time
}

// New returns a registry over cat, writing through p, judging liveness by
// live and calling instances back through v.
func New(cfg Config, cat *catalog.Catalog, p Proposer, live *health.Liveness, v *verify.Verifier) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.CA = cfg.CA.orDefault()
	r := &Registry{
		cfg: cfg, log: cfg.Logger, now: cfg.Now, cat: cat, prop: p, live: live, verifier: v, audit: cfg.Audit,
		slots:         newSlotPool(),
		catchUps:      make(chan struct{}, maxCatchUps),
		failures:      newBuckets(cfg.FailureBurst, cfg.FailureEvery),
		keyFailures:   newBuckets(3*cfg.FailureBurst, cfg.FailureEvery/3),
		registrations: newBuckets(cfg.RegisterBurst, cfg.RegisterEvery),
		seedFailures:  newBuckets(10*cfg.FailureBurst, cfg.FailureEvery/10),
		lag:           newLagMonitor(),
		certs:         newBuckets(CertBurst, CertEvery),
	}
	if cfg.Seed != nil {
		sv, err := v.WithTimeout(cfg.Seed.VerifyTimeout)
		if err != nil {
			return nil, err
		}
		r.seed = newSeedVerifications(sv)
	}
	return r, nil
}

// SeedEnabled reports whether the tutorial protocol is on.
func (r *Registry) SeedEnabled() bool { return r.cfg.Seed != nil }

// Ready returns nil if this node is a ready leader, ErrNotReady if not.
func (r *Registry) Ready() error {
	if _, ok := r.live.Floor(); !ok {
		return ErrNotReady
	}
	return nil
}

// Health is this node's state as /readyz shows it.
type Health struct {
	Ready bool
	// Leader is the leader's Raft address, "" when none is known.
	Leader string
	// Index is the catalog's applied index (set when Ready).
	Index uint64
	// Degraded names what is impaired while the node still serves reads,
	// as the replication layer reports it: "disk" while the data dir's
	// disk is below its reserve and writes are refused. "" when nothing
	// is.
	Degraded string
}

// storage is what the replication layer may report of its disk besides
// leadership; *cluster.Node implements it. It is optional: a Proposer
// without it is never degraded and never refuses ahead of a write.
type storage interface {
	// Degraded names what is impaired, "" when nothing is.
	Degraded() string
	// Writable returns nil unless a write would be refused now whoever
	// proposed it (a full disk); its errors have Unavailable() true. It is
	// cheap and does not check leadership.
	Writable() error
}

// Health reports whether this node can serve, who leads, how far its
// catalog has applied the log, and whether it is degraded.
func (r *Registry) Health() Health {
	h := Health{Leader: r.prop.Leader()}
	// Ready when a default read would be answered: a ready leader, or a
	// follower that has caught up and heard from a leader within
	// MaxStale (see Read).
	if _, err := r.Read(context.Background(), ReadDefault); err == nil {
		h.Ready, h.Index = true, r.cat.Index()
	}
	if s, ok := r.prop.(storage); ok {
		h.Degraded = s.Degraded()
	}
	return h
}

// writable returns ErrUnavailable (wrapping the replication layer's
// reason) if a write would be refused now whoever proposed it, so that a
// workflow can refuse before work a refused commit would waste: a
// registration calls the instance back before it commits, and a stranger
// must not make the registry call out for nothing while its disk is full.
func (r *Registry) writable() error {
	if s, ok := r.prop.(storage); ok {
		if err := s.Writable(); err != nil && unavailable(err) {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return nil
}

// propose commits cmd. It is the one place where the registry writes: a
// replication-layer failure becomes ErrUnavailable (wrapping it); the
// catalog's own errors pass through.
func (r *Registry) propose(ctx context.Context, cmd catalog.Command) (catalog.Result, error) {
	res, err := r.prop.Apply(ctx, cmd)
	if err != nil && unavailable(err) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return res, err
}

// isAdmin reports whether token is the admin token.
func (r *Registry) isAdmin(token string) bool {
	if token == "" || len(r.cfg.AdminTokenHash) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(catalog.HashSecret(token), r.cfg.AdminTokenHash) == 1
}

// CheckAdmin returns nil if token is the admin token or a token of the
// admin role, ErrNoCredential if it is empty, ErrWrongToken or an
// *ExpiredError otherwise. Unlike Admin it records nothing.
func (r *Registry) CheckAdmin(token string) error {
	_, err := r.check(token, func(c Caller) bool { return c.admin })
	return err
}

// addressProof is how one registration proves its address: the names it
// is rate-limited under, the host to check against the allowlist, and the
// callback that must succeed.
type addressProof struct {
	byTarget, byCaller string // failure limiter names: caller and address, caller alone
	seed               bool   // through the tutorial protocol
	// keyID is the caller's key. The caller gets the callback's precise
	// failure reason only when the key already holds a proven instance at the
	// host; otherwise every network failure (unreachable, timeout, an HTTP
	// status, a redirect, an answer that is not the protocol's) is
	// reported as one, so that the callback is no port scanner. The
	// tutorial protocol, which has no key of the caller's, never gets it.
	keyID     string
	who       string // the caller and address, as a RateLimitError names them
	whoCaller string // the caller alone
	host      string
	// reserve admits the registration under the quotas, given the
	// address that stands for the host (see verify.Resolve), before any
	// callback; its release runs with the slot's.
	reserve func(hostIP string) (release func(), err error)
	// call runs the callback, connecting to hostIP (the address reserve
	// was given) and nothing else.
	call    func(ctx context.Context, hostIP netip.Addr) error
	refused string // the log message of a refusal
	attrs   []any  // and its attributes
}

// proveAddress runs the steps every registration shares before its commit,
// in this order: take a callback slot within the caller's shares
// (ErrBusy), check the failure limits (*RateLimitError), resolve the host
// and check it against the allowlist (ErrAddressNotAllowed, or
// *VerifyError when it does not resolve), admit it under the quotas
// (*QuotaError, from p.reserve), and run the callback (*VerifyError). A
// failure of the allowlist or the callback spends from the failure limits
// and is logged with its detail. On success the caller holds the slot
// and the quota reservation until it calls release, after its commit;
// hostIP is the address that stands for the host.
func (r *Registry) proveAddress(ctx context.Context, p addressProof) (release func(), hostIP string, err error) {
	a, err := r.admitProof(ctx, p)
	if err != nil {
		return nil, "", err
	}
	if err := r.runProof(ctx, p, a); err != nil {
		return nil, "", err
	}
	return a.release, a.ip.String(), nil
}

// admittedProof is an address proof past its admission (admitProof): it
// holds a callback slot and a quota reservation until release, and ip is
// the address that stands for the host.
type admittedProof struct {
	release  func()
	ip       netip.Addr
	detailed bool // the caller may learn the callback's precise failure
}

// admitProof runs proveAddress's steps up to the callback: slot, failure
// limits, allowlist, quotas. The tutorial protocol answers once they
// pass and runs the callback (runProof) in the background.
func (r *Registry) admitProof(ctx context.Context, p addressProof) (admittedProof, error) {
	release, ok := r.slots.take(r.cfg.MaxVerifying, r.cfg.MinVerifyingShare, p.byCaller, p.seed)
	if !ok {
		return admittedProof{}, ErrBusy
	}
	now := r.now()
	ok1, w1 := r.failures.Allow(now, p.byTarget)
	ok2, w2 := r.keyFailures.Allow(now, p.byCaller)
	ok3, w3 := true, time.Duration(0)
	if p.seed {
		ok3, w3 = r.seedFailures.Allow(now, "seed")
	}
	if !ok1 || !ok2 || !ok3 {
		release()
		// Name the limit that is spent (the one with the longest wait).
		who, wait := p.who, w1
		if w2 > wait {
			who, wait = p.whoCaller, w2
		}
		if w3 > wait {
			who, wait = "tutorial protocol (from every address together)", w3
		}
		return admittedProof{}, &RateLimitError{Wait: wait, Who: who}
	}
	ip, err := r.verifier.Resolve(ctx, p.host)
	if err != nil {
		return admittedProof{}, r.proofFailed(p, release, err, false)
	}
	unreserve, qerr := p.reserve(ip.String())
	if qerr != nil {
		release() // over quota is no failed verification: nothing spent
		return admittedProof{}, qerr
	}
	a := admittedProof{release: func() { unreserve(); release() }, ip: ip}
	if !p.seed {
		_, _, held := r.cat.Held(p.keyID, ip.String())
		a.detailed = held > 0
	}
	return a, nil
}

// runProof runs the callback of an admitted proof. On failure it releases
// what a holds, spends from the failure limits and returns the refusal.
func (r *Registry) runProof(ctx context.Context, p addressProof, a admittedProof) error {
	r.lag.start()
	start := time.Now()
	err := p.call(ctx, a.ip)
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// The caller went away (or the server is stopping) before the
		// callback ended: nothing was learnt of the instance, and
		// nothing is spent of its allowance. (A deadline that ends the
		// callback is a timeout, and counts.)
		a.release()
		if ve := (*verify.Error)(nil); errors.As(err, &ve) {
			return ctx.Err()
		}
		return err // the call's own word for it (ErrClosed)
	}
	var ve *verify.Error
	if errors.As(err, &ve) && ve.Reason == api.ReasonTimeout {
		end := time.Now()
		if late := r.lag.worst(start, end); late > end.Sub(start)/10 {
			// The registry could not keep time while it waited: the
			// timeout is its own fault, not the instance's.
			a.release()
			r.log.Warn("a registration callback timed out while this server was overloaded; the caller is asked to retry, and its allowance of failures is not spent",
				append(p.attrs, "late", late.Round(time.Millisecond), "waited", end.Sub(start).Round(time.Millisecond))...)
			return ErrOverloaded
		}
	}
	return r.proofFailed(p, a.release, err, a.detailed)
}

// proofFailed releases a failed proof's hold, spends from the failure
// limits, and returns the refusal (see asVerifyError).
func (r *Registry) proofFailed(p addressProof, release func(), err error, detailed bool) error {
	release()
	now := r.now()
	r.failures.Spend(now, p.byTarget)
	r.keyFailures.Spend(now, p.byCaller)
	if p.seed {
		r.seedFailures.Spend(now, "seed")
	}
	return r.asVerifyError(err, p, detailed, p.attrs...)
}

// asVerifyError turns the verifier's refusal into the registry's, logging
// its detail (which callers never see) as a warning: a refusal is what an
// operator looks for when a service cannot join. Unless detailed, every network
// failure becomes one reason (see addressProof.detailed). Other errors
// pass through.
func (r *Registry) asVerifyError(err error, p addressProof, detailed bool, attrs ...any) error {
	var ve *verify.Error
	if !errors.As(err, &ve) {
		return err
	}
	r.log.Warn(p.refused, append(attrs, "reason", ve.Reason, "message", ve.Msg, "detail", redact.Text(ve.Detail))...)
	if !detailed {
		switch ve.Reason {
		case api.ReasonUnreachable, api.ReasonTimeout, api.ReasonBadStatus, api.ReasonRedirect, api.ReasonBadResponse, api.ReasonBadCertificate:
			msg := "verification failed: the callback did not reach a service answering the verification protocol at the " +
				"advertised address (the registry's log has the detail; the precise reason is given once the enrolment key " +
				"has an instance registered at this address)"
			if p.seed {
				msg = "verification failed: the callback did not reach a service answering the tutorial's protocol at the " +
					"advertised address (the registry's log has the detail)"
			}
			return &VerifyError{Reason: api.ReasonUnreachable, Message: msg}
		}
	}
	return &VerifyError{Reason: ve.Reason, Message: ve.Error()}
}
