// Package registry holds muster's workflows, once, free of any transport:
// register (with its admission policy: an enrolment key, or the tutorial
// protocol's phrase exchange), heartbeat, drain, deregister, enrolment keys,
// and lookups that return each instance with its effective status and
// freshness. Every front end (the /v1 HTTP API, the tutorial protocol, and
// later DNS, a Consul-compatible API and the console) decodes its own wire
// format, calls a Registry, and encodes the answer; none of them holds a
// workflow.
//
// The Registry owns the policy that is not transport: the slots for
// registration callbacks, the limiters of failed verifications, the
// admin-token check, and the single place that proposes a command and
// turns the replication layer's failures into ErrUnavailable. It defines,
// on its own side, what it needs from the layers below: a Proposer
// (*cluster.Node) and an error method, Unavailable() bool, that the
// cluster layer's errors carry. Liveness (effective status, the floor
// after an election) comes from a *health.Liveness, the same one the
// expiry sweep uses.
//
// Errors are sentinels (ErrNotReady, ErrUnavailable, ErrBusy,
// ErrNoCredential, ErrWrongToken, ErrInstanceNotFound, …), the catalog's
// own (catalog.ErrKeyRevoked, catalog.ErrKeyScope, …) and three types that
// carry detail (FieldError, RateLimitError, VerifyError). Front ends map
// them to their wire codes through one table each.
//
//	reg, err := registry.New(registry.DefaultConfig(), cat, node, live, verifier)
//	adm, err := reg.AdmitKey(ctx, secret, "fetch_url")
//	out, err := reg.Register(ctx, adm, api.RegisterRequest{Address: "10.0.0.5", Port: 8080})
//	inst, status, err := reg.Heartbeat(ctx, out.ID, sessionToken)
//
// Concurrency: every method is safe for concurrent use. Writes block until
// the command is committed and applied, or refused, except the tutorial
// protocol's RegisterSeed: it returns once the request is admitted, and
// its callback and commit run on a goroutine of the registry's, which
// Close cancels and waits for (call it before the Proposer stops).
package registry
