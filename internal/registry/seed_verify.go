package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/verify"
)

// Errors of the tutorial protocol's background verifications.
var (
	// ErrSeedPending means too many tutorial-protocol registrations are
	// awaiting verification: from the caller's network
	// (SeedConfig.MaxPendingPerCaller), or in all (SeedConfig.MaxPending).
	ErrSeedPending = errors.New("registry: too many tutorial-protocol registrations awaiting verification")
	// ErrClosed means the registry was closed (Close): it starts no more
	// background work, and the verifications it cancelled committed
	// nothing.
	ErrClosed = errors.New("registry: closed")
)

// seedCommitTimeout bounds the commit of a verified tutorial-protocol
// instance (and of the protocol's key, the first time).
const seedCommitTimeout = 10 * time.Second

// seedEndpoint is what identifies a tutorial-protocol registration while
// it is pending: the name, url and port it was registered with.
type seedEndpoint struct {
	service string
	addr    SeedAddr
}

// SeedVerification is a tutorial-protocol registration accepted for
// verification (see RegisterSeed): its callback runs in the background,
// and the instance is committed only if the answer is right. Its methods
// are safe for concurrent use.
type SeedVerification struct {
	// ID is the ID the instance has once committed.
	ID string

	ep     seedEndpoint
	caller string // the caller's network, as the pending bounds count it
	remote string // the caller's address, for the audit trail
	done   chan struct{}
	// inst and err are the outcome: written by the verification's
	// goroutine before it closes done, read only after.
	inst *catalog.Instance
	err  error
}

// Done returns a channel closed once the verification has ended, its
// instance committed or not.
func (v *SeedVerification) Done() <-chan struct{} { return v.done }

// Wait blocks until the verification ends and returns the committed
// instance, or why none was: a *VerifyError (the answer was wrong, or
// none came within SeedConfig.VerifyTimeout), ErrAddressNotAllowed (the
// host resolved elsewhere by the time of the call), catalog.ErrProtocolMix
// (a /v1 instance of the service came first), ErrUnavailable, ErrClosed
// (Close cancelled it). If ctx ends first it returns ctx's error.
func (v *SeedVerification) Wait(ctx context.Context) (*catalog.Instance, error) {
	select {
	case <-v.done:
		return v.inst, v.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// seedVerifications are the tutorial protocol's verifications in flight.
// Each runs on a goroutine of its own (verifySeed), which owns its
// SeedVerification's outcome until it closes done. The maps and closed
// are guarded by mu; wg counts the goroutines, and ctx, ended by close,
// is the parent of each one's context.
type seedVerifications struct {
	verifier *verify.Verifier // with SeedConfig.VerifyTimeout
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	byEndpoint map[seedEndpoint]*SeedVerification
	byCaller   map[string]int
}

func newSeedVerifications(v *verify.Verifier) *seedVerifications {
	ctx, cancel := context.WithCancel(context.Background())
	return &seedVerifications{verifier: v, ctx: ctx, cancel: cancel,
		byEndpoint: map[seedEndpoint]*SeedVerification{}, byCaller: map[string]int{}}
}

// pending returns the verification in flight for ep, or nil.
func (s *seedVerifications) pending(ep seedEndpoint) *SeedVerification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byEndpoint[ep]
}

// room returns nil if caller may start one more verification now.
func (s *seedVerifications) room(caller string, cfg SeedConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roomLocked(caller, cfg)
}

// roomLocked is room; call with s.mu held.
func (s *seedVerifications) roomLocked(caller string, cfg SeedConfig) error {
	switch {
	case s.closed:
		return ErrClosed
	case s.byCaller[caller] >= cfg.MaxPendingPerCaller:
		return fmt.Errorf("%w from this address (%d, the most for one caller); retry once they are answered", ErrSeedPending, cfg.MaxPendingPerCaller)
	case len(s.byEndpoint) >= cfg.MaxPending:
		return fmt.Errorf("%w (%d, the most in all); retry later", ErrSeedPending, cfg.MaxPending)
	}
	return nil
}

// add records v as pending, counting its goroutine, unless another
// verification of its endpoint is pending (it returns that one) or there
// is no room (it returns why).
func (s *seedVerifications) add(v *SeedVerification, cfg SeedConfig) (running *SeedVerification, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if running := s.byEndpoint[v.ep]; running != nil {
		return running, nil
	}
	if err := s.roomLocked(v.caller, cfg); err != nil {
		return nil, err
	}
	s.byEndpoint[v.ep] = v
	s.byCaller[v.caller]++
	s.wg.Add(1)
	return nil, nil
}

// remove forgets v once it has ended.
func (s *seedVerifications) remove(v *SeedVerification) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byEndpoint, v.ep)
	if s.byCaller[v.caller]--; s.byCaller[v.caller] <= 0 {
		delete(s.byCaller, v.caller)
	}
}

// close refuses new verifications, cancels those in flight and waits for
// their goroutines to end.
func (s *seedVerifications) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// Close stops the registry's background work and waits for it to end:
// the tutorial protocol's verifications still pending are cancelled and
// commit nothing (one whose commit has begun finishes it first), and
// RegisterSeed refuses with ErrClosed from then on; the monitor of the
// registry's own lag stops (lag.go). Call it before the Proposer stops.
// Every other method is unaffected. It is safe to call
// more than once.
func (r *Registry) Close() {
	if r.seed != nil {
		r.seed.close()
	}
	r.lag.close()
}

// verifySeed is the goroutine of one accepted tutorial-protocol
// registration: it runs the callback within SeedConfig.VerifyTimeout,
// commits the instance if the answer is right, logs the outcome and
// reports it through v.
func (r *Registry) verifySeed(v *SeedVerification, p addressProof, a admittedProof, secret string) {
	s := r.seed
	defer s.wg.Done()
	start := time.Now()
	ctx, cancel := context.WithTimeout(WithCaller(s.ctx, v.remote), r.cfg.Seed.VerifyTimeout)
	inst, err := r.finishSeed(ctx, v, p, a, secret)
	cancel()
	// Forgotten before Done: a registration of the endpoint after Wait
	// returns starts afresh.
	s.remove(v)
	v.inst, v.err = inst, err
	close(v.done)

	attrs := append(slices.Clip(p.attrs), "id", v.ID, "took", time.Since(start).Round(time.Millisecond))
	var ve *VerifyError
	switch {
	case err == nil:
		r.log.Info("seed verification ended", append(attrs, "outcome", "registered")...)
	case errors.Is(err, ErrClosed):
		r.log.Info("seed verification ended", append(attrs, "outcome", "cancelled", "why", "the registry is stopping")...)
	case errors.As(err, &ve):
		r.log.Info("seed verification ended", append(attrs, "outcome", "refused", "reason", ve.Reason)...)
	default:
		r.log.Warn("seed verification ended", append(attrs, "outcome", "not registered", "err", err)...)
	}
}
