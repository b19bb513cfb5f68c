package httpapi

import (
	"net/http"
)

// route is one entry of the API. The OpenAPI test reads this table.
type route struct {
	Method  string
	Pattern string
	Handler http.HandlerFunc
}

// routes lists every route the API serves.
func (a *apiServer) routes() []route {
	return []route{
		{"GET", "/livez", a.livez},
		{"GET", "/readyz", a.readyz},

		{"POST", "/v1/keys", a.createKey},
		{"GET", "/v1/keys", a.listKeys},
		{"DELETE", "/v1/keys/{id}", a.revokeKey},

		{"POST", "/v1/services/{service}/instances", a.register},
		{"GET", "/v1/services", a.listServices},
		{"GET", "/v1/services/{service}", a.lookup},

		{"GET", "/v1/instances/{id}", a.getInstance},
		{"PUT", "/v1/instances/{id}/heartbeat", a.heartbeat},
		{"PUT", "/v1/instances/{id}/drain", a.drain},
		{"DELETE", "/v1/instances/{id}", a.deregister},
	}
}

// Routes returns "METHOD pattern" for every route, for tests and docs.
func Routes() []string {
	var a apiServer
	var out []string
	for _, r := range a.routes() {
		out = append(out, r.Method+" "+r.Pattern)
	}
	return out
}
