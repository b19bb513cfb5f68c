package registry

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
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
	// MaxVerifying caps concurrent registration callbacks.
	MaxVerifying int
	// MaxVerifyingPerCaller caps the callbacks one caller may have in
	// flight: one enrolment key, or one network calling through the
	// tutorial protocol. The tutorial protocol as a whole may hold at most
	// half of MaxVerifying.
	MaxVerifyingPerCaller int
	// FailureBurst failed verifications per enrolment key and address are
	// allowed at once, then one per FailureEvery (per key alone, three
	// times as many); beyond that, RateLimitError.
	FailureBurst int
	FailureEvery time.Duration
	// Seed, when set, turns on the tutorial protocol's admission policy.
	Seed *SeedConfig
	// Logger receives the registry's log lines; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the production settings.
func DefaultConfig() Config {
	return Config{MaxVerifying: 64, MaxVerifyingPerCaller: 8, FailureBurst: 10, FailureEvery: 6 * time.Second}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	var errs []error
	if c.MaxVerifying < 1 {
		errs = append(errs, errors.New("registry: at least one concurrent verification is required"))
	}
	if c.MaxVerifyingPerCaller < 1 {
		errs = append(errs, errors.New("registry: at least one concurrent verification per caller is required"))
	}
	if c.FailureBurst < 1 || c.FailureEvery <= 0 {
		errs = append(errs, errors.New("registry: verify failure burst must be at least 1 and its refill period positive"))
	}
	if c.Seed != nil {
		if err := c.Seed.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Registry runs the workflows over one catalog. See the package doc.
type Registry struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	cat      *catalog.Catalog
	prop     Proposer
	live     *health.Liveness
	verifier *verify.Verifier

	slots *slotPool
	// failures limits failed verifications per (caller, address) and,
	// three times as generous, per caller alone (keyFailures).
	failures    *failureLimiter
	keyFailures *failureLimiter
	// seedKey serialises the creation of the tutorial protocol's key.
	seedKey sync.Mutex
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
	return &Registry{
		cfg: cfg, log: cfg.Logger, now: cfg.Now, cat: cat, prop: p, live: live, verifier: v,
		slots:       newSlotPool(),
		failures:    newFailureLimiter(cfg.FailureBurst, cfg.FailureEvery),
		keyFailures: newFailureLimiter(3*cfg.FailureBurst, cfg.FailureEvery/3),
	}, nil
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
}

// Health reports whether this node can serve, who leads, and how far its
// catalog has applied the log.
func (r *Registry) Health() Health {
	h := Health{Leader: r.prop.Leader()}
	if r.Ready() == nil {
		h.Ready, h.Index = true, r.cat.Index()
	}
	return h
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

// CheckAdmin returns nil if token is the admin token, ErrNoCredential if
// it is empty, ErrWrongToken otherwise.
func (r *Registry) CheckAdmin(token string) error {
	switch {
	case token == "":
		return ErrNoCredential
	case !r.isAdmin(token):
		return ErrWrongToken
	}
	return nil
}

// addressProof is how one registration proves its address: the names it
// is rate-limited under, the host to check against the allowlist, and the
// callback that must succeed.
type addressProof struct {
	byTarget, byCaller string // failure limiter names: caller and address, caller alone
	seed               bool   // through the tutorial protocol
	who                string // the caller, as a RateLimitError names it
	host               string
	call               func(ctx context.Context) error
	refused            string // the log message of a refusal
	attrs              []any  // and its attributes
}

// proveAddress runs the steps every registration shares before its commit,
// in this order: take a callback slot within the caller's shares
// (ErrBusy), check the failure limits
// (*RateLimitError), check the host against the allowlist
// (ErrAddressNotAllowed, or *VerifyError when it does not resolve), and
// run the callback (*VerifyError). A failure of the last two spends from
// the limits and is logged with its detail. On success the caller holds
// the slot until it calls release, after its commit.
func (r *Registry) proveAddress(ctx context.Context, p addressProof) (release func(), err error) {
	shares := []share{{"", r.cfg.MaxVerifying}, {"caller|" + p.byCaller, r.cfg.MaxVerifyingPerCaller}}
	if p.seed {
		shares = append(shares, share{"seed", max(1, r.cfg.MaxVerifying/2)})
	}
	release, ok := r.slots.take(shares...)
	if !ok {
		return nil, ErrBusy
	}
	now := r.now()
	ok1, w1 := r.failures.Allow(now, p.byTarget)
	ok2, w2 := r.keyFailures.Allow(now, p.byCaller)
	if !ok1 || !ok2 {
		release()
		return nil, &RateLimitError{Wait: max(w1, w2), Who: p.who}
	}
	err = r.verifier.CheckAddress(ctx, p.host)
	if err == nil {
		err = p.call(ctx)
	}
	if err != nil {
		release()
		now := r.now()
		r.failures.Fail(now, p.byTarget)
		r.keyFailures.Fail(now, p.byCaller)
		return nil, r.asVerifyError(err, p.refused, p.attrs...)
	}
	return release, nil
}

// asVerifyError turns the verifier's refusal into the registry's, logging
// its detail (which callers never see). Other errors pass through.
func (r *Registry) asVerifyError(err error, msg string, attrs ...any) error {
	var ve *verify.Error
	if !errors.As(err, &ve) {
		return err
	}
	r.log.Info(msg, append(attrs, "reason", ve.Reason, "detail", ve.Detail)...)
	return &VerifyError{Reason: ve.Reason, Message: ve.Error()}
}
