// Package dnsapi is muster's DNS front end: it answers A, AAAA and SRV
// queries for the names of a zone (muster. by default) over UDP and TCP,
// from the registry's lookups, so that DNS and HTTP never disagree about
// which instances are alive. It is read-only and authoritative for its
// zone alone: it never recurses or forwards, refuses names outside the
// zone, updates, notifies, zone transfers and ANY.
//
// The names (docs/dns.md):
//
//	NAME.service.muster.       the passing instances of service NAME
//	TAG.NAME.service.muster.   those of them that carry TAG
//	ID.instance.muster.        one instance, while it is passing
//
// Like httpapi it is a transport and nothing more: answer.go decodes a
// query, reads the registry through Backend (ServiceRead.Each, the one
// status rule) and packs the answer; dnsapi.go owns the sockets. Answers
// are built in per-goroutine scratch space and never copy a service:
// a reservoir keeps a random choice of as many instances as the answer
// can hold.
//
//	udp, tcp, err := dnsapi.Listen("127.0.0.1:8600")
//	s, err := dnsapi.New(cfg, reg, log)
//	s.Serve(udp, tcp)
//	defer s.Close()
package dnsapi
