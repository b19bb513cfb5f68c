// Package cluster runs the catalog on hashicorp/raft: the FSM adapter,
// command encoding, bootstrap of the embedded one-voter cluster, and
// readiness (a leader is known and the catalog has applied the log).
//
// Storage is raft-boltdb (bbolt) for the log and stable store, fsynced on
// every append, and file snapshots. A Node's Apply returns only after the
// command is committed to the fsynced log and applied to the catalog, so an
// acknowledged write survives kill -9.
//
//	n, err := cluster.Open(cluster.Config{DataDir: dir, RaftAddr: "127.0.0.1:0"}, cat)
//	res, err := n.Apply(ctx, catalog.Command{...})
package cluster
