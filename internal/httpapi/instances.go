package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
)

// heartbeat handles PUT /v1/instances/{id}/heartbeat. It is a hot path: it
// touches only memory unless the instance was critical, in which case the
// transition back to passing is committed through Raft.
func (a *apiServer) heartbeat(w http.ResponseWriter, r *http.Request) {
	// Readiness first: during log replay an unknown ID is not yet a reason
	// to tell the instance to register again.
	if _, ok := a.readyFloor(w); !ok {
		return
	}
	inst, ok := a.Catalog.Instance(r.PathValue("id"))
	if !ok {
		writeError(w, a.Logger, errorf(http.StatusNotFound, api.CodeNotFound, "", "instance not registered; register again"))
		return
	}
	tok := bearer(r)
	if tok == "" {
		writeError(w, a.Logger, errorf(http.StatusUnauthorized, api.CodeUnauthorized, "", "session token required (Authorization: Bearer ...)"))
		return
	}
	if !inst.TokenMatches(tok) {
		writeError(w, a.Logger, errorf(http.StatusForbidden, api.CodeForbidden, "", "session token does not match this instance"))
		return
	}
	status, err := a.beat(r.Context(), inst)
	if err != nil {
		writeError(w, a.Logger, err)
		return
	}
	// A hot path: the answer is small and fixed in shape, so it is
	// assembled by hand (both values are JSON-safe by construction).
	var buf [64]byte
	b := append(buf[:0], `{"ttl":"`...)
	b = append(b, inst.TTLString()...)
	b = append(b, `","status":"`...)
	b = append(b, status...)
	b = append(b, "\"}\n"...)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// beat records a heartbeat of inst and, if it was critical, commits its
// return to passing. It returns the instance's status after the beat.
func (a *apiServer) beat(ctx context.Context, inst *catalog.Instance) (string, error) {
	a.Tracker.Beat(inst.ID, a.Now())
	if inst.Status != catalog.StatusCritical {
		return health.Committed(inst), nil // the hot path: no further lookup
	}
	res, err := a.Node.Apply(ctx, catalog.Command{Op: catalog.OpSetStatus, ID: inst.ID, Status: catalog.StatusPassing, IfStatus: catalog.StatusCritical, Reason: "heartbeat"})
	if err == nil {
		err = res.Err
	}
	switch {
	case err == nil:
		a.Logger.Info("instance passing again", "id", inst.ID, "service", inst.Service)
	case errors.Is(err, catalog.ErrConflict): // the sweep or another beat won
	default:
		return "", err
	}
	return a.statusNow(inst), nil
}

// statusNow is the status to report for an instance that has just been
// heard from or changed: the catalog's latest word on it.
func (a *apiServer) statusNow(inst *catalog.Instance) string {
	if cur, ok := a.Catalog.Instance(inst.ID); ok {
		inst = cur
	}
	return health.Committed(inst)
}

// instanceForOwner resolves the instance named in the path for a caller
// that must hold its session token or the admin token. On failure it writes
// the error and returns false.
func (a *apiServer) instanceForOwner(w http.ResponseWriter, r *http.Request) (*catalog.Instance, bool) {
	if _, ok := a.readyFloor(w); !ok {
		return nil, false
	}
	inst, ok := a.Catalog.Instance(r.PathValue("id"))
	if !ok {
		writeError(w, a.Logger, errorf(http.StatusNotFound, api.CodeNotFound, "", "instance not registered"))
		return nil, false
	}
	tok := bearer(r)
	if tok == "" {
		writeError(w, a.Logger, errorf(http.StatusUnauthorized, api.CodeUnauthorized, "", "session token or admin token required"))
		return nil, false
	}
	if !inst.TokenMatches(tok) && !a.isAdmin(r) {
		writeError(w, a.Logger, errorf(http.StatusForbidden, api.CodeForbidden, "", "token is neither this instance's session token nor the admin token"))
		return nil, false
	}
	return inst, true
}

// deregister handles DELETE /v1/instances/{id} with the instance's session
// token or the admin token.
func (a *apiServer) deregister(w http.ResponseWriter, r *http.Request) {
	inst, ok := a.instanceForOwner(w, r)
	if !ok {
		return
	}
	res, err := a.Node.Apply(r.Context(), catalog.Command{Op: catalog.OpDeregister, ID: inst.ID, Reason: "api"})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		writeError(w, a.Logger, err)
		return
	}
	a.Tracker.Forget(inst.ID)
	a.Logger.Info("instance deregistered", "id", inst.ID, "service", inst.Service, "index", res.Index)
	w.WriteHeader(http.StatusNoContent)
}

// drain handles PUT /v1/instances/{id}/drain: the instance stays registered
// and heartbeating but leaves default lookups, so clients stop sending it
// new work before it deregisters.
func (a *apiServer) drain(w http.ResponseWriter, r *http.Request) {
	inst, ok := a.instanceForOwner(w, r)
	if !ok {
		return
	}
	res, err := a.Node.Apply(r.Context(), catalog.Command{Op: catalog.OpDrain, ID: inst.ID, Reason: "api"})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		writeError(w, a.Logger, err)
		return
	}
	a.Logger.Info("instance draining", "id", inst.ID, "service", inst.Service)
	writeJSON(w, http.StatusOK, api.HeartbeatResponse{TTL: inst.TTLString(), Status: a.statusNow(inst)})
}

func (a *apiServer) getInstance(w http.ResponseWriter, r *http.Request) {
	floor, ok := a.readyFloor(w)
	if !ok {
		return
	}
	inst, ok := a.Catalog.Instance(r.PathValue("id"))
	if !ok {
		writeError(w, a.Logger, errorf(http.StatusNotFound, api.CodeNotFound, "", "instance not registered"))
		return
	}
	writeJSON(w, http.StatusOK, a.toAPI(inst, floor, a.Now()))
}
