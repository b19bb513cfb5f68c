package httpapi

import (
	"net/http"
	"strings"
)

// route is one entry of the API. The OpenAPI test reads this table.
type route struct {
	Method  string
	Pattern string
	Handler http.HandlerFunc
	// Seed routes are served only with --seed-compat.
	Seed bool
}

// routes lists every route the API serves.
func (a *apiServer) routes() []route {
	return []route{
		{"GET", "/livez", a.livez, false},
		{"GET", "/readyz", a.readyz, false},

		{"POST", "/v1/keys", a.createKey, false},
		{"GET", "/v1/keys", a.listKeys, false},
		{"DELETE", "/v1/keys/{id}", a.revokeKey, false},

		{"POST", "/v1/services/{service}/instances", a.register, false},
		{"GET", "/v1/services", a.listServices, false},
		{"GET", "/v1/services/{service}", a.lookup, false},

		{"GET", "/v1/instances/{id}", a.getInstance, false},
		{"PUT", "/v1/instances/{id}/heartbeat", a.heartbeat, false},
		{"PUT", "/v1/instances/{id}/drain", a.drain, false},
		{"DELETE", "/v1/instances/{id}", a.deregister, false},

		// The tutorial's protocol, paths exactly as it wrote them.
		{"POST", "/api/v1/register/{$}", a.seedRegister, true},
		{"GET", "/api/v1/register/{$}", a.seedLookup, true},
		{"POST", "/api/v1/ping/{$}", a.seedPing, true},
	}
}

// Routes returns "METHOD pattern" for every route, for tests and docs.
func Routes() []string {
	var a apiServer
	var out []string
	for _, r := range a.routes() {
		out = append(out, r.Method+" "+strings.TrimSuffix(r.Pattern, "{$}"))
	}
	return out
}
