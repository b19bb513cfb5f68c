// Package leanhttp answers one narrow shape of HTTP/1.1 request on a
// listener without net/http's per-request machinery, and hands every
// other connection to a net/http server with its bytes intact.
//
// muster uses it for the heartbeat route, PUT
// /v1/instances/{id}/heartbeat, which a fleet sends tens of thousands of
// times a second, one small request each. net/http spends about as much
// CPU per request on its own bookkeeping (a background read per request,
// a context, a response object and its buffers, the router) as the
// kernel spends moving the bytes; this package parses a request of the
// one shape it knows by hand and calls the same handler net/http would,
// through the same router, so the answer, the metrics and the audit are
// the same.
//
// The rule that keeps it small: it never has to be lenient. A
// connection's requests are answered here only while each one matches
// Config exactly (the request line, a short list of headers with plain
// values, no body). The first byte that does not fit hands the
// connection, with every byte read so far, to the net/http server that
// called Accept, which serves it from then on as if it had accepted it
// itself. So a request is either in the strict shape, and answered here,
// or net/http answers it: never a third reading. Connections over TLS
// are not wrapped (see the server's assembly).
//
// Usage:
//
//	ln = leanhttp.New(ln, leanhttp.Config{Handler: h, Method: "PUT",
//		Prefix: "/v1/instances/", Path: isHeartbeatPath, ...})
//	srv := &http.Server{Handler: h}
//	go srv.Serve(ln)
//	...
//	srv.Shutdown(ctx) // closes ln, which closes its idle connections
//	ln.(*leanhttp.Listener).Wait(ctx)
package leanhttp
