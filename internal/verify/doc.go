// Package verify performs the registration callback: the registry POSTs a
// fresh challenge to the address an instance advertises, and accepts the
// instance only if it answers with HMAC-SHA256(enrolment key secret,
// challenge). The session token rides in the same callback, so only a
// process that controls the advertised address ever learns it.
//
// The callback must not turn the registry into a tool against other hosts:
// every connection is checked against an allowlist of networks at dial time
// (after DNS resolution, so rebinding cannot slip past), redirects are never
// followed, the answer is read up to a size cap, and the whole exchange has
// a deadline. No proxy from the environment is used. The well-known cloud
// metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200 and
// the others in metadata.go) are refused in every spelling (IPv4-mapped,
// IPv4-compatible, NAT64, 6to4), whatever the allowlist.
//
// A plain-HTTP callback to a pinned address (Target.DialIP) may reuse a
// connection an earlier callback to the same address and port left open
// (conn.go): the guard checked that endpoint when the connection was
// made, and the request is sent once.
//
//	v, _ := verify.New(verify.DefaultConfig())
//	err := v.Verify(ctx, verify.Target{Scheme: "http", Address: "127.0.0.1", Port: 8888, Path: "/.well-known/muster/verify"}, req, keySecret)
package verify
