// Package client is muster's Go SDK. It imports only the public api package
// and the standard library, never the server's internal packages.
//
// It has three layers:
//
//   - Client: the HTTP calls of the registry's API (enrolment keys,
//     registration, heartbeats, drains, deregistration, lookups, service
//     listings, and Watch, the event stream of changes, which reconnects
//     and resumes by itself). Wire error codes come back as errors that
//     match the package's sentinels with errors.Is.
//   - The service side: Registration keeps one instance registered (it
//     answers the verification callback, heartbeats, registers again when
//     the registry has forgotten it, and drains and deregisters on
//     shutdown); Serve does all of that around an http.Handler. Failures
//     that may pass are retried (never sooner than a Retry-After); a
//     refusal that retrying cannot fix, such as a wrong key, stops both,
//     and Registration.Err reports it.
//   - The client side: Resolver gives cached lookups with an explicit
//     staleness policy, kept current by the registry's event stream (a
//     change reaches it within milliseconds; when the stream is down,
//     revalidation takes over), balancing (Pick), outlier ejection, and
//     Watch, a channel of a service's instances as they change; its
//     HTTPClient sends requests for http://service-name/… to an instance.
//     Close a Resolver to end its stream.
//
// A lookup through the Client:
//
//	c, _ := client.New(client.Config{Addr: "http://127.0.0.1:9000"})
//	res, err := c.Lookup(ctx, "fetch_url", client.WithTag("v2"))
//	if errors.Is(err, client.ErrUnauthorized) { ... }
//
// The service side and the Resolver log through slog.Default() unless
// given a Logger; slog.New(slog.DiscardHandler) silences them. The
// registry's address is Config.Addr, else $MUSTER_ADDR, else DefaultAddr.
//
// docs/sdk.md describes the behaviour in detail.
package client
