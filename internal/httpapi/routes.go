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

		{"GET", "/v1/audit", a.auditLog},

		{"GET", "/v1/cluster/members", a.members},
		{"DELETE", "/v1/cluster/members/{id}", a.removeMember},
		{"GET", "/v1/cluster/self", a.clusterSelf},
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
