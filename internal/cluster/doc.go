// Package cluster runs the catalog on hashicorp/raft: the FSM adapter,
// command encoding, bootstrap of the embedded one-voter cluster, and
// readiness (a leader is known and the catalog has applied the log).
//
// Storage is raft-boltdb (bbolt) for the log and stable store, fsynced on
// every append, and file snapshots. A Node's Apply returns only after the
// command is committed to the fsynced log and applied to the catalog, so an
// acknowledged write survives kill -9.
//
// Apply returns a command's fate as one error: the catalog's own, or
// ErrNotLeader, ErrTimeout, ErrClosed or ErrHalted, which carry an
// Unavailable() bool method so that consumers recognise them without
// importing this package. A log entry this version cannot apply (see
// catalog.ErrUnsupported) halts the node rather than let it diverge: it
// applies nothing more, takes no snapshot, stops Raft, and closes Done.
//
//	n, err := cluster.Open(cluster.Config{DataDir: dir, RaftAddr: "127.0.0.1:0"}, cat)
//	res, err := n.Apply(ctx, catalog.Command{...})
package cluster
