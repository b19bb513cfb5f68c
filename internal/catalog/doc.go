// Package catalog is muster's deterministic state machine: service
// instances, keys (enrolment keys and tokens with a role: see Key and
// OpCreateToken) and per-service Raft indexes.
//
// Every change is a Command passed to Catalog.Apply together with the Raft
// log index that carries it. Apply is deterministic: it reads no clock, no
// randomness and no environment, so every replica that applies the same log
// reaches the same state. Time values a command needs (registration time) are
// chosen by the proposer and travel inside the command.
//
// Each operation has one apply method (apply.go), found through a table
// that New builds. A command this version cannot apply as its proposer
// meant (an unknown operation, encoding or rules version) is refused with
// ErrUnsupported and must stop the replica, unless it is marked
// SkipIfUnknown; see Apply. The log and snapshot formats are versioned
// records of their own (codec.go, snapshot.go), guarded by golden files
// under testdata/golden.
//
// Subscribe returns a Subscription that learns of every applied change
// (the index and the services touched), coalesced, so that any number of
// subscribers (watches, metrics) never make Apply wait.
//
// The catalog never imports raft; internal/cluster adapts it to raft.FSM.
// Random IDs and secrets come from package random, called by proposers.
//
// Concurrency: Apply, Snapshot and Restore are called by one goroutine at a
// time (the Raft FSM goroutine). Read methods may be called from any
// goroutine concurrently with Apply; they take a read lock briefly and return
// immutable values that callers must not modify.
//
//	c := catalog.New()
//	res := c.Apply(1, catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{...}})
//	view := c.Service("fetch_url")
package catalog
