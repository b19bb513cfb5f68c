// Package audit keeps a node's audit trail: one record for every decision
// the registry makes about who may do what (a registration accepted or
// refused, a deregistration, a drain, an expiry, a key created or
// revoked, an admin action, a failed authentication), in two append-only
// journals of JSON lines under the data dir.
//
// The applied journal holds the records of commands that went through
// Raft, derived from the applied log on every node (FromCommand), so that
// every replica holds the same trail; the FSM hands them over (Applied,
// Restored) and waits for them to be on disk before a snapshot is
// persisted (Durable), so that a kill -9 loses none: what was not yet
// written is derived again from the log Raft replays, skipping what the
// journal already holds (records carry their Raft index). The local
// journal holds what this node decided alone, refusals above all
// (Record). Both rotate by size and keep a bounded number of files;
// writing never blocks a request, and the FSM at most for
// Config.ApplyWait.
//
//	l, err := audit.Open(audit.Config{Dir: filepath.Join(dataDir, "audit"), ...})
//	l.Record(audit.Record{Action: audit.ActionRegister, Outcome: audit.OutcomeRefused, Reason: "...", Caller: addr})
//	page, err := l.Query(ctx, audit.Query{Action: audit.ActionRegister, Limit: 50})
//
// See docs/architecture.md, "The audit trail".
package audit
