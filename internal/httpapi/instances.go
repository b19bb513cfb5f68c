package httpapi

import (
	"cmp"
	"encoding/json"
	"net/http"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

var (
	heartbeatAuth = authMessages{
		missing:  "session token required (Authorization: Bearer ...)",
		wrong:    "session token does not match this instance",
		notFound: "instance not registered; register again",
	}
	ownerAuth = authMessages{
		missing: "the instance's session token, an operator token of its service, or an admin token is required",
		wrong:   "token is neither this instance's session token, nor an operator token of its service, nor an admin token",
	}
)

// heartbeat handles PUT /v1/instances/{id}/heartbeat. It is a hot path:
// the answer is small and fixed in shape, so it is assembled by hand in a
// stack buffer (both values are JSON-safe by construction).
func (a *apiServer) heartbeat(w http.ResponseWriter, r *http.Request) error {
	inst, status, err := a.reg.Heartbeat(r.Context(), r.PathValue("id"), Bearer(r))
	if err != nil {
		err = heartbeatAuth.apply(err)
		a.beats(1, counted(tokenRefused(err)))
		return err
	}
	a.beats(1, 0)
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
	// An instance may read itself with its session token, reads private
	// or not: a registration whose checks alone keep it (no heartbeats)
	// asks whether the registry still holds it this way.
	own := false
	if tok := Bearer(r); tok != "" && !a.reg.AnonymousReads() {
		if e, err := a.reg.Instance(r.PathValue("id")); err == nil && e.Instance.TokenMatches(tok) {
			own = true
		}
	}
	var scope registry.ReadScope
	if !own {
		var err error
		if scope, err = a.reader(r); err != nil {
			return err
		}
	}
	if err := a.beginRead(w, r, mode); err != nil {
		return err
	}
	e, err := a.reg.Instance(r.PathValue("id"))
	if err != nil {
		return a.reg.Conceal(err, scope.Covers)
	}
	if !own {
		if err := a.reg.CheckRead(r.Context(), scope, e.Instance.Service); err != nil {
			return err
		}
	}
	b := appendInstance(nil, encodeStatic(e.Instance), e)
	writeRaw(w, http.StatusOK, append(b, '\n'))
	return nil
}

// evict handles POST /v1/instances/{id}/evict (an operator of the
// instance's service, or an admin): the instance
// is removed and its endpoint barred from registering for a while.
func (a *apiServer) evict(w http.ResponseWriter, r *http.Request) error {
	tok := Bearer(r)
	if err := a.reg.Operator(r.Context(), audit.ActionEvict, tok); err != nil {
		return operatorAuth.apply(err)
	}
	refuse := func(err error) error {
		a.reg.Refuse(r.Context(), audit.Record{Action: audit.ActionEvict, Instance: r.PathValue("id")}, err)
		return err
	}
	var req api.EvictRequest
	if err := decodeJSON(w, r, a.maxBody, &req); err != nil {
		return refuse(err)
	}
	d, err := time.ParseDuration(req.For)
	if err != nil {
		return refuse(BadField("for", "for %q is not a duration such as 10m", req.For))
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

// maxBeatsBody bounds a batch of heartbeats: api.MaxBeats beats with IDs
// of the longest kind and session tokens, with room for whitespace.
const maxBeatsBody = api.MaxBeats * (catalog.MaxIDLen + 128)

// heartbeats handles POST /v1/heartbeats: many instances' heartbeats in
// one request, each with its own session token, answered one result per
// beat in order. It is the fast channel of hosts and SDKs that beat for
// many instances; the per-beat work is that of PUT
// /v1/instances/{id}/heartbeat without the cost of a request.
func (a *apiServer) heartbeats(w http.ResponseWriter, r *http.Request) error {
	// The bytes this body may hold while it is read: what it declares,
	// or, sent in chunks, the most a batch may be.
	size := int64(maxBeatsBody)
	if r.ContentLength > maxBeatsBody {
		return Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "", "body larger than %d bytes", maxBeatsBody)
	} else if r.ContentLength >= 0 {
		size = r.ContentLength
	}
	client := ClientOf(r)
	if !a.beatBodies.reserve(client, size) {
		e := Errorf(http.StatusServiceUnavailable, api.CodeBusy, "", "too many batches of heartbeats are being received (from this address, or in all); retry, or send each heartbeat alone")
		e.RetryAfter = 1
		return e
	}
	defer a.beatBodies.release(client, size)
	var req api.HeartbeatsRequest
	if err := decodeJSON(w, r, maxBeatsBody, &req); err != nil {
		return err
	}
	switch {
	case len(req.Beats) == 0:
		return BadField("beats", "beats must hold 1 to %d heartbeats", api.MaxBeats)
	case len(req.Beats) > api.MaxBeats:
		return BadField("beats", "beats holds %d heartbeats; at most %d per request", len(req.Beats), api.MaxBeats)
	}
	out := make([]registry.BeatResult, len(req.Beats))
	if err := a.reg.Heartbeats(r.Context(), req.Beats, out); err != nil {
		return err
	}
	b := make([]byte, 0, 16+len(out)*40)
	b = append(b, `{"results":[`...)
	refused := 0
	for i, res := range out {
		if i > 0 {
			b = append(b, ',')
		}
		var tokenRefused bool
		b, tokenRefused = appendBeatResult(b, res)
		refused += counted(tokenRefused)
	}
	a.beats(len(out), refused)
	b = append(b, "]}\n"...)
	writeRaw(w, http.StatusOK, b)
	return nil
}

// appendBeatResult appends one beat's result: by hand for a recorded beat
// (both values are JSON-safe by construction), through encoding/json for
// a refusal, as the per-instance heartbeat would have answered it.
func appendBeatResult(b []byte, res registry.BeatResult) (_ []byte, tokenRefused bool) {
	if res.Err == nil {
		b = append(b, `{"ttl":"`...)
		b = append(b, res.Inst.TTL.String()...)
		b = append(b, `","status":"`...)
		b = append(b, res.Status...)
		return append(b, `"}`...), false
	}
	e := APIError(heartbeatAuth.apply(res.Err))
	tokenRefused = refusesToken(e)
	enc, err := json.Marshal(api.BeatResult{Error: &e.ErrorDetail, HTTPStatus: e.Status, RetryAfterS: e.RetryAfter})
	if err != nil { // cannot happen: strings and ints only
		return append(b, `{"error":{"code":"internal","message":"internal error","http_status":500}}`...), tokenRefused
	}
	return append(b, enc...), tokenRefused
}
