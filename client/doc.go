// Package client is muster's Go SDK. It imports only the public api package
// and the standard library, never the server's internal packages.
//
// This first part holds the HTTP client for the registry's API: enrolment
// keys, lookups, service listings and deregistration. Wire error codes come
// back as errors that match the package's sentinels with errors.Is.
//
//	c, _ := client.New(client.Config{Addr: "http://127.0.0.1:9000"})
//	res, err := c.Lookup(ctx, "fetch_url", client.WithTag("v2"))
//	if errors.Is(err, client.ErrUnauthorized) { ... }
package client
