// Package httpapi is muster's HTTP API: NewHandler(deps) returns the
// http.Handler serving /v1, /livez and /readyz, and any routes another
// front end mounts beside them (the tutorial protocol, package seedapi).
//
// It is a transport and nothing more. Every handler has the same shape:
// decode the request, call the registry (package registry, where every
// workflow lives), encode the answer, and return an error that one adapter
// writes. routes.go lists every route in one table, which the OpenAPI test
// compares with docs/openapi.json; encode.go holds the JSON decoding and
// writing; errors.go holds the one table from the registry's errors to
// HTTP status and error code; instance.go is the one encoder of an
// instance, with its cache of the parts that cannot change, keyed by the
// catalog's immutable service views.
//
//	h := httpapi.NewHandler(httpapi.Deps{Registry: reg, Logger: log})
//	http.ListenAndServe("127.0.0.1:9000", h)
package httpapi
