package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/random"
)

// unavailableError is an error of the replication layer that means "no
// node can take this write right now; retry". Its Unavailable method is
// how consumers (package registry) recognise it without importing this
// package.
type unavailableError string

func (e unavailableError) Error() string { return string(e) }

// Unavailable reports true: retrying later, or on the leader, may succeed.
func (unavailableError) Unavailable() bool { return true }

// Errors of Apply other than the catalog's own. Each has an
// Unavailable() bool method that reports true.
var (
	// ErrNotLeader means this node cannot accept writes because it is not
	// the Raft leader.
	ErrNotLeader error = unavailableError("cluster: not the leader")
	// ErrTimeout means a command could not be handed to Raft in time; it
	// was not applied.
	ErrTimeout error = unavailableError("cluster: timed out waiting for the log")
	// ErrClosed means the node has been closed.
	ErrClosed error = unavailableError("cluster: node closed")
	// ErrHalted means the node stopped applying the log because it met a
	// command this version cannot apply; see Node.Done.
	ErrHalted error = unavailableError("cluster: node halted at a command it cannot apply")
)

// Config configures a Node.
type Config struct {
	// DataDir holds raft.db, snapshots/ and node-id.
	DataDir string
	// RaftAddr is the TCP address Raft binds; port 0 picks a free one.
	RaftAddr string
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
	// SnapshotThreshold is how many log entries trigger a snapshot.
	SnapshotThreshold uint64
	Logger            *slog.Logger
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
		SnapshotThreshold: 8192,
	}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("cluster: data dir is required")
	}
	if c.RaftAddr == "" {
		return errors.New("cluster: raft address is required")
	}
	if c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < 5*time.Millisecond {
		return errors.New("cluster: raft timeouts must be at least 5ms")
	}
	return nil
}

// Node is one Raft member holding a catalog.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	store     *raftboltdb.BoltStore
	transport *raft.NetworkTransport
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
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	if cfg.NodeID == "" {
		id, err := loadNodeID(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		cfg.NodeID = id
	}
	n := &Node{cfg: cfg, log: cfg.Logger, cat: cat, ready: make(chan struct{}), stop: make(chan struct{}), halted: make(chan struct{})}
	hl := newHCLogger(cfg.Logger)

	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.DataDir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft.db (is another muster using %s?): %w", cfg.DataDir, err)
	}
	n.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hl)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: snapshots: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: raft address: %w", err)
	}
	var advertise net.Addr
	if addr.Port != 0 && !addr.IP.IsUnspecified() {
		advertise = addr
	}
	trans, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, advertise, 3, 10*time.Second, hl)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: raft transport: %w", err)
	}
	n.transport = trans

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			n.closeStores()
			return nil, fmt.Errorf("cluster: inspect state: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
			}}}
			if err := raft.BootstrapCluster(rc, store, store, snaps, trans, conf); err != nil {
				n.closeStores()
				return nil, fmt.Errorf("cluster: bootstrap: %w", err)
			}
			n.log.Info("bootstrapped a new single-voter cluster", "node_id", cfg.NodeID)
		}
	}

	r, err := raft.NewRaft(rc, &fsm{cat: cat, log: n.log, halt: n.halt}, store, store, snaps, trans)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	n.wg.Add(1)
	go n.watchLeadership()
	return n, nil
}

func (n *Node) closeStores() {
	if n.transport != nil {
		n.transport.Close()
	}
	n.store.Close()
}

// loadNodeID reads DataDir/node-id, creating it with a random ID if absent.
func loadNodeID(dir string) (string, error) {
	p := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(p)
	if err == nil && len(b) > 0 {
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
			for {
				err := n.raft.Barrier(n.cfg.ApplyTimeout).Error()
				if err == nil {
					break
				}
				if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
					break
				}
				n.log.Warn("barrier after election failed, retrying", "err", err)
				select {
				case <-n.stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
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
// whole log, and the time it became ready. A new channel is handed out after
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

// RaftAddr returns the address the Raft transport listens on.
func (n *Node) RaftAddr() string { return string(n.transport.LocalAddr()) }

// Apply proposes cmd and waits until it is committed and applied. It is the
// one place where a command's fate is folded into a single error: the
// catalog's own (catalog.ErrNotFound, ErrKeyRevoked…), returned as is and
// also in Result.Err, or one of this package's, which mean the command
// was not applied (ErrNotLeader, ErrTimeout, ErrClosed, ErrHalted). The
// Result's Index and Replaced are set when the command was applied.
func (n *Node) Apply(ctx context.Context, cmd catalog.Command) (catalog.Result, error) {
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
		return catalog.Result{}, ErrNotLeader
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
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return catalog.Result{}, ErrNotLeader
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return catalog.Result{}, ErrClosed
		}
		if errors.Is(err, raft.ErrEnqueueTimeout) {
			return catalog.Result{}, ErrTimeout
		}
		return catalog.Result{}, fmt.Errorf("cluster: apply: %w", err)
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
		n.haltErr = err
		n.log.Error("stopping: the Raft log holds a command this version of muster cannot apply; "+
			"run the muster version that wrote it (or a newer one) on this node", "err", err, "node_id", n.cfg.NodeID)
		close(n.halted)
		n.unready()
		go func() {
			if err := n.raft.Shutdown().Error(); err != nil {
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

// Snapshot forces a snapshot now (used by tests and operators).
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// Close stops Raft and closes the stores.
func (n *Node) Close() error {
	select {
	case <-n.stop:
		return nil
	default:
	}
	close(n.stop)
	err := n.raft.Shutdown().Error()
	n.wg.Wait()
	n.unready()
	n.transport.Close()
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}
