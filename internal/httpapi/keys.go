package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

var adminAuth = authMessages{
	missing: "admin token required (Authorization: Bearer ...)",
	wrong:   "this token is not the admin token",
}

func (a *apiServer) keyToAPI(k *catalog.Key) api.Key {
	limit, held := a.reg.KeyUsage(k)
	out := api.Key{ID: k.ID, Services: k.Services, Description: k.Description, MaxInstances: limit, Instances: held,
		CreatedAt: k.CreatedAt.UTC().Format(time.RFC3339)}
	if k.CallbackTLSOrDefault() == catalog.CallbackTLSAny {
		out.CallbackTLS = string(catalog.CallbackTLSAny)
	}
	return out
}

// createKey handles POST /v1/keys. The admin token is checked before the
// body is read.
func (a *apiServer) createKey(w http.ResponseWriter, r *http.Request) error {
	tok := Bearer(r)
	if err := a.reg.Admin(r.Context(), audit.ActionKeyCreate, tok); err != nil {
		return adminAuth.apply(err)
	}
	var req api.CreateKeyRequest
	if err := decodeJSON(w, r, a.maxBody, &req); err != nil {
		a.reg.Refuse(r.Context(), audit.Record{Action: audit.ActionKeyCreate}, err)
		return err
	}
	k, secret, err := a.reg.CreateKey(r.Context(), tok, registry.KeySpec{Services: req.Services, Description: req.Description, MaxInstances: req.MaxInstances,
		CallbackTLS: req.CallbackTLS})
	if err != nil {
		return adminAuth.apply(err)
	}
	out := a.keyToAPI(k)
	out.Secret = secret
	WriteJSON(w, http.StatusCreated, out)
	return nil
}

// listKeys handles GET /v1/keys.
func (a *apiServer) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := a.reg.Keys(r.Context(), Bearer(r))
	if err != nil {
		return adminAuth.apply(err)
	}
	out := api.KeysResponse{Keys: make([]api.Key, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, a.keyToAPI(k))
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

// revokeKey handles DELETE /v1/keys/{id}.
func (a *apiServer) revokeKey(w http.ResponseWriter, r *http.Request) error {
	if err := a.reg.RevokeKey(r.Context(), Bearer(r), r.PathValue("id")); err != nil {
		return adminAuth.apply(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// snapshot handles GET /v1/snapshot (admin token): the whole catalog as of
// one index, the backup that `muster snapshot restore` brings back.
func (a *apiServer) snapshot(w http.ResponseWriter, r *http.Request) error {
	s, index, err := a.reg.Snapshot(r.Context(), Bearer(r))
	if err != nil {
		return adminAuth.apply(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(index, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := s.WriteTo(w); err != nil {
		a.log.Debug("snapshot answer cut short", "err", err)
	}
	return nil
}
