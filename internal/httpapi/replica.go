package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/registry"
)

// readMode takes ?consistent and ?stale out of q, so that a handler's
// check for unknown parameters does not meet them, and returns the read
// mode they ask for. Each takes no value (or "true"); asking for both is
// an error.
func readMode(q url.Values) (registry.ReadMode, *Error) {
	mode := registry.ReadDefault
	for _, k := range []string{api.QueryConsistent, api.QueryStale} {
		vs, ok := q[k]
		if !ok {
			continue
		}
		if v := vs[len(vs)-1]; v != "" && v != "true" {
			return mode, BadField(k, "%s takes no value", k)
		}
		delete(q, k)
		if mode != registry.ReadDefault {
			return mode, BadField(api.QueryConsistent, "ask for consistent or stale, not both")
		}
		mode = registry.ReadStale
		if k == api.QueryConsistent {
			mode = registry.ReadConsistent
		}
	}
	return mode, nil
}

// beginRead asks the registry whether this server may answer a read in
// mode, and says in the answer's headers which server answers and how
// current its replica is (set on refusals too, so that a client can tell
// a stale follower from a loading one).
func (a *apiServer) beginRead(w http.ResponseWriter, r *http.Request, mode registry.ReadMode) error {
	info, err := a.reg.Read(r.Context(), mode)
	h := w.Header()
	if info.Node != "" {
		h.Set(api.HeaderNode, info.Node)
	}
	h.Set(api.HeaderKnownLeader, strconv.FormatBool(info.KnownLeader))
	h.Set(api.HeaderLastContact, strconv.FormatInt(info.LastContact.Milliseconds(), 10))
	return err
}
