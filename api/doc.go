// Package api holds the wire types and error codes of muster's HTTP API.
//
// It is shared by the server (internal/httpapi) and the Go SDK (client) and
// imports only the standard library, so that a client never depends on the
// server. Durations travel as Go duration strings ("10s"); ages and TTLs in
// lookups travel as integer milliseconds so that clients in any language can
// use them without parsing.
//
//	var resp api.LookupResponse
//	json.NewDecoder(r.Body).Decode(&resp)
//	for _, inst := range resp.Instances {
//		fmt.Println(inst.URL, inst.Quality)
//	}
package api
