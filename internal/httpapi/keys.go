package httpapi

import (
	"net/http"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
)

const (
	maxKeyPatterns    = 32
	maxDescriptionLen = 256
)

// validateCreateKey checks a POST /v1/keys body.
func validateCreateKey(req *api.CreateKeyRequest) *Error {
	if len(req.Services) == 0 {
		return badField("services", "at least one service name pattern is required")
	}
	if len(req.Services) > maxKeyPatterns {
		return badField("services", "at most %d patterns", maxKeyPatterns)
	}
	for _, p := range req.Services {
		if !catalog.ValidPattern(p) {
			return badField("services", "pattern %q: 1 to 63 of a-z 0-9 - _ and *", p)
		}
	}
	if len(req.Description) > maxDescriptionLen {
		return badField("description", "at most %d bytes", maxDescriptionLen)
	}
	return nil
}

func keyToAPI(k *catalog.Key) api.Key {
	return api.Key{ID: k.ID, Services: k.Services, Description: k.Description, CreatedAt: k.CreatedAt.UTC().Format(time.RFC3339)}
}

func (a *apiServer) createKey(w http.ResponseWriter, r *http.Request) {
	if !a.requireAdmin(w, r) {
		return
	}
	var req api.CreateKeyRequest
	if err := decodeJSON(w, r, a.MaxBody, &req); err != nil {
		writeError(w, a.Logger, err)
		return
	}
	if err := validateCreateKey(&req); err != nil {
		writeError(w, a.Logger, err)
		return
	}
	secret := "mk_" + catalog.RandomSecret()
	k := &catalog.Key{
		ID:          "key_" + catalog.RandomID(8),
		SecretHash:  catalog.HashSecret(secret),
		Services:    req.Services,
		Description: req.Description,
		CreatedAt:   a.Now().UTC().Truncate(time.Second),
	}
	res, err := a.Node.Apply(r.Context(), catalog.Command{Op: catalog.OpCreateKey, Key: k, Reason: "api"})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		writeError(w, a.Logger, err)
		return
	}
	a.Logger.Info("enrolment key created", "key_id", k.ID, "services", k.Services)
	out := keyToAPI(k)
	out.Secret = secret
	writeJSON(w, http.StatusCreated, out)
}

func (a *apiServer) listKeys(w http.ResponseWriter, r *http.Request) {
	if !a.requireAdmin(w, r) {
		return
	}
	if _, ok := a.readyFloor(w); !ok {
		return
	}
	keys := a.Catalog.Keys()
	out := api.KeysResponse{Keys: make([]api.Key, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, keyToAPI(k))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *apiServer) revokeKey(w http.ResponseWriter, r *http.Request) {
	if !a.requireAdmin(w, r) {
		return
	}
	id := r.PathValue("id")
	res, err := a.Node.Apply(r.Context(), catalog.Command{Op: catalog.OpRevokeKey, ID: id, Reason: "api"})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		writeError(w, a.Logger, err)
		return
	}
	a.Logger.Info("enrolment key revoked", "key_id", id)
	w.WriteHeader(http.StatusNoContent)
}
