package cluster

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"
)

// The vote guard. A server that lost its data dir and starts again on its
// old address receives the Raft traffic meant for the member that had
// that address; with no configuration, hashicorp/raft grants its vote to
// any candidate. An empty server's vote can elect a candidate that lacks
// acknowledged writes (the member it replaces had them), and those writes
// are lost. So a server grants a vote, or a pre-vote, only while its own
// latest configuration lists it as a voter, or, before it has any, to the
// coordinator it promised to bootstrap with (join.go): the first election
// of a new cluster needs those votes, and only those. Everything else
// about the request is left to Raft.

// guardedTransport is a Raft transport whose incoming vote requests pass
// the guard before Raft sees them.
type guardedTransport struct {
	transport
	may  func(candidate raft.ServerID) bool
	ch   chan raft.RPC
	once sync.Once
	stop chan struct{}
}

// guardVotes wraps t; may says whether this server may vote for a
// candidate at all. It is started with the node and ends at Close.
func guardVotes(t transport, may func(raft.ServerID) bool) *guardedTransport {
	g := &guardedTransport{transport: t, may: may, ch: make(chan raft.RPC), stop: make(chan struct{})}
	go g.run()
	return g
}

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
			if !g.may(raft.ServerID(req.ID)) {
				rpc.Respond(&raft.RequestVoteResponse{RPCHeader: req.RPCHeader, Term: req.Term, Granted: false}, nil)
				continue
			}
		case *raft.RequestPreVoteRequest:
			if !g.may(raft.ServerID(req.ID)) {
				rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: req.RPCHeader, Term: req.Term, Granted: false}, nil)
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
func (n *Node) mayVote(candidate raft.ServerID) bool {
	r := n.raftReady.Load()
	if r == nil {
		return false
	}
	conf := r.GetConfiguration().Configuration()
	if len(conf.Servers) == 0 {
		p, ok := n.readPromise()
		if ok && raft.ServerID(p.Coordinator) == candidate {
			return true
		}
		n.log.Warn("refused a vote: this server holds no Raft state and promised no bootstrap to the candidate (a server that lost its data must not vote)",
			"candidate", string(candidate))
		return false
	}
	for _, s := range conf.Servers {
		if string(s.ID) == n.cfg.NodeID {
			return s.Suffrage == raft.Voter
		}
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
