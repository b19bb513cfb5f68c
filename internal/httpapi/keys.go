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
	wrong:   "this token is neither the admin token nor a token of the admin role",
}

var operatorAuth = authMessages{
	missing: "an admin or operator token is required (Authorization: Bearer ...)",
	wrong:   "this token is not the admin token, nor a token of the admin or operator role",
}

func (a *apiServer) keyToAPI(k *catalog.Key) api.Key {
	limit, held := a.reg.KeyUsage(k)
	out := api.Key{ID: k.ID, Services: k.Services, Description: k.Description, MaxInstances: limit, Instances: held,
		CreatedAt: k.CreatedAt.UTC().Format(time.RFC3339)}
	if k.CallbackTLSOrDefault() == catalog.CallbackTLSAny {
		out.CallbackTLS = string(catalog.CallbackTLSAny)
	}
	if k.ConsulVerifyOrDefault() == catalog.ConsulVerifyNone {
		out.ConsulVerify = string(catalog.ConsulVerifyNone)
	}
	out.Role = string(k.RoleOrDefault())
	if out.Role != string(catalog.RoleRegister) {
		out.MaxInstances, out.Instances = 0, 0 // only enrolment keys hold instances
	}
	if !k.ExpiresAt.IsZero() {
		out.ExpiresAt = k.ExpiresAt.UTC().Format(time.RFC3339)
		out.Expired = k.Expired(time.Now())
	}
	return out
}

// createToken handles POST /v1/tokens: a token of any role.
func (a *apiServer) createToken(w http.ResponseWriter, r *http.Request) error {
	return a.newToken(w, r, func() (registry.TokenSpec, error) {
		var req struct {
			api.CreateTokenRequest
			// TTL as a pointer: absent lasts until revoked, but "" (an
			// empty variable in a script, say) is a mistake, not a wish
			// for a token that never expires.
			TTL *string `json:"ttl"`
		}
		if err := decodeJSON(w, r, a.maxBody, &req); err != nil {
			return registry.TokenSpec{}, err
		}
		spec := registry.TokenSpec{Role: req.Role, KeySpec: registry.KeySpec{Services: req.Services, Description: req.Description,
			MaxInstances: req.MaxInstances, CallbackTLS: req.CallbackTLS, ConsulVerify: req.ConsulVerify}}
		if req.TTL != nil {
			d, err := time.ParseDuration(*req.TTL)
			if err != nil || d <= 0 {
				return spec, BadField("ttl", "ttl %.32q is not a duration such as 24h; leave ttl out for a token that lasts until it is revoked", *req.TTL)
			}
			spec.TTL = d
		}
		return spec, nil
	})
}

// listTokens handles GET /v1/tokens: every token of every role.
func (a *apiServer) listTokens(w http.ResponseWriter, r *http.Request) error {
	keys, err := a.reg.Tokens(r.Context(), Bearer(r))
	if err != nil {
		return adminAuth.apply(err)
	}
	out := api.TokensResponse{Tokens: make([]api.Token, 0, len(keys))}
	for _, k := range keys {
		out.Tokens = append(out.Tokens, a.keyToAPI(k))
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

// revokeToken handles DELETE /v1/tokens/{id}: a token of any role.
func (a *apiServer) revokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.reg.RevokeToken(r.Context(), Bearer(r), r.PathValue("id")); err != nil {
		return adminAuth.apply(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// createKey handles POST /v1/keys: an enrolment key, the token of role
// register.
func (a *apiServer) createKey(w http.ResponseWriter, r *http.Request) error {
	return a.newToken(w, r, func() (registry.TokenSpec, error) {
		var req api.CreateKeyRequest
		if err := decodeJSON(w, r, a.maxBody, &req); err != nil {
			return registry.TokenSpec{}, err
		}
		return registry.TokenSpec{Role: string(catalog.RoleRegister), KeySpec: registry.KeySpec{Services: req.Services,
			Description: req.Description, MaxInstances: req.MaxInstances, CallbackTLS: req.CallbackTLS, ConsulVerify: req.ConsulVerify}}, nil
	})
}

// newToken creates the token that body reads from the request, once an
// admin credential is checked: before the body is read.
func (a *apiServer) newToken(w http.ResponseWriter, r *http.Request, body func() (registry.TokenSpec, error)) error {
	tok := Bearer(r)
	if err := a.reg.Admin(r.Context(), audit.ActionKeyCreate, tok); err != nil {
		return adminAuth.apply(err)
	}
	spec, err := body()
	if err != nil {
		a.reg.Refuse(r.Context(), audit.Record{Action: audit.ActionKeyCreate}, err)
		return err
	}
	k, secret, err := a.reg.CreateToken(r.Context(), tok, spec)
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
