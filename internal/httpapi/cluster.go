package httpapi

import (
	"errors"
	"net/http"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/registry"
)

// members handles GET /v1/cluster/members: every server with its own
// account of its Raft state, as this server reaches them.
func (a *apiServer) members(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.reader(r); err != nil {
		return err
	}
	ms, err := a.reg.Members(r.Context())
	if err != nil {
		return clusterError(err)
	}
	WriteJSON(w, http.StatusOK, api.MembersResponse{Node: a.reg.Self().Node, Members: ms})
	return nil
}

// removeMember handles DELETE /v1/cluster/members/{id} (admin token).
func (a *apiServer) removeMember(w http.ResponseWriter, r *http.Request) error {
	if err := a.reg.RemoveMember(r.Context(), Bearer(r), r.PathValue("id")); err != nil {
		return adminAuth.apply(clusterError(err))
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// clusterSelf handles GET /v1/cluster/self: how to reach this server's
// Raft port (what --join asks a member's HTTP address).
//
// It is open even when reads need a token: a server joining the cluster
// asks it before it can prove anything (sending its admin token to an
// address it has not authenticated would hand the token to whoever is
// there), and all it tells is the node's ID and Raft address, where
// every connection must prove the cluster's secret or certificate.
func (a *apiServer) clusterSelf(w http.ResponseWriter, _ *http.Request) error {
	WriteJSON(w, http.StatusOK, a.reg.Self())
	return nil
}

// clusterError maps the membership errors to their answers; others pass
// through to the shared table.
func clusterError(err error) error {
	switch {
	case errors.Is(err, registry.ErrMemberNotFound):
		return Errorf(http.StatusNotFound, api.CodeNotFound, "id", "no server of the cluster has this ID")
	case errors.Is(err, registry.ErrLastVoter):
		return Errorf(http.StatusConflict, api.CodeConflict, "id", "the only voter of the cluster cannot be removed")
	case errors.Is(err, registry.ErrNotClustered):
		return Errorf(http.StatusNotFound, api.CodeNotFound, "", "this server is not part of a cluster of several servers (it has no cluster secret)")
	}
	return err
}
