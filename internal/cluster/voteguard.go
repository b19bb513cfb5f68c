package cluster

import (
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The vote guard. A server that lost its data dir and starts again on its
// old address receives the Raft traffic meant for the member that had
// that address; with no configuration, hashicorp/raft grants its vote to
// any candidate. An empty server's vote can elect a candidate that lacks
// acknowledged writes (the member it replaces had them), and those writes
// are lost. So a server grants a vote, or a pre-vote, only while its own
// latest configuration lists it as a voter, or, before it has any, to the
// coordinator it promised to bootstrap with (join.go), by that
// coordinator's ID and Raft address, and only while the promise binds
// (promiseTTL): the first election of a new cluster needs those votes,
// and only those. Everything else about the request is left to Raft. A
// refusal carries this server's own RPC header.
//
// The guard keeps the log from such a server too: a server looking for
// its cluster (Config.Join, BootstrapExpect) that holds no Raft state
// takes entries or a snapshot from a leader only once it was added to
// the cluster or promised into its bootstrap (mayReplicate). A server
// whose data was lost, restarted under its old ID and address, is thus
// not taken back by the leader's replication alone: it is refused until
// the old member is removed (addServer).

// guardRules are the node's answers to the guard.
type guardRules interface {
	// mayVote says whether this server may vote for the candidate at
	// addr at all.
	mayVote(candidate raft.ServerID, addr raft.ServerAddress) bool
	// mayReplicate says whether this server may take a leader's log.
	mayReplicate() bool
}

// guardedTransport is a Raft transport whose incoming vote requests and
// log pass the guard before Raft sees them.
type guardedTransport struct {
	transport
	rules guardRules
	id    raft.ServerID
	ch    chan raft.RPC
	once  sync.Once
	stop  chan struct{}
}

// guardVotes wraps t for the server id. It is started with the node and
// ends at Close.
func guardVotes(t transport, id raft.ServerID, rules guardRules) *guardedTransport {
	g := &guardedTransport{transport: t, rules: rules, id: id, ch: make(chan raft.RPC), stop: make(chan struct{})}
	go g.run()
	return g
}

// header is this server's RPC header, as Raft would put on its own
// answers.
func (g *guardedTransport) header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(g.id), Addr: []byte(g.transport.LocalAddr())}
}

// errNotAdmitted answers a leader's log sent to a server that may not
// take it (mayReplicate).
var errNotAdmitted = errors.New("cluster: this server holds no Raft state and was not added to the cluster; " +
	"if its data was lost, remove it (muster members remove ID) and start it again")

func (g *guardedTransport) run() {
	in := g.transport.Consumer()
	for {
		var rpc raft.RPC
		select {
		case rpc = <-in:
		case <-g.stop:
			return
		}
		switch req := rpc.Command.(type) {
		case *raft.RequestVoteRequest:
			addr := req.RPCHeader.Addr
			if len(addr) == 0 {
				addr = req.Candidate //nolint:staticcheck // older senders
			}
			if !g.rules.mayVote(raft.ServerID(req.ID), raft.ServerAddress(addr)) {
				rpc.Respond(&raft.RequestVoteResponse{RPCHeader: g.header(), Term: req.Term, Granted: false}, nil)
				continue
			}
		case *raft.RequestPreVoteRequest:
			if !g.rules.mayVote(raft.ServerID(req.ID), raft.ServerAddress(req.Addr)) {
				rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: g.header(), Term: req.Term, Granted: false}, nil)
				continue
			}
		case *raft.AppendEntriesRequest, *raft.InstallSnapshotRequest:
			if !g.rules.mayReplicate() {
				rpc.Respond(nil, errNotAdmitted)
				continue
			}
		}
		select {
		case g.ch <- rpc:
		case <-g.stop:
			return
		}
	}
}

// Consumer returns the RPCs that passed the guard.
func (g *guardedTransport) Consumer() <-chan raft.RPC { return g.ch }

// Close stops the guard and the transport.
func (g *guardedTransport) Close() error {
	g.once.Do(func() { close(g.stop) })
	return g.transport.Close()
}

// mayVote is the guard's rule for this node (see the top of this file).
func (n *Node) mayVote(candidate raft.ServerID, addr raft.ServerAddress) bool {
	r := n.raftReady.Load()
	if r == nil {
		return false
	}
	conf := r.GetConfiguration().Configuration()
	if len(conf.Servers) == 0 {
		n.promiseMu.Lock()
		p := n.promise
		n.promiseMu.Unlock()
		if p != nil && raft.ServerID(p.Coordinator) == candidate && raft.ServerAddress(p.Addr) == addr && time.Now().Before(p.votes) {
			return true
		}
		n.log.Warn("refused a vote: this server holds no Raft state and holds no binding bootstrap promise to the candidate at that address (a server that lost its data must not vote)",
			"candidate", string(candidate), "candidate_addr", string(addr))
		return false
	}
	for _, s := range conf.Servers {
		if string(s.ID) == n.cfg.NodeID {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

// mayReplicate is the guard's rule for a leader's log (see the top of
// this file): always, but for a server looking for its cluster without
// Raft state that was neither added nor promised into its bootstrap.
func (n *Node) mayReplicate() bool {
	if !n.cfg.Clustered() || n.marked.Load() || n.admitted.Load() {
		return true
	}
	if r := n.raftReady.Load(); r != nil && r.LastIndex() > 0 {
		return true
	}
	if n.promised() {
		return true
	}
	n.refusedLogMu.Lock()
	defer n.refusedLogMu.Unlock()
	if time.Since(n.refusedLogAt) > 10*time.Second {
		n.refusedLogAt = time.Now()
		n.log.Warn("refused a leader's log: this server holds no Raft state and was not added to the cluster; " +
			"if a member has its ID, its data was lost: remove that member (muster members remove ID) and start this server again")
	}
	return false
}

// RequestPreVote passes pre-votes through: Raft uses pre-voting only
// when its transport offers it, and without it a server cut off from the
// others raises its term at every timeout and disrupts the cluster when
// it comes back.
func (g *guardedTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	p, ok := g.transport.(raft.WithPreVote)
	if !ok {
		return errors.New("cluster: the transport does not carry pre-votes")
	}
	return p.RequestPreVote(id, target, args, resp)
}

var _ raft.WithPreVote = (*guardedTransport)(nil)
