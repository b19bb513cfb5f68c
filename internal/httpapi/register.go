package httpapi

import (
	"net/http"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
)

// register handles POST /v1/services/{service}/instances: the enrolment
// key is checked before the body is read, then the registry validates,
// calls the instance back, and commits.
func (a *apiServer) register(w http.ResponseWriter, r *http.Request) error {
	err := a.registerOnce(w, r)
	a.registration(err)
	return err
}

func (a *apiServer) registerOnce(w http.ResponseWriter, r *http.Request) error {
	adm, err := a.reg.AdmitKey(r.Context(), Bearer(r), r.PathValue("service"))
	if err != nil {
		return authMessages{missing: "enrolment key required (Authorization: Bearer ...)"}.apply(err)
	}
	var req api.RegisterRequest
	if err := decodeJSON(w, r, a.maxBody, &req); err != nil {
		a.reg.Refuse(r.Context(), audit.Record{Action: audit.ActionRegister, Service: adm.Service(), Key: adm.KeyID()}, err)
		return err
	}
	out, err := a.reg.Register(r.Context(), adm, req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/instances/"+out.ID)
	WriteJSON(w, http.StatusCreated, api.RegisterResponse{ID: out.ID, Service: out.Service, TTL: out.TTL, Index: out.Index})
	return nil
}
