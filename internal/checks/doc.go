// Package checks runs an instance's active health checks: the registry
// itself probes the instance (an HTTP GET, a TCP connect, or a gRPC
// grpc.health.v1 call) on schedule, and reports when the instance's
// checks as a whole turn critical or passing again.
//
// Declarations. A registration declares its checks on the wire as
// api.CheckDecl; Parse validates them (at most MaxChecks, each interval
// from 1s to 1h, each timeout at most its interval and 10s, thresholds
// from 1 to 10, an HTTP path that names a resource of the instance and
// nothing else) and fills in the defaults (interval 10s, timeout the
// smaller of the interval and 5s, path "/", 3 failures before critical, 2
// successes before passing). Its errors name the field
// ("checks[1].timeout").
//
// Probes. Every probe connects to the instance's own advertised address,
// on the check's port or the instance's, and nowhere else, through a
// dialer that refuses, at every connect and after DNS resolution, any
// address the Guard does not allow: the verify callback's allowlist and
// metadata-address rule (*verify.Verifier). No redirect is followed (a 3xx
// fails), no proxy is used, an answer is read up to a few KiB, and the
// check's timeout bounds dial, request and answer. An HTTP check passes
// on 2xx only; a gRPC check on SERVING. Each probe records a short,
// sanitised output ("HTTP 503: overloaded", "connection refused"), never
// an error with internal detail. The gRPC client is the standard
// library's HTTP/2 client with prior knowledge (grpc.go says why).
//
// TLS. The HTTP and gRPC checks of an https instance (Target.Scheme)
// speak TLS 1.2 or later over the same guarded connection, within the
// same timeout (gRPC negotiates HTTP/2 by ALPN "h2"). The certificate
// must chain to Config.Roots (the registry passes the verify callback's
// CA bundle; nil is the system's roots) and be valid for
// Target.ServerName, else Target.Address; Target.AnyCertificate, for an
// instance whose key asked for it, accepts any. A refused certificate
// fails the probe with an output that says why ("tls: certificate signed
// by unknown authority").
//
// Thresholds. A check turns critical after FailuresBeforeCritical
// consecutive failed probes and passing again after
// SuccessesBeforePassing consecutive successful ones, so one slow answer
// does not take a busy instance out. An instance's aggregate is passing
// when every check passes.
//
// Initial status. A target's checks start at the status the catalog has
// committed for the instance (Target.Status), with their counters at
// zero, and never at a status of their own. So a new leader, which
// knows nothing of the last term's probes, reports no transition until
// the thresholds are met again: a failover does not flip a fleet to
// critical, nor put a command per instance into the log. A newly
// registered instance has proved its address through the verify
// callback, and the registry commits it passing; its checks then need
// FailuresBeforeCritical failures to take it out. A registry that wants
// an instance relying on checks alone (ttl 0) to wait for its first
// successes registers it critical, and its checks then need
// SuccessesBeforePassing successes.
//
// Transitions. The Monitor reports only changes of a target's aggregate,
// level-triggered: Pending lists each target whose aggregate differs from
// the status the caller last acknowledged, and Changes signals when that
// list may have grown. The caller (on the leader) proposes the status
// command, and acknowledges with Ack once it is committed, or once it
// found the catalog already there, or decided no command is needed. A
// proposal that failed is not acknowledged and so stays pending, to be
// tried again; a transition is never lost, and a check that flips back
// before the caller gets to it leaves nothing pending. Every probe result
// in between stays in memory (States, for lookups).
//
// Scheduling. One goroutine keeps every check on a heap of due times and
// sleeps on one timer until the earliest; a due probe runs in a
// goroutine of its own, at most Config.Concurrency at once. The first
// probe of each check is at a random time within its interval, so ten
// thousand checks registered at once are spread over that interval, and
// each next probe starts an interval after the last one started. An idle
// Monitor costs one sleeping goroutine whatever the number of targets.
//
// Leadership. Only the leader probes. A Monitor serves one term: the
// server makes one when this node becomes leader, Sets every instance
// that has checks with its committed status, Runs it, and cancels Run's
// context when leadership is lost, which drops the term's in-memory state.
//
//	g, _ := verify.New(verify.DefaultConfig())
//	m, _ := checks.NewMonitor(checks.DefaultConfig(), g)
//	cs, err := checks.Parse(req.Checks, req.Scheme) // err: a *checks.FieldError
//	m.Set(checks.Target{ID: id, Address: "10.0.0.7", Port: 8080, Checks: cs, Status: api.StatusPassing})
//	go m.Run(ctx)
//	tick := time.NewTicker(time.Second) // to retry what could not be committed
//	for {
//		select {
//		case <-m.Changes():
//		case <-tick.C:
//		case <-ctx.Done():
//			return
//		}
//		for _, tr := range m.Pending() {
//			if err := propose(ctx, tr); err == nil { // or a conflict: already there
//				m.Ack(tr)
//			}
//		}
//	}
package checks
