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
//
// It runs on every lookup: the usual values are slices shared by every
// answer (net/http only reads a header's values), so that the three
// headers cost no allocation on a leader.
func (a *apiServer) beginRead(w http.ResponseWriter, r *http.Request, mode registry.ReadMode) error {
	info, err := a.reg.Read(r.Context(), mode)
	h := w.Header()
	if info.Node != "" {
		node := a.nodeHeader.Load()
		if node == nil || (*node)[0] != info.Node {
			node = &[]string{info.Node}
			a.nodeHeader.Store(node)
		}
		h[api.HeaderNode] = *node
	}
	h[api.HeaderKnownLeader] = headerFalse
	if info.KnownLeader {
		h[api.HeaderKnownLeader] = headerTrue
	}
	switch {
	case info.LastContact == 0:
		h[api.HeaderLastContact] = headerZero
	case info.LastContact < 0:
		h[api.HeaderLastContact] = headerNever
	default:
		h[api.HeaderLastContact] = []string{strconv.FormatInt(info.LastContact.Milliseconds(), 10)}
	}
	return err
}

// Header values shared by every answer; never written to.
var (
	headerTrue  = []string{"true"}
	headerFalse = []string{"false"}
	headerZero  = []string{"0"}
	headerNever = []string{"-1"}
)
