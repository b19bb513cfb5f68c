package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/random"
)

// Config configures a Node.
type Config struct {
	// DataDir holds raft.db, snapshots/ and node-id.
	DataDir string
	// RaftAddr is the TCP address Raft listens on when the node has a
	// cluster secret or certificates; port 0 picks a free one. Without
	// either the node has no Raft listener and RaftAddr is unused (see
	// transport.go).
	RaftAddr string
	// Secret is the cluster secret. With one, Raft listens on RaftAddr and
	// accepts only peers that prove they hold the same secret; without
	// one, the node must be the only voter of its cluster, and Raft runs
	// over an in-memory transport that nothing outside the process can
	// reach. At least MinSecretLen bytes.
	Secret Secret
	// SecretFile, when set, is read for Secret at Open (ReadSecretFile:
	// the file must be readable by its owner only).
	SecretFile string
	// TLSCAFile, TLSCertFile and TLSKeyFile, given together, authenticate
	// the Raft port with certificates from a cluster CA instead of a
	// secret (tls.go): Raft listens on RaftAddr and accepts only peers
	// whose certificate chains to a CA in TLSCAFile, is valid now and is
	// for both server and client authentication; this node presents
	// TLSCertFile. TLSKeyFile must be readable by its owner only. They
	// are read at Open by LoadTLS. A node has a secret or certificates,
	// never both.
	TLSCAFile, TLSCertFile, TLSKeyFile string
	// TLS is the three files above already loaded (LoadTLS), for an
	// embedder, or a caller that checks them before it writes anything;
	// give it or the files, not both.
	TLS *TLSIdentity
	// ForceNewCluster lets a node start although raft.db holds no Raft
	// state while the data dir shows it held a cluster (ErrStateLost), or
	// after the operator moved a damaged raft.db aside (ErrDamaged): the
	// catalog comes back from the latest snapshot, or empty. It has no
	// effect when raft.db holds state.
	ForceNewCluster bool
	// NodeID names this node; empty means read it from DataDir/node-id or
	// create it there.
	NodeID string
	// Bootstrap makes a node with no Raft state bootstrap itself as the
	// only voter of a new cluster.
	Bootstrap bool
	// HeartbeatTimeout and ElectionTimeout tune Raft; tests make them short.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// ApplyTimeout bounds how long Apply waits to enqueue a command.
	ApplyTimeout time.Duration
	// SnapshotThreshold is the least number of log entries since the
	// last snapshot that trigger the next one; the node raises it to a
	// sixteenth of the catalog's instances (snapshots.go). 0 means
	// DefaultSnapshotThreshold.
	SnapshotThreshold uint64
	// DiskReserve is the free space, in bytes, that the data dir's
	// filesystem must keep: below it Apply refuses commands with
	// ErrDiskFull before they reach Raft, and Degraded reports "disk".
	// 0 means DefaultDiskReserve (64 MiB); a negative value turns the
	// check off.
	DiskReserve int64
	// DiskFree reads the free space of the data dir's filesystem; nil
	// means statfs(2). Tests replace it.
	DiskFree Statfs

	// Join lists members of the cluster to join (see join.go): their
	// Raft addresses, or whatever ResolveJoin turns into one (the server
	// gives their HTTP addresses). Used only while the node holds no Raft
	// state; it needs a cluster secret.
	Join []string
	// ResolveJoin turns an entry of Join into a member's Raft address;
	// nil takes the entries as Raft addresses.
	ResolveJoin func(ctx context.Context, addr string) (string, error)
	// BootstrapExpect is how many voters form a new cluster: with it, a
	// node without state waits until it knows that many (itself
	// included), and one of them bootstraps Raft with them all. 0 or 1
	// without Join is the single voter (Bootstrap); above 1 it needs a
	// cluster secret.
	BootstrapExpect int
	// NonVoter joins the cluster as a non-voter: it replicates the log
	// and serves reads, and takes no part in elections or commitment.
	NonVoter bool
	// HTTPAddr is this node's API address, told to the other members (for
	// muster members).
	HTTPAddr string
	// AdminCheck identifies the admin token without revealing it (a hash
	// of its hash): members whose AdminCheck differ refuse each other's
	// RPCs, so that a cluster cannot run with two admin tokens.
	AdminCheck []byte

	Logger *slog.Logger
	// Observer, when set, learns of every command the FSM applies and of
	// every snapshot it restores, and is waited for before a snapshot is
	// persisted (see Observer): the audit trail.
	Observer Observer

	// faults cuts links between members in tests of partitions (see
	// faults.go); nil otherwise.
	faults *faults
	// durableWait, when set, replaces the package's durableWait (tests).
	durableWait time.Duration
}

// DefaultConfig returns the configuration of the embedded single node.
func DefaultConfig() Config {
	return Config{
		DataDir:           "muster-data",
		RaftAddr:          "127.0.0.1:9001",
		Bootstrap:         true,
		HeartbeatTimeout:  500 * time.Millisecond,
		ElectionTimeout:   500 * time.Millisecond,
		ApplyTimeout:      5 * time.Second,
		SnapshotThreshold: DefaultSnapshotThreshold,
		DiskReserve:       DefaultDiskReserve,
	}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("cluster: data dir is required")
	}
	if len(c.Secret) > 0 && c.SecretFile != "" {
		return errors.New("cluster: give the cluster secret or its file, not both")
	}
	if len(c.Secret) > 0 && len(c.Secret) < MinSecretLen {
		return fmt.Errorf("cluster: the cluster secret must be at least %d bytes", MinSecretLen)
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if c.hasSecret() && c.hasTLS() {
		return errors.New("cluster: give a cluster secret or TLS certificates from a cluster CA, not both: " +
			"every server of a cluster authenticates its peers with the same one (see docs/cluster.md)")
	}
	if c.hasSecret() && c.RaftAddr == "" {
		return errors.New("cluster: raft address is required with a cluster secret")
	}
	if c.hasTLS() && c.RaftAddr == "" {
		return errors.New("cluster: raft address is required with TLS certificates")
	}
	if c.BootstrapExpect < 0 {
		return errors.New("cluster: bootstrap-expect must not be negative")
	}
	if c.Clustered() && !c.hasSecret() && !c.hasTLS() {
		return errors.New("cluster: joining or forming a cluster (join, bootstrap-expect above 1, non-voter) needs a cluster secret " +
			"or TLS certificates from a cluster CA")
	}
	if c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < 5*time.Millisecond {
		return errors.New("cluster: raft timeouts must be at least 5ms")
	}
	return nil
}

// Clustered reports whether the node is to join or form a cluster of
// several servers rather than be the single voter.
func (c Config) Clustered() bool { return len(c.Join) > 0 || c.BootstrapExpect > 1 || c.NonVoter }

// Node is one Raft member holding a catalog.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	store     *raftboltdb.BoltStore
	guard     *writeGuard // serialises raft.db's writes, drops its resident pages (resident.go)
	transport transport
	log       *slog.Logger
	cat       *catalog.Catalog

	mu sync.Mutex
	// ready is closed once this node, as leader, has applied the whole
	// committed log; it is replaced when leadership is lost.
	ready       chan struct{}
	leaderSince time.Time
	leaderGen   uint64

	stop chan struct{}
	wg   sync.WaitGroup

	// halted is closed when the FSM meets a command it cannot apply;
	// haltErr says which (set before the close).
	halted   chan struct{}
	haltErr  error
	haltOnce sync.Once

	// raftStopOnce makes Raft's shutdown happen once, with every caller
	// of stopRaft waiting for it (see stopRaft).
	raftStopOnce sync.Once
	raftStopErr  error

	// diskGuard refuses writes while the data dir's disk is nearly full;
	// see disk.go. It is made on first use.
	diskGuard *diskGuard
	diskOnce  sync.Once

	// raftReady holds raft once NewRaft returned, for the vote guard's
	// goroutine, which may run before (voteguard.go).
	raftReady atomic.Pointer[raft.Raft]

	// rpc is the servers' RPC (rpc.go); nil without a cluster secret.
	rpc *rpcNode
	// peers are the servers this node heard of (join.go).
	peersMu sync.Mutex
	peers   map[string]Peer
	// promiseMu guards promise, the bootstrap promise this node holds
	// (join.go), nil if none; its grant and release are serialised by it.
	promiseMu sync.Mutex
	promise   *promise
	// marked is set once this node holds Raft state and has recorded it
	// (markState, under markMu): cluster-id written, the promise gone.
	marked atomic.Bool
	markMu sync.Mutex
	// admitted is set once the cluster added this node (askToJoin);
	// leaving once Leave began, after which it asks no more.
	admitted atomic.Bool
	leaving  atomic.Bool
	removed  atomic.Bool  // see watchRemoval
	joinMu   sync.RWMutex // held shared by a request to join in flight
	// memberMu orders the leader's changes of membership (addServer,
	// removeServer): a request to add a server that waited while the
	// server was removed reads the configuration after the removal.
	memberMu sync.Mutex
	// dupOf is the Raft address of another server with this node's ID,
	// once one answered (duplicateID).
	dupOf atomic.Pointer[string]
	// refusedLogAt is when the vote guard last said it refused a
	// leader's log (mayReplicate), under refusedLogMu.
	refusedLogMu sync.Mutex
	refusedLogAt time.Time
	// restoreMu is held by a restore (restore_live.go) while it replaces
	// the catalog, and for reading by every proposal of a command, which
	// is refused while a restore holds it.
	restoreMu sync.RWMutex
}

// Open opens (or creates) the node's Raft state in cfg.DataDir and starts
// Raft. The catalog is filled from the latest snapshot and the log.
func Open(cfg Config, cat *catalog.Catalog) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 5 * time.Second
	}
	// The data dir and raft's snapshots dir (which raft would create
	// 0755) are the owner's alone; raft.db and the snapshots inside hold
	// hashes of every secret.
	for _, dir := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "snapshots")} {
		if _, err := durable.PrivateDir(dir); err != nil {
			return nil, fmt.Errorf("cluster: data dir: %w", err)
		}
	}
	id, err := NodeIDOf(cfg.DataDir, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	cfg.NodeID = id
	n := &Node{cfg: cfg, log: cfg.Logger, cat: cat, ready: make(chan struct{}), stop: make(chan struct{}), halted: make(chan struct{}),
		peers: map[string]Peer{}}
	hl := newHCLogger(cfg.Logger)

	auth, err := loadPeerAuth(cfg)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hl)
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshots: %w", err)
	}
	st, err := openStore(cfg, snaps)
	if err != nil {
		return nil, err
	}
	// raft.db is open, and locked: no other process uses this data dir.
	reapTempSnapshots(filepath.Join(cfg.DataDir, "snapshots"), n.log)
	store := st.store
	n.store = store
	n.guard = newWriteGuard(filepath.Join(cfg.DataDir, raftDBFile), n.log)
	if auth == nil {
		if err := singleVoterRule(st.conf, raft.ServerID(cfg.NodeID), cfg.DataDir); err != nil {
			store.Close()
			return nil, err
		}
	}
	trans, stream, err := newTransport(cfg, auth, hl)
	if err != nil {
		store.Close()
		return nil, err
	}
	if stream != nil {
		// Only a node with peers can be asked for votes (voteguard.go).
		trans = guardVotes(trans, raft.ServerID(cfg.NodeID), n)
		reserved := n.reservedAddr
		stream.reserved.Store(&reserved)
	}
	n.transport = trans
	if auth == nil {
		n.log.Info("raft has no network listener: without a cluster secret or certificates this node is a single voter",
			"raft_addr", trans.LocalAddr())
	} else {
		n.log.Info("raft listening; it accepts only peers that prove they hold "+auth.credential(), "raft_addr", trans.LocalAddr())
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	rc.SnapshotInterval = snapshotInterval
	rc.SnapshotThreshold = snapshotThreshold(cfg.SnapshotThreshold, 0)
	rc.MaxAppendEntries = maxAppendEntries
	if auth == nil {
		singleVoterConfig(rc)
	}

	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("cluster: inspect state: %w", err)
	}
	switch {
	case !has && cfg.Bootstrap && !cfg.Clustered():
		conf := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
		}}}
		if err := raft.BootstrapCluster(rc, store, store, snaps, trans, conf); err != nil {
			n.closeStores()
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
		// Recorded after the bootstrap is on disk: a crash in between
		// leaves state without the record, which the next start writes.
		id, err := writeClusterID(cfg.DataDir)
		if err != nil {
			n.closeStores()
			return nil, err
		}
		n.log.Info("bootstrapped a new single-voter cluster", "node_id", cfg.NodeID, "cluster_id", id)
	case has && !st.marked:
		id, err := writeClusterID(cfg.DataDir)
		if err != nil {
			n.closeStores()
			return nil, err
		}
		n.log.Info("recorded that this data dir holds a cluster", "file", filepath.Join(cfg.DataDir, clusterIDFile), "cluster_id", id)
	}
	if has || (cfg.Bootstrap && !cfg.Clustered()) {
		// A promise left by an older version, or by a crash before
		// markState, binds no more: the node votes by its configuration.
		if err := n.forgetPromise(); err != nil {
			n.closeStores()
			return nil, fmt.Errorf("cluster: delete the bootstrap promise: %w", err)
		}
		n.marked.Store(true)
	} else {
		n.loadPromise()
	}

	logStore := contiguousLog{store, n.markState, n.guard}
	r, err := raft.NewRaft(rc, &fsm{cat: cat, log: n.log, halt: n.halt, restored: n.markState, obs: cfg.Observer, node: cfg.NodeID,
		durableWait: cmp.Or(cfg.durableWait, durableWait)},
		logStore, logStore, snaps, trans)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	n.raftReady.Store(r)
	n.setSnapshotThreshold() // for the catalog the latest snapshot restored
	if stream != nil {
		n.startRPC(stream)
	}
	n.wg.Add(2)
	go n.watchLeadership()
	go n.tuneSnapshots()
	if n.rpc != nil {
		n.wg.Add(1)
		go n.watchRemoval()
	}
	switch {
	case !has && cfg.Clustered():
		n.wg.Add(1)
		go n.discover()
	case has && n.rpc != nil && !n.isMember():
		// It was removed, or left: Raft will not let it take part
		// again, and it never learns more of the log.
		n.log.Error("this server holds a cluster's state but is not in the cluster's configuration: it was removed or left. "+
			"To make it a member again, stop it, empty its data dir, and start it with --join (without --bootstrap-expect)",
			"node_id", cfg.NodeID, "data_dir", cfg.DataDir)
	}
	return n, nil
}

// markState records, once, that this node holds Raft state: it writes
// DataDir/cluster-id (0600, durably) if it is not there, so that a
// raft.db lost from now on is refused at the next start (ErrStateLost),
// and then deletes the bootstrap promise, durably. It runs as soon as the
// node first stores a log entry or installs a snapshot (a bootstrap, or a
// leader's replication), not only at the next start: a member that got
// its state by replication would otherwise hold no cluster-id, and its
// promise, until it restarted. It is cheap once done.
func (n *Node) markState() {
	if n.marked.Load() {
		return
	}
	n.markMu.Lock()
	defer n.markMu.Unlock()
	if n.marked.Load() {
		return
	}
	_, exists, err := readClusterID(n.cfg.DataDir)
	if err == nil && !exists {
		var id string
		if id, err = writeClusterID(n.cfg.DataDir); err == nil {
			n.log.Info("recorded that this data dir holds a cluster", "file", filepath.Join(n.cfg.DataDir, clusterIDFile), "cluster_id", id)
		}
	}
	if err != nil {
		n.log.Error("could not record that this data dir holds a cluster; will try again at the next entry", "err", err)
		return
	}
	if err := n.forgetPromise(); err != nil {
		n.log.Error("could not delete the bootstrap promise; will try again at the next entry", "err", err)
		return
	}
	n.marked.Store(true)
}

// reservedAddr reports whether ip is a member's, for the handshake slots
// kept for members (secureStream.takeSlot): the address of a server in
// the Raft configuration, of a peer heard of, or of an entry of
// Config.Join, compared by address group (an IPv4 address, an IPv6 /64).
func (n *Node) reservedAddr(ip netip.Addr) bool {
	g := addrGroup(ip)
	match := func(addr string) bool {
		a, err := netip.ParseAddr(hostOf(addr))
		return err == nil && addrGroup(a) == g
	}
	if r := n.raftReady.Load(); r != nil {
		for _, s := range r.GetConfiguration().Configuration().Servers {
			if match(string(s.Address)) {
				return true
			}
		}
	}
	for _, p := range n.known() {
		if match(p.RaftAddr) {
			return true
		}
	}
	for _, a := range n.cfg.Join {
		if match(a) {
			return true
		}
	}
	return false
}

func (n *Node) closeStores() {
	if n.transport != nil {
		n.transport.Close()
	}
	n.closeStore()
}

// closeStore closes raft.db under its write guard, so that no drop of
// its resident pages runs while bbolt unmaps it.
func (n *Node) closeStore() error {
	n.guard.mu.Lock()
	defer n.guard.mu.Unlock()
	n.guard.closed = true
	return n.store.Close()
}

// ShedResident drops this process's resident pages of raft.db's mapping
// now, as each compaction of the log does (resident.go): the server calls
// it once at rest after a burst of writes, whose latest entries' pages
// would otherwise stay resident until the next compaction. A no-op
// after Close, and off Linux.
func (n *Node) ShedResident() {
	n.guard.mu.Lock()
	defer n.guard.mu.Unlock()
	n.guard.shedLocked()
}

// CheckNodeID checks that dir, if it holds a node ID (in its node-id
// file, which a node opened without Config.NodeID, or a backup restored
// into a new data dir, writes), holds id, the ID the node is opened with:
// a data dir restored or first started under one ID is not a member
// under another, and opening it so would only leave it out of its own
// cluster. The error names both IDs and leaves the data dir as it is. A
// data dir without node-id passes.
func CheckNodeID(dir, id string) error {
	p := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(p)
	if err != nil || len(b) == 0 || string(b) == id {
		return nil // none (or unreadable: opening the stores says why)
	}
	return fmt.Errorf("cluster: the data dir %s holds node ID %q (in %s), and this server was given --node-id %q; "+
		"it did not start, and the data dir is kept as it is. Start it with --node-id %s (or without --node-id), "+
		"or, for a backup restored there, restore it again into a new directory with muster snapshot restore FILE --data-dir DIR --node-id %s",
		dir, b, p, id, b, id)
}

// NodeIDOf returns the ID of a node opened over the data dir dir with
// configured as Config.NodeID: configured, once checked against the
// dir's node-id file (CheckNodeID), or, when configured is empty, the
// file's, which it creates with a random ID if absent. An assembly calls
// it before Open to name the node in every line of its log.
func NodeIDOf(dir, configured string) (string, error) {
	if configured != "" {
		return configured, CheckNodeID(dir, configured)
	}
	return loadNodeID(dir)
}

// loadNodeID reads DataDir/node-id, creating it with a random ID if absent.
func loadNodeID(dir string) (string, error) {
	p := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(p)
	if err == nil && len(b) > 0 {
		if _, err := durable.PrivateFile(p); err != nil { // an older version's file
			return "", fmt.Errorf("cluster: node id: %w", err)
		}
		return string(b), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("cluster: node id: %w", err)
	}
	id := "node-" + random.ID(6)
	if err := durable.WriteFile(p, []byte(id), 0o600); err != nil {
		return "", fmt.Errorf("cluster: node id: %w", err)
	}
	return id, nil
}

// watchLeadership tracks leadership. On gaining it, the node waits for a
// barrier (every committed entry applied) before it reports ready.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	ch := n.raft.LeaderCh()
	for {
		select {
		case <-n.stop:
			return
		case isLeader := <-ch:
			if !isLeader {
				n.unready()
				n.log.Warn("lost leadership")
				continue
			}
			n.mu.Lock()
			n.leaderGen++
			gen := n.leaderGen
			n.mu.Unlock()
			var err error
			for {
				err = n.waitFuture(n.raft.Barrier(n.cfg.ApplyTimeout))
				if err == nil {
					break
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				if errors.Is(err, ErrHalted) || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
					break
				}
				n.log.Warn("barrier after election failed, retrying", "err", err)
				select {
				case <-n.stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			if err == nil {
				n.updateOwnAddress()
			}
			n.mu.Lock()
			if gen == n.leaderGen && n.raft.State() == raft.Leader && n.Err() == nil {
				n.leaderSince = time.Now()
				close(n.ready)
				n.log.Info("leader ready", "index", n.cat.Index(), "node_id", n.cfg.NodeID)
			}
			n.mu.Unlock()
		}
	}
}

// unready ends the current leadership term as far as readiness goes: a
// barrier still in flight for it will not mark the node ready.
func (n *Node) unready() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.leaderGen++
	select {
	case <-n.ready:
		n.ready = make(chan struct{})
	default:
	}
}

// Ready returns a channel closed once this node leads and has applied the
// whole log, and the time it became ready, or, if later, the time a
// restore from a backup last replaced its catalog (restore_live.go),
// from which expiry is judged afresh. A new channel is handed out after
// leadership is lost.
func (n *Node) Ready() (<-chan struct{}, time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ready, n.leaderSince
}

// IsReady reports whether the node leads and has applied the whole log.
func (n *Node) IsReady() bool {
	ch, _ := n.Ready()
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Leader returns the address of the current leader, or "" if none is known.
func (n *Node) Leader() string {
	addr, _ := n.raft.LeaderWithID()
	return string(addr)
}

// NodeID returns this node's Raft server ID.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// RaftAddr returns the address the Raft transport listens on, or, for a
// node without a cluster secret (which has no listener), InMemoryAddrPrefix
// followed by the node ID.
func (n *Node) RaftAddr() string { return string(n.transport.LocalAddr()) }

// Apply proposes cmd and waits until it is committed and applied. It is the
// one place where a command's fate is folded into a single error: the
// catalog's own (catalog.ErrNotFound, ErrKeyRevoked…), returned as is and
// also in Result.Err, or one of this package's, which mean the command
// was not applied: ErrNotLeader, ErrTimeout, ErrClosed, ErrHalted,
// ErrDiskFull (the data dir's filesystem is below Config.DiskReserve,
// checked before the command reaches Raft, or the log write found the disk
// full) and ErrStorage (Raft could not write the log), the last two
// wrapped with their detail. A command that fails Command.Validate is
// refused before it is proposed, with an error wrapping
// catalog.ErrBadCommand. The Result's Index and Replaced are set when the
// command was applied.
func (n *Node) Apply(ctx context.Context, cmd catalog.Command) (catalog.Result, error) {
	cmd.Origin = n.stamp(cmd.Origin)
	if err := cmd.Validate(); err != nil {
		return catalog.Result{}, fmt.Errorf("cluster: refusing to propose: %w", err)
	}
	b, err := catalog.EncodeCommand(cmd)
	if err != nil {
		return catalog.Result{}, err
	}
	select {
	case <-n.halted:
		return catalog.Result{}, ErrHalted
	default:
	}
	if n.raft.State() != raft.Leader {
		if n.rpc == nil {
			return catalog.Result{}, ErrNotLeader
		}
		return n.forward(ctx, b)
	}
	return n.applyEncoded(ctx, b)
}

// stamp returns a copy of o (or a new origin) with the time, when it has
// none, of this node's clock, and this node's ID when it names no node:
// the node that proposes a command is the node that handled it (a write
// forwarded to the leader was stamped by the follower that took it).
func (n *Node) stamp(o *catalog.Origin) *catalog.Origin {
	var out catalog.Origin
	if o != nil {
		out = *o
	}
	if out.Time.IsZero() {
		out.Time = time.Now().UTC()
	}
	if out.Node == "" {
		out.Node = n.cfg.NodeID
	}
	return &out
}

// applyEncoded proposes an encoded command on the leader and waits for
// its fate (see Apply).
func (n *Node) applyEncoded(ctx context.Context, b []byte) (catalog.Result, error) {
	if n.raft.State() != raft.Leader {
		return catalog.Result{}, ErrNotLeader
	}
	// None is proposed while a restore replaces the catalog: it was
	// decided against the catalog being replaced (restore_live.go).
	if !n.restoreMu.TryRLock() {
		return catalog.Result{}, errRestoring
	}
	defer n.restoreMu.RUnlock()
	// Refused here, a write on a full disk costs nothing; refused by the
	// log store, it would step the leader down (see disk.go).
	if err := n.disk().check(); err != nil {
		return catalog.Result{}, err
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < timeout {
			timeout = d
		}
	}
	f := n.raft.Apply(b, timeout)
	// The future is waited on even if ctx ends: the command may already be
	// in the log, and the caller must learn its fate rather than guess.
	// Only a halt or Close ends the wait early (hashicorp/raft may leave
	// a future unanswered at shutdown); the error then says the command's
	// fate is unknown to this node.
	if err := n.waitFuture(f); err != nil {
		err = applyError(err)
		if errors.Is(err, ErrDiskFull) || errors.Is(err, ErrStorage) {
			n.disk().failed()
			n.log.Error("writing the log failed; the command was not applied", "err", err, "data_dir", n.cfg.DataDir)
		}
		return catalog.Result{}, err
	}
	res, ok := f.Response().(catalog.Result)
	if !ok {
		return catalog.Result{}, fmt.Errorf("cluster: apply: unexpected response %T", f.Response())
	}
	return res, res.Err
}

// halt is called once by the FSM when it meets a command it cannot apply.
// It must not block the FSM goroutine: stopping Raft waits for that very
// goroutine, so it happens on another.
func (n *Node) halt(err error) {
	n.haltOnce.Do(func() {
		msg := "stopping: the Raft log holds a command this version of muster cannot apply; " +
			"run the muster version that wrote it (or a newer one) on this node"
		if errors.Is(err, catalog.ErrCorrupt) {
			db := filepath.Join(n.cfg.DataDir, "raft.db")
			err = fmt.Errorf("%w; the entry is in %s and is not what was written there. "+
				"Nothing from it on was applied or served. Restore the data dir from a backup, "+
				"or, in a cluster of several voters, empty this node's data dir so that it copies the log from the leader; "+
				"check the disk", err, db)
			msg = "stopping: a Raft log entry is corrupt"
		}
		n.haltErr = err
		n.log.Error(msg, "err", err, "node_id", n.cfg.NodeID)
		close(n.halted)
		n.unready()
		go func() {
			if err := n.stopRaft(); err != nil {
				n.log.Warn("raft shutdown after halt", "err", err)
			}
		}()
	})
}

// Done returns a channel closed when the node halted because its log holds
// a command this version cannot apply; Err then says which. A halted node
// is never ready and refuses writes with ErrHalted. Close still has to be
// called.
func (n *Node) Done() <-chan struct{} { return n.halted }

// Err returns why the node halted, or nil while it has not.
func (n *Node) Err() error {
	select {
	case <-n.halted:
		return n.haltErr
	default:
		return nil
	}
}

// Stats is this node's Raft state, for metrics.
type Stats struct {
	Leader                                         bool
	Term, CommitIndex, AppliedIndex, SnapshotIndex uint64
	// LastContact is the time since a follower last heard from its
	// leader: 0 on the leader, negative when never.
	LastContact time.Duration
}

// Stats returns this node's Raft state.
func (n *Node) Stats() Stats {
	st := Stats{Leader: n.raft.State() == raft.Leader, Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(), LastContact: -1}
	if v, err := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64); err == nil {
		st.SnapshotIndex = v
	}
	switch {
	case st.Leader:
		st.LastContact = 0
	case !n.raft.LastContact().IsZero():
		st.LastContact = time.Since(n.raft.LastContact())
	}
	return st
}

// Snapshot forces a snapshot now (used by tests and operators).
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// stopRaft shuts Raft down and waits until it has stopped, however many
// goroutines call it (a halt and Close). Raft's own Shutdown returns at
// once to every caller but the first, before Raft has stopped: closing
// the stores after it crashed Raft ("database not open").
func (n *Node) stopRaft() error {
	n.raftStopOnce.Do(func() { n.raftStopErr = n.raft.Shutdown().Error() })
	return n.raftStopErr
}

// waitFuture waits for a Raft future, or until the node closes or halts.
// A Barrier or Apply future that Raft dispatched is never answered if
// Raft shuts down before its FSM reaches it (hashicorp/raft answers only
// some futures on shutdown); the goroutine left waiting on such a one
// ends with the process.
func (n *Node) waitFuture(f raft.Future) error {
	ch := make(chan error, 1)
	go func() { ch <- f.Error() }()
	select {
	case err := <-ch:
		return err
	case <-n.stop:
		return ErrClosed
	case <-n.halted:
		return ErrHalted
	}
}

// Close stops Raft and closes the stores.
func (n *Node) Close() error {
	select {
	case <-n.stop:
		return nil
	default:
	}
	close(n.stop)
	n.rpc.close()
	err := n.stopRaft()
	n.wg.Wait()
	n.unready()
	n.transport.Close()
	if cerr := n.closeStore(); err == nil {
		err = cerr
	}
	return err
}

// maxAppendEntries bounds the commands the leader writes to its log in
// one append (one fsync), and sends a follower in one request: Raft's
// default is 64. A mass of expiries (the sweep proposes up to
// health.sweepParallel at once) commits in 512s.
const maxAppendEntries = 512
