package registry

import (
	"context"
	"errors"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
)

// The audit trail (see package audit). A decision that goes through Raft
// is recorded from the applied log, on every node, by the FSM: the
// registry puts the caller's address into the command's origin. Every
// other outcome of a workflow (a refusal before anything was proposed, a
// write that could not be committed, an admin action that is not a
// command) is recorded here, once, in this node's local journal.

type callerKey struct{}

// WithCaller returns ctx carrying addr, the address (host:port) a front
// end received the request from: the caller of the audit records of what
// the request decides. The HTTP server sets it once per connection.
func WithCaller(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, callerKey{}, addr)
}

// callerOf is the address WithCaller put in ctx, or "".
func callerOf(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// byKey carries the name of the credential that asked (see asCaller).
type byKey struct{}

// asCaller returns ctx carrying the name of c's credential, for the
// origin of the commands it proposes: "admin" for the admin token, a
// token's ID; ctx itself for no credential.
func asCaller(ctx context.Context, c Caller) context.Context {
	by := c.KeyID()
	if by == "" && c.admin {
		by = "admin"
	}
	if by == "" {
		return ctx
	}
	return context.WithValue(ctx, byKey{}, by)
}

// origin is the origin of a command proposed for ctx's caller (the node
// and the time are stamped by the replication layer).
func origin(ctx context.Context) *catalog.Origin {
	by, _ := ctx.Value(byKey{}).(string)
	return &catalog.Origin{Caller: callerOf(ctx), Token: by}
}

// outcomeOf is the outcome of a workflow that returned err: failed when
// the registry could not do it (not ready, no leader, busy, stopping, the
// caller gone), refused otherwise.
func outcomeOf(err error) audit.Outcome {
	switch {
	case err == nil:
		return audit.OutcomeOK
	case errors.Is(err, ErrNotReady), errors.Is(err, ErrUnavailable), errors.Is(err, ErrBusy), errors.Is(err, ErrOverloaded),
		errors.Is(err, ErrClosed), errors.Is(err, ErrTooManyWaiters), errors.Is(err, ErrStale), errors.Is(err, ErrNoReadIndex),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return audit.OutcomeFailed
	}
	return audit.OutcomeRefused
}

// record writes rec, an outcome decided here alone, to the local
// journal, with ctx's caller; err, if not nil, is its reason (after
// rec's own, if it has one).
func (r *Registry) record(ctx context.Context, rec audit.Record, err error) {
	if r.audit == nil {
		return
	}
	rec.Outcome = outcomeOf(err)
	if err != nil && rec.Reason != "" {
		rec.Reason += ": " + audit.Reason(err)
	} else if err != nil {
		rec.Reason = audit.Reason(err)
	}
	if rec.Caller == "" {
		rec.Caller = callerOf(ctx)
	}
	if rec.By == "" {
		rec.By, _ = ctx.Value(byKey{}).(string)
	}
	r.audit.Record(rec)
}

// commit proposes cmd for ctx's caller. A command that was applied (or
// refused by the catalog when applied) is recorded from the log; one
// that never was (no leader, a full disk, the node closing, a timeout
// whose fate is unknown) is recorded here.
func (r *Registry) commit(ctx context.Context, cmd catalog.Command) (catalog.Result, error) {
	cmd.Origin = origin(ctx)
	res, err := r.propose(ctx, cmd)
	if err != nil && res.Index == 0 {
		if rec, ok := audit.FromCommand(0, cmd, catalog.Result{}); ok {
			r.record(ctx, rec, err)
		}
	}
	return res, err
}

// Refuse records a refusal a front end made itself, after the registry
// had admitted the request (its body did not parse, say): rec names the
// action and what is known of it, err is why.
func (r *Registry) Refuse(ctx context.Context, rec audit.Record, err error) {
	r.record(ctx, rec, err)
}

// AuditLog returns the node's audit trail, for its counters; nil when
// the registry keeps none.
func (r *Registry) AuditLog() *audit.Log { return r.audit }

// Audit reads this node's audit trail (see audit.Query), for the holder
// of the admin token. Errors: ErrNoCredential, ErrWrongToken (each a
// record: a failed authentication), audit.ErrBadQuery, audit.ErrBusy.
func (r *Registry) Audit(ctx context.Context, token string, q audit.Query) (audit.Page, error) {
	c, err := r.operator(ctx, audit.ActionAuditRead, token)
	if err != nil {
		return audit.Page{}, err
	}
	q.Scope = auditScope(c)
	return r.audit.Query(ctx, q)
}

// WaitAudit is Audit as a blocking query, for a reader that follows the
// trail: q must go on from a cursor (q.After), and the call returns once
// records after it match q, or when wait (plus a little jitter) has
// passed or ctx ends, with what there is then. It holds one of the
// blocking queries' places (Config.MaxWaiters, MaxWaitersPerClient).
// Errors: as Audit, and ErrTooManyWaiters.
func (r *Registry) WaitAudit(ctx context.Context, client, token string, q audit.Query, wait time.Duration) (audit.Page, error) {
	c, err := r.operator(ctx, audit.ActionAuditRead, token)
	if err != nil {
		return audit.Page{}, err
	}
	q.Scope = auditScope(c)
	if err := q.Validate(); err != nil {
		return audit.Page{}, err
	}
	release, ok := r.hold(client)
	if !ok {
		return audit.Page{}, ErrTooManyWaiters
	}
	defer release()
	wctx, cancel := context.WithTimeout(ctx, jittered(wait))
	defer cancel()
	for {
		p, err := r.audit.Query(ctx, q)
		if err != nil || len(p.Records) > 0 || p.More || q.After == nil || wctx.Err() != nil {
			return p, err
		}
		// Nothing matched yet: wait for a write after where this read
		// ended, and read from there.
		next := p.Next
		q.After = &next
		r.audit.Wait(wctx, next)
		if wctx.Err() != nil {
			return r.audit.Query(ctx, q)
		}
	}
}

// auditScope is what of the audit trail the caller reads: all of it for
// the admin token and the admin role, and for an operator the records of
// the services its patterns cover (records that name no service, such
// as a key's creation, are the admin's).
func auditScope(c Caller) func(service string) bool {
	if c.admin {
		return nil
	}
	return func(service string) bool { return service != "" && c.key.Allows(service) }
}
