// Package seedapi is the front end of the tutorial's wire protocol
// (`muster server --seed-compat`): form-encoded register, ping and lookup
// under /api/v1/, exactly as the Tornado registry of "Creating a
// Microservices Registry" spoke them, so that the tutorial's services run
// unchanged against muster.
//
// Like package httpapi it is a transport only: it parses the form, calls
// the same registry (AdmitSeed, RegisterSeed, SeedPing, Service), and
// writes the tutorial's {"data": ...} answers. As the tutorial's registry
// did, it answers a registration 200 once it is admitted, and the
// registry verifies the service in the background: the 200 means
// "accepted for verification", not "registered". Its refusals are always 400,
// as the tutorial's clients expect, with muster's JSON error body; errors
// of the registry itself (5xx) are written as /v1 writes them. Its routes
// are mounted beside /v1 through httpapi.Deps.Mount.
//
//	routes := seedapi.New(reg, log, 64<<10).Routes()
//	h := httpapi.NewHandler(httpapi.Deps{Registry: reg, Mount: routes})
package seedapi
