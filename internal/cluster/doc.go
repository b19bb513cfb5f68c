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
// ErrNotLeader, ErrTimeout, ErrClosed, ErrHalted, ErrDiskFull or
// ErrStorage, which carry an Unavailable() bool method (and a reason and a
// retry delay for clients) so that consumers recognise them without
// importing this package. A log entry this version cannot apply (see
// catalog.ErrUnsupported), or one that is corrupt (catalog.ErrCorrupt: its
// checksum does not match, or an old entry without one fails validation),
// halts the node rather than let it diverge or serve damaged data: it
// applies nothing more, takes no snapshot, stops Raft, and closes Done.
//
// Before a command reaches Raft, Apply checks that the data dir's
// filesystem has Config.DiskReserve free (disk.go): a write that failed in
// the log store would step the leader down and take reads with it.
// Writable and Degraded report the same check to the registry.
//
// The Raft port (transport.go): a node without a cluster secret or
// certificates has no Raft listener; it is a single voter over an
// in-memory transport. With Config.Secret (or SecretFile) Raft listens on
// RaftAddr, and a connection reaches Raft only after a TLS 1.3 handshake
// in which both ends prove they hold the secret (an ed25519 key derived
// from it). With TLSCAFile, TLSCertFile and TLSKeyFile instead (tls.go),
// both ends must present a certificate from the cluster CA, valid now,
// for server and client authentication.
//
// Open checks the data dir before Raft starts (datadir.go, storecheck.go):
// raft.db's structure and every log entry, so that damage is one
// ErrDamaged error naming the file and the remedy rather than a crash;
// and DataDir/cluster-id, so that a raft.db that lost its state is
// ErrStateLost rather than a new, empty cluster, unless
// Config.ForceNewCluster.
//
//	cfg := cluster.DefaultConfig()
//	cfg.DataDir = dir // no secret: in memory, no listener
//	// cfg.RaftAddr, cfg.SecretFile = "10.0.0.5:9001", "/etc/muster/cluster-secret"
//	// or cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile = "muster-ca.pem", "n1.pem", "n1-key.pem"
//	n, err := cluster.Open(cfg, cat)
//	res, err := n.Apply(ctx, catalog.Command{...})
package cluster
