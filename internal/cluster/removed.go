package cluster

import (
	"context"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
)

// A server removed from its cluster while it was down, and started again
// over its data dir, still holds the configuration that lists it: it
// campaigns, the members refuse it (it is not in theirs), and nothing in
// its own state says why. So a server that hears no leader for a while
// asks the members of its configuration whether they count it: when one
// that knows a leader says it does not, the server says so in its log,
// reports "removed" (Degraded), and refuses writes at once (Writable)
// instead of waiting for a leader that will never answer. It stops
// saying so when it hears a leader again (it was added back).

const (
	// removalEvery is how often a server that hears no leader asks.
	removalEvery = time.Second
	// removalAfter is how long it must have heard no leader first.
	removalAfter = 3 * time.Second
)

type membershipRequest struct {
	ID string `json:"id"`
}

type membershipAnswer struct {
	// Member is whether the answering server's configuration lists ID.
	Member bool `json:"member"`
	// Leader is the leader the answering server knows, "" for none: an
	// answer from a server without one says nothing.
	Leader string `json:"leader,omitempty"`
	Index  uint64 `json:"index"`
}

func (n *Node) serveMembership(w http.ResponseWriter, r *http.Request) {
	var req membershipRequest
	if !ReadRPC(w, r, &req) {
		return
	}
	leader, _ := n.raft.LeaderWithID()
	ans := membershipAnswer{Leader: string(leader)}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		ans.Index = f.Index()
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == req.ID {
				ans.Member = true
			}
		}
	}
	WriteRPC(w, ans)
}

// watchRemoval runs for the node's life on a server with peers.
func (n *Node) watchRemoval() {
	defer n.wg.Done()
	t := time.NewTicker(removalEvery)
	defer t.Stop()
	var silentSince time.Time
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if leader, _ := n.raft.LeaderWithID(); leader != "" || n.raft.State() == raft.Leader {
			silentSince = time.Time{}
			if n.removed.Swap(false) {
				n.log.Info("this server hears a leader again: it is a member")
			}
			continue
		}
		if silentSince.IsZero() {
			silentSince = time.Now()
			continue
		}
		if n.removed.Load() || time.Since(silentSince) < removalAfter || !n.hasState() {
			continue
		}
		if by, ok := n.askRemoved(); ok {
			// The line first: whoever sees the state removed finds it
			// explained in the log.
			n.log.Error("this server was removed from its cluster: a member that knows the leader does not count it, "+
				"so it takes no part and refuses writes. To make it a member again, stop it, empty its data dir, "+
				"and start it with --join (without --bootstrap-expect)", "node_id", n.cfg.NodeID, "told_by", by)
			n.removed.Store(true)
		}
	}
}

// askRemoved asks the other servers of this node's configuration whether
// they count it; it reports the first that knows a leader and does not.
func (n *Node) askRemoved() (string, bool) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return "", false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.cfg.NodeID {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var ans membershipAnswer
		err := n.Call(ctx, string(s.Address), "/cluster/membership", membershipRequest{ID: n.cfg.NodeID}, &ans)
		cancel()
		if err == nil && ans.Leader != "" && !ans.Member {
			return string(s.ID), true
		}
	}
	return "", false
}

// Removed reports whether this server found that its cluster no longer
// counts it (see watchRemoval).
func (n *Node) Removed() bool { return n.removed.Load() }
