package registry

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
)

// Heartbeat records a heartbeat of the instance id from the holder of its
// session token, and returns the instance as it was found (before any
// change the beat committed) and its status after the beat.
// It is a hot path: it touches only memory unless the instance was
// critical, in which case its return to passing is committed. Errors, in
// the order checked: ErrNotReady (during log replay an unknown ID is no
// reason to tell an instance to register again), ErrInstanceNotFound,
// ErrNoCredential, ErrWrongToken, ErrUnavailable.
func (r *Registry) Heartbeat(ctx context.Context, id, token string) (*catalog.Instance, catalog.Status, error) {
	if err := r.Ready(); err != nil {
		return nil, "", err
	}
	inst, _, err := r.instance(id)
	if err != nil {
		return nil, "", err
	}
	now := r.now()
	status, revive, err := r.beat(inst, id, token, now)
	if err != nil {
		r.beatRefused(ctx, inst, err)
		return nil, "", err
	}
	if revive {
		if status, err = r.revive(ctx, inst, now); err != nil {
			return nil, "", err
		}
	}
	return inst, status, nil
}

// beat judges a heartbeat of id with token, whose instance the catalog
// gave as inst (nil: none), in the order Heartbeat documents, and records
// it at now. It returns the instance's committed status, and whether
// this node is to commit its return from critical (revive): it leads, or
// is alone. A follower leaves that to the leader, which the beat reaches
// (see Replica.Heard) and which holds the instance's checks and its
// key's budget (Revive).
func (r *Registry) beat(inst *catalog.Instance, id, token string, now time.Time) (catalog.Status, bool, error) {
	switch {
	case inst == nil:
		// Only a session token comes here, and the instance is gone, so
		// nothing says the caller held it: with private reads, the bar
		// is not told.
		return "", false, r.notFoundFor(id, nil)
	case token == "":
		return "", false, ErrNoCredential
	case !inst.TokenMatches(token):
		return "", false, ErrWrongToken
	}
	status, revive := r.heard(inst, now)
	return status, revive, nil
}

// beatRefused records a heartbeat of inst refused for its session token
// (missing, or not the instance's): a failed authentication. Other
// refusals of heartbeats (an unknown instance) are no record.
func (r *Registry) beatRefused(ctx context.Context, inst *catalog.Instance, err error) {
	if inst != nil && (errors.Is(err, ErrNoCredential) || errors.Is(err, ErrWrongToken)) {
		r.record(ctx, audit.Record{Action: audit.ActionHeartbeat, Service: inst.Service, Instance: inst.ID, Key: inst.KeyID}, err)
	}
}

// heard records a heartbeat of inst, whose caller is authenticated, at
// now, and returns beat's status and revive.
func (r *Registry) heard(inst *catalog.Instance, now time.Time) (catalog.Status, bool) {
	r.live.Beat(inst.ID, now)
	status := health.Committed(inst) // the hot path: no further lookup
	return status, inst.Status == catalog.StatusCritical && (r.cfg.Replication == nil || r.cfg.Replication.Info().Leader)
}

// Revive brings the critical instance id back to passing, on the leader,
// after a heartbeat a follower heard and passed on, by the rules of a
// heartbeat heard here. It does nothing for an instance that is not
// critical, or on a node that does not lead.
func (r *Registry) Revive(ctx context.Context, id string) {
	inst, ok := r.cat.Instance(id)
	if !ok || inst.Status != catalog.StatusCritical || r.cfg.Replication == nil || !r.cfg.Replication.Info().Leader {
		return
	}
	if _, err := r.revive(ctx, inst, r.now()); err != nil {
		r.log.Warn("could not bring an instance back after a heartbeat through a follower", "id", id, "err", err)
	}
}

// revive commits a critical instance's return to passing after a
// heartbeat, unless its checks fail or its key is out of write budget.
func (r *Registry) revive(ctx context.Context, inst *catalog.Instance, now time.Time) (catalog.Status, error) {
	// The return to passing is a write, and an instance that flaps (a
	// TTL of 1 s, a heartbeat every 2 s) would write for ever: it spends
	// from its key's write budget, the one registrations spend. Out of
	// budget, the beat is kept in memory and the instance stays critical
	// until a later beat finds budget.
	if r.checksFailing(inst.ID) {
		// Its checks hold it down: the heartbeat alone does not make it
		// passing. The checks bring it back when they pass.
		return catalog.StatusCritical, nil
	}
	if ok, _ := r.registrations.Allow(now, inst.KeyID); !ok {
		return catalog.StatusCritical, nil
	}
	r.registrations.Spend(now, inst.KeyID)
	_, err := r.propose(ctx, catalog.Command{Op: catalog.OpSetStatus, ID: inst.ID, Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical,
		Reason: "heartbeat", Origin: origin(ctx)})
	switch {
	case err == nil:
		r.log.Info("instance passing again", "id", inst.ID, "service", inst.Service)
	case errors.Is(err, catalog.ErrConflict): // the sweep or another beat won
	case errors.Is(err, catalog.ErrNotFound): // the sweep removed it meanwhile
		return "", ErrInstanceNotFound
	default:
		return "", err
	}
	return r.statusNow(inst), nil
}

// statusNow is the status to report for an instance that has just been
// heard from or changed: the catalog's latest word on it.
func (r *Registry) statusNow(inst *catalog.Instance) catalog.Status {
	if cur, ok := r.cat.Instance(inst.ID); ok {
		inst = cur
	}
	return health.Committed(inst)
}

// instance returns the instance id for a write that names it; on a
// follower that does not hold it, after catching up with the leader (it
// may have been registered through another server). Errors:
// ErrUnavailable (see catchUp).
func (r *Registry) instance(id string) (*catalog.Instance, bool, error) {
	inst, ok := r.cat.Instance(id)
	if ok {
		return inst, true, nil
	}
	again, err := r.catchUp()
	if err != nil || !again {
		return nil, false, err
	}
	inst, ok = r.cat.Instance(id)
	return inst, ok, nil
}

// owned resolves the instance id for a caller that must hold its session
// token or the admin token. Errors: ErrNotReady, ErrInstanceNotFound,
// ErrNoCredential, ErrWrongToken; each is a record of action.
func (r *Registry) owned(ctx context.Context, action audit.Action, id, token string) (inst *catalog.Instance, c Caller, err error) {
	// c is the caller's token, once looked at: the zero Caller for the
	// instance's own session token.
	defer func() {
		if err != nil {
			rec := audit.Record{Action: action, Instance: id}
			var evicted *EvictedError
			if inst != nil {
				rec.Service, rec.Key = inst.Service, inst.KeyID
			} else if errors.As(err, &evicted) {
				// Gone by an eviction, whose bar still names it: most
				// often its own process leaving as it stops.
				rec.Service = evicted.Bar.Service
			}
			if k := c.KeyID(); k != "" {
				rec.Key = k // refused a token of its own: it is who asked
			}
			r.record(ctx, rec, err)
		}
	}()
	if err := r.Ready(); err != nil {
		return nil, c, err
	}
	inst, ok, err := r.instance(id)
	if err != nil {
		return nil, c, err
	}
	if !ok {
		c, _ = r.Authenticate(token)
		return nil, c, r.notFoundFor(id, c.canRead)
	}
	if token == "" {
		return inst, c, ErrNoCredential
	}
	if inst.TokenMatches(token) {
		return inst, c, nil
	}
	// Not the instance's own: the admin token, or a token of the admin
	// role or of the operator role whose scope holds the service.
	c, err = r.Authenticate(token)
	switch {
	case errors.Is(err, ErrTokenExpired) || errors.Is(err, ErrUnavailable):
		return inst, c, err
	case err != nil:
		return inst, c, ErrWrongToken
	case c.canOperate(inst.Service):
		return inst, c, nil
	case c.Role() == catalog.RoleOperator:
		return inst, c, &ScopeError{Service: inst.Service}
	}
	return inst, c, ErrWrongToken
}

// Deregister removes the instance id, for the holder of its session token
// or of the admin token, and returns the index of the removal. Errors: as
// owned, then catalog.ErrNotFound (removed meanwhile), ErrUnavailable.
func (r *Registry) Deregister(ctx context.Context, id, token string) (uint64, error) {
	inst, c, err := r.owned(ctx, audit.ActionDeregister, id, token)
	if err != nil {
		return 0, err
	}
	ctx = asCaller(ctx, c)
	res, err := r.commit(ctx, catalog.Command{Op: catalog.OpDeregister, ID: inst.ID, Reason: "api"})
	if err != nil {
		return 0, err
	}
	r.live.Forget(inst.ID)
	r.log.Info("instance deregistered", "id", inst.ID, "service", inst.Service, "index", res.Index)
	return res.Index, nil
}

// Drain marks the instance id draining, for the holder of its session
// token or of the admin token: it stays registered and heartbeating but
// leaves default lookups, so clients stop sending it new work before it
// deregisters. It returns the instance as it was found (before the drain)
// and its status after the drain.
// Errors: as Deregister.
func (r *Registry) Drain(ctx context.Context, id, token string) (*catalog.Instance, catalog.Status, error) {
	inst, c, err := r.owned(ctx, audit.ActionDrain, id, token)
	if err != nil {
		return nil, "", err
	}
	ctx = asCaller(ctx, c)
	if inst.Draining {
		// Already draining: nothing to write. (A drain committed for
		// every call would let a token holder grow the log without end.)
		r.record(ctx, audit.Record{Action: audit.ActionDrain, Reason: "already draining", Service: inst.Service, Instance: inst.ID, Key: inst.KeyID}, nil)
		return inst, r.statusNow(inst), nil
	}
	if _, err := r.commit(ctx, catalog.Command{Op: catalog.OpDrain, ID: inst.ID, Reason: "api"}); err != nil {
		return nil, "", err
	}
	r.log.Info("instance draining", "id", inst.ID, "service", inst.Service)
	return inst, r.statusNow(inst), nil
}

// Instance returns one instance as a reader sees it now. Errors:
// ErrNotReady, ErrInstanceNotFound.
func (r *Registry) Instance(id string) (Entry, error) {
	floor, ok := r.live.Floor()
	if !ok {
		return Entry{}, ErrNotReady
	}
	inst, ok := r.cat.Instance(id)
	if !ok {
		return Entry{}, r.notFound(id)
	}
	return entry(r.live, r.monitor.Load(), inst, floor, r.now()), nil
}

// BeatResult is the fate of one api.Beat: as Heartbeat's results, the
// instance as it was found and its status after the beat, or Err.
type BeatResult struct {
	Inst   *catalog.Instance
	Status catalog.Status
	Err    error
}

// maxRevivals is how many returns to passing one batch commits at once.
const maxRevivals = 16

// Heartbeats records a batch of heartbeats, each with its own instance's
// session token, as Heartbeat records one, and sets out[i] to the fate of
// beats[i] (out must be as long as beats). The batch is one call's worth
// of work for a host, or an SDK, that beats for many instances (front ends
// bound its size: api.MaxBeats); a beat's
// failure is its own and never fails the batch. The call fails as a
// whole only with ErrNotReady (nothing was recorded). On a follower, the
// IDs it does not hold make it catch up with the leader once for the
// whole batch; critical instances brought back to passing are committed
// concurrently, at most maxRevivals at a time.
func (r *Registry) Heartbeats(ctx context.Context, beats []api.Beat, out []BeatResult) error {
	if err := r.Ready(); err != nil {
		return err
	}
	missing := false
	for i, b := range beats {
		inst, ok := r.cat.Instance(b.ID)
		out[i] = BeatResult{Inst: inst}
		missing = missing || !ok
	}
	if missing {
		again, err := r.catchUp()
		for i, b := range beats {
			if out[i].Inst != nil {
				continue
			}
			switch {
			case err != nil:
				out[i].Err = err
			case again:
				out[i].Inst, _ = r.cat.Instance(b.ID)
			}
		}
	}
	var revive []int // the beats of critical instances this node brings back
	for i, b := range beats {
		res := &out[i]
		if res.Err != nil {
			continue
		}
		status, again, err := r.beat(res.Inst, b.ID, b.Token, r.now())
		if err != nil {
			r.beatRefused(ctx, res.Inst, err)
			res.Inst, res.Err = nil, err
			continue
		}
		res.Status = status
		if again {
			revive = append(revive, i)
		}
	}
	if len(revive) == 0 {
		return nil
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxRevivals)
	for _, i := range revive {
		slots <- struct{}{}
		wg.Add(1)
		go func(res *BeatResult) {
			defer func() { <-slots; wg.Done() }()
			status, err := r.revive(ctx, res.Inst, r.now())
			if err != nil {
				res.Inst, res.Err = nil, err
				return
			}
			res.Status = status
		}(&out[i])
	}
	wg.Wait()
	return nil
}
