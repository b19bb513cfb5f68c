package httpapi

import (
	"net/http"
	"strings"
)

// handlerFunc is a handler that returns its error instead of writing it;
// the adapter of apiServer writes the error.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Route is one entry of the API: a method, a net/http pattern and its
// handler. Other front ends pass theirs in Deps.Mount.
type Route struct {
	Method  string
	Pattern string
	Handler http.HandlerFunc
}

// route is one entry of this package's table.
type route struct {
	Method  string
	Pattern string
	Handler handlerFunc
}

// routes lists every route of the /v1 API.
func (a *apiServer) routes() []route {
	return []route{
		{"GET", "/livez", a.livez},
		{"GET", "/readyz", a.readyz},

		{"POST", "/v1/keys", a.createKey},
		{"GET", "/v1/keys", a.listKeys},
		{"DELETE", "/v1/keys/{id}", a.revokeKey},
		{"POST", "/v1/tokens", a.createToken},
		{"GET", "/v1/tokens", a.listTokens},
		{"DELETE", "/v1/tokens/{id}", a.revokeToken},
		{"GET", "/v1/snapshot", a.snapshot},
		{"PUT", "/v1/snapshot", a.restore},

		{"POST", "/v1/services/{service}/instances", a.register},
		{"GET", "/v1/services", a.listServices},
		{"GET", "/v1/services/{service}", a.lookup},
		{"GET", "/v1/watch", a.watch},

		{"GET", "/v1/instances/{id}", a.getInstance},
		{"PUT", "/v1/instances/{id}/heartbeat", a.heartbeat},
		{"POST", "/v1/heartbeats", a.heartbeats},
		{"PUT", "/v1/instances/{id}/drain", a.drain},
		{"DELETE", "/v1/instances/{id}", a.deregister},
		{"POST", "/v1/instances/{id}/evict", a.evict},
		{"POST", "/v1/instances/{id}/certificate", a.certificate},

		{"GET", "/v1/ca", a.caBundle},
		{"POST", "/v1/ca/rotate", a.rotateCA},

		{"GET", "/v1/audit", a.auditLog},

		{"GET", "/v1/cluster/members", a.members},
		{"DELETE", "/v1/cluster/members/{id}", a.removeMember},
		{"GET", "/v1/cluster/self", a.clusterSelf},
	}
}

// queried are the /v1 routes that read a query string (each refuses a
// parameter it does not know, or one given twice); every other /v1 route
// refuses any (noQuery), so that a misspelt or misplaced parameter is
// never silently ignored. /livez, /readyz and /metrics, probed by load
// balancers and scrapers that may add their own, ignore theirs.
var queried = map[string]bool{
	"GET /v1/services":           true,
	"GET /v1/services/{service}": true,
	"GET /v1/watch":              true,
	"GET /v1/instances/{id}":     true,
	"GET /v1/audit":              true,
	"GET /v1/ca":                 true,
}

// noQuery wraps the handler of a route that takes no query parameters.
func (a *apiServer) noQuery(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery != "" {
			field, _, _ := strings.Cut(r.URL.RawQuery, "=")
			if len(field) > 64 || field == "" {
				field = "query"
			}
			WriteError(w, a.log, BadField(field, "%s takes no query parameters", r.Pattern))
			return
		}
		h(w, r)
	}
}

// Routes returns "METHOD pattern" for every route of the /v1 API, for
// tests and docs.
func Routes() []string {
	var a apiServer
	var out []string
	for _, r := range a.routes() {
		out = append(out, r.Method+" "+strings.TrimSuffix(r.Pattern, "{$}"))
	}
	return out
}
