package httpapi

import (
	"net/http"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
)

// restoreReadTimeout is how long a restore's upload may take: a backup
// of up to catalog.MaxSnapshotSize takes longer to send than the server's
// read timeout allows every other request. It is given only once the
// admin token is checked.
const restoreReadTimeout = 10 * time.Minute

// restore handles PUT /v1/snapshot (admin token): the body, a snapshot
// as GET /v1/snapshot answers it, becomes the catalog of every server.
// The token is checked before the body is read; the body is read once,
// within catalog.MaxSnapshotSize, and checked in full before anything
// changes.
func (a *apiServer) restore(w http.ResponseWriter, r *http.Request) error {
	tok := Bearer(r)
	if err := a.reg.Admin(r.Context(), audit.ActionSnapshotRestore, tok); err != nil {
		return adminAuth.apply(err)
	}
	if r.ContentLength > catalog.MaxSnapshotSize {
		a.reg.Refuse(r.Context(), audit.Record{Action: audit.ActionSnapshotRestore}, catalog.ErrSnapshotTooLarge)
		return catalog.ErrSnapshotTooLarge
	}
	// A server without deadlines (a test's, say) has nothing to extend.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(restoreReadTimeout))
	res, err := a.reg.Restore(r.Context(), tok, r.Body)
	if err != nil {
		return adminAuth.apply(err)
	}
	b := res.Backup
	WriteJSON(w, http.StatusOK, api.RestoreResponse{Index: res.Index, SnapshotIndex: b.Index, Instances: b.Instances,
		Services: b.Services, Keys: b.Keys, Evictions: b.Evictions})
	return nil
}
