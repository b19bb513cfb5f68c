package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/redact"
)

// Eviction limits.
const (
	MinEviction = time.Second
	MaxEviction = 30 * 24 * time.Hour
	maxReason   = 256
)

// BarredError means a registration is for an endpoint (service, address
// and port) that an operator evicted, and the bar has not ended.
type BarredError struct{ Bar catalog.Bar }

func (e *BarredError) Error() string {
	return fmt.Sprintf("%s at %s was evicted by an operator until %s%s; it may register again after that",
		e.Bar.Service, barEndpoint(e.Bar), e.Bar.Until.Format(time.RFC3339), reasonSuffix(e.Bar.Reason))
}

// EvictedError means the instance asked for was evicted by an operator;
// its endpoint is barred until Bar.Until. It is an ErrInstanceNotFound.
type EvictedError struct{ Bar catalog.Bar }

func (e *EvictedError) Error() string {
	return fmt.Sprintf("instance %s was evicted by an operator; %s at %s may register again after %s%s",
		e.Bar.Instance, e.Bar.Service, barEndpoint(e.Bar), e.Bar.Until.Format(time.RFC3339), reasonSuffix(e.Bar.Reason))
}

// Is makes an EvictedError an ErrInstanceNotFound.
func (e *EvictedError) Is(target error) bool { return target == ErrInstanceNotFound }

// barEndpoint is the barred endpoint's address and port, as host:port or
// [v6]:port.
func barEndpoint(b catalog.Bar) string {
	return net.JoinHostPort(b.Address, strconv.Itoa(b.Port))
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

// scrub withholds from free text the registry keeps (an eviction's
// reason, a key's description: in the Raft log, in backups, in answers
// to other callers) what looks like a secret, and the node's own secrets
// by value.
func (r *Registry) scrub(s string) string { return r.cfg.Known.Text(redact.Text(s)) }

// notFound is the error for an instance ID the catalog does not hold: an
// *EvictedError while the eviction that removed it bars its endpoint,
// else ErrInstanceNotFound.
func (r *Registry) notFound(id string) error {
	if b, ok := r.cat.BarByInstance(id); ok && b.Until.After(r.now()) {
		return &EvictedError{Bar: *b}
	}
	return ErrInstanceNotFound
}

// notFoundFor is notFound for a caller who may read the services covers
// holds: when reads need a token, an eviction's bar (its service,
// endpoint and reason) is told only to a caller who may read its
// service, and anyone else is told ErrInstanceNotFound.
func (r *Registry) notFoundFor(id string, covers func(service string) bool) error {
	return r.Conceal(r.notFound(id), covers)
}

// Conceal turns err, an *EvictedError, into ErrInstanceNotFound when
// reads need a token and covers (nil: nothing) does not hold the
// evicted instance's service; any other error passes unchanged.
func (r *Registry) Conceal(err error, covers func(service string) bool) error {
	var ee *EvictedError
	if r.cfg.PrivateReads && errors.As(err, &ee) && (covers == nil || !covers(ee.Bar.Service)) {
		return ErrInstanceNotFound
	}
	return err
}

// Evict removes instance id, for the holder of the admin token, and bars
// its endpoint from registering again for d (a replicated bar: every node
// and every restart keeps it). It is how an operator makes a removal
// stick while the instance's own process would register again at once.
// Errors: ErrNoCredential, ErrWrongToken, a *FieldError (d or reason),
// ErrNotReady, ErrInstanceNotFound, ErrUnavailable.
func (r *Registry) Evict(ctx context.Context, token, id string, d time.Duration, reason string) (_ *catalog.Bar, err error) {
	c, err := r.operator(ctx, audit.ActionEvict, token)
	if err != nil {
		return nil, err
	}
	ctx = asCaller(ctx, c)
	proposed := false
	defer func() {
		if err != nil && !proposed {
			r.record(ctx, audit.Record{Action: audit.ActionEvict, Instance: id}, err)
		}
	}()
	if d < MinEviction || d > MaxEviction {
		return nil, badField("for", "an eviction lasts from %s to %s", MinEviction, MaxEviction)
	}
	if len(reason) > maxReason || !catalog.Displayable(reason) {
		return nil, badField("reason", "reason must be at most %d printable characters", maxReason)
	}
	// The reason is the operator's words, kept in the Raft log, the bar,
	// its audit record and the refusals of the barred endpoint: a part
	// of it that looks like a secret is withheld before any of them.
	reason = r.scrub(reason)
	if err := r.Ready(); err != nil {
		return nil, err
	}
	inst, ok := r.cat.Instance(id)
	if !ok {
		return nil, r.notFoundFor(id, c.canRead)
	}
	if !c.canOperate(inst.Service) {
		return nil, &ScopeError{Service: inst.Service}
	}
	until := r.now().Add(d).UTC().Truncate(time.Millisecond)
	proposed = true // recorded by commit, or from the log
	if _, err := r.commit(ctx, catalog.Command{Op: catalog.OpEvict, ID: id, Until: until, Reason: reason}); err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return nil, r.notFoundFor(id, c.canRead)
		}
		return nil, err
	}
	r.live.Forget(id)
	r.log.Info("instance evicted", "id", id, "service", inst.Service, "address", inst.Address, "port", inst.Port,
		"until", until, "reason", reason)
	b, _ := r.cat.BarByInstance(id)
	return b, nil
}

// barred returns a *BarredError if an eviction bars the endpoint now.
func (r *Registry) barred(service, address string, port int) error {
	if b, ok := r.cat.Bar(service, address, port); ok && b.Until.After(r.now()) {
		return &BarredError{Bar: *b}
	}
	return nil
}
