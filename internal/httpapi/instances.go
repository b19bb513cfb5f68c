package httpapi

import (
	"cmp"
	"net/http"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
)

var (
	heartbeatAuth = authMessages{
		missing:  "session token required (Authorization: Bearer ...)",
		wrong:    "session token does not match this instance",
		notFound: "instance not registered; register again",
	}
	ownerAuth = authMessages{
		missing: "session token or admin token required",
		wrong:   "token is neither this instance's session token nor the admin token",
	}
)

// heartbeat handles PUT /v1/instances/{id}/heartbeat. It is a hot path:
// the answer is small and fixed in shape, so it is assembled by hand in a
// stack buffer (both values are JSON-safe by construction).
func (a *apiServer) heartbeat(w http.ResponseWriter, r *http.Request) error {
	inst, status, err := a.reg.Heartbeat(r.Context(), r.PathValue("id"), Bearer(r))
	if err != nil {
		return heartbeatAuth.apply(err)
	}
	var buf [64]byte
	b := append(buf[:0], `{"ttl":"`...)
	b = append(b, inst.TTL.String()...)
	b = append(b, `","status":"`...)
	b = append(b, status...)
	b = append(b, "\"}\n"...)
	writeRaw(w, http.StatusOK, b)
	return nil
}

// deregister handles DELETE /v1/instances/{id} with the instance's session
// token or the admin token.
func (a *apiServer) deregister(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.reg.Deregister(r.Context(), r.PathValue("id"), Bearer(r)); err != nil {
		return ownerAuth.apply(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// drain handles PUT /v1/instances/{id}/drain: the instance stays registered
// and heartbeating but leaves default lookups.
func (a *apiServer) drain(w http.ResponseWriter, r *http.Request) error {
	inst, status, err := a.reg.Drain(r.Context(), r.PathValue("id"), Bearer(r))
	if err != nil {
		return ownerAuth.apply(err)
	}
	WriteJSON(w, http.StatusOK, api.HeartbeatResponse{TTL: inst.TTL.String(), Status: string(status)})
	return nil
}

// getInstance handles GET /v1/instances/{id}.
func (a *apiServer) getInstance(w http.ResponseWriter, r *http.Request) error {
	q, qerr := query(r)
	if qerr != nil {
		return qerr
	}
	mode, qerr := readMode(q)
	if qerr != nil {
		return qerr
	}
	for k := range q {
		return BadField(cmp.Or(k, "query"), "unknown query parameter %q", k)
	}
	if err := a.beginRead(w, r, mode); err != nil {
		return err
	}
	e, err := a.reg.Instance(r.PathValue("id"))
	if err != nil {
		return err
	}
	b := appendInstance(nil, encodeStatic(e.Instance), e)
	writeRaw(w, http.StatusOK, append(b, '\n'))
	return nil
}

// evict handles POST /v1/instances/{id}/evict (admin token): the instance
// is removed and its endpoint barred from registering for a while.
func (a *apiServer) evict(w http.ResponseWriter, r *http.Request) error {
	tok := Bearer(r)
	if err := a.reg.CheckAdmin(tok); err != nil {
		return adminAuth.apply(err)
	}
	var req api.EvictRequest
	if err := decodeJSON(w, r, a.maxBody, &req); err != nil {
		return err
	}
	d, err := time.ParseDuration(req.For)
	if err != nil {
		return BadField("for", "for %q is not a duration such as 10m", req.For)
	}
	b, err := a.reg.Evict(r.Context(), tok, r.PathValue("id"), d, req.Reason)
	if err != nil {
		return adminAuth.apply(err)
	}
	WriteJSON(w, http.StatusOK, evictionToAPI(b))
	return nil
}

func evictionToAPI(b *catalog.Bar) api.Eviction {
	return api.Eviction{ID: b.Instance, Service: b.Service, Address: b.Address, Port: b.Port,
		Until: b.Until.UTC().Format(time.RFC3339Nano), Reason: b.Reason, Index: b.Index}
}
