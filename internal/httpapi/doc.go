// Package httpapi is muster's HTTP API: NewHandler(deps) returns the
// http.Handler serving /v1, /livez and /readyz.
//
// routes.go lists every route in one table, which the OpenAPI test compares
// with docs/openapi.json. encode.go holds the only JSON decoding and
// encoding; errors.go holds the one table from domain errors to HTTP status
// and error code. Handlers are small functions that close over Deps.
//
// Writes go through Deps.Node (Raft); reads are served from the in-memory
// catalog and the heartbeat tracker, with no disk and no Raft round trip.
//
//	h := httpapi.NewHandler(httpapi.Deps{Catalog: cat, Node: node, ...})
//	http.ListenAndServe("127.0.0.1:9000", h)
package httpapi
