// Package telemetry holds a server's Prometheus metrics: the registry,
// the instruments the front ends and the sweep feed (requests by route and
// status class, registrations by result, verification callbacks,
// heartbeats, expiries, DNS queries), the gauges read from the catalog,
// Raft and push at each scrape (through Source), Raft's own go-metrics
// measurements, and the Go runtime's and the process's collectors.
//
// It imports nothing of muster's: the server assembly implements Source
// and passes the instruments to the components as plain functions, so
// that no component depends on Prometheus. Labels are bounded by
// construction (routes, error codes, verification reasons, DNS types and
// codes); none holds a service, an instance or a key.
//
//	m := telemetry.New(src)
//	done := m.Route("GET /v1/services/{service}").Done // once per route
//	done(200, time.Since(start))                        // per request
//	mux.Handle("GET /metrics", m.Handler())
//
// Who may scrape is the front end's rule (internal/httpapi).
package telemetry
