package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Member is one server of the cluster as Members reports it: its place in
// the Raft configuration and, when it answered, its own view of Raft.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	// Suffrage is "voter" or "nonvoter".
	Suffrage string `json:"suffrage"`
	// State is the member's Raft state ("leader", "follower",
	// "candidate"), or "unreachable" when it did not answer.
	State        string `json:"state"`
	Term         uint64 `json:"term,omitempty"`
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	CommitIndex  uint64 `json:"commit_index,omitempty"`
	// LastContactMS is how long ago the member last heard from its
	// leader, in milliseconds: 0 on the leader, -1 when it never has.
	LastContactMS int64 `json:"last_contact_ms"`
	// Error says why the member did not answer.
	Error string `json:"error,omitempty"`
}

// status is this node's own Member line.
func (n *Node) status() Member {
	m := Member{ID: n.cfg.NodeID, RaftAddr: string(n.transport.LocalAddr()), HTTPAddr: n.cfg.HTTPAddr,
		State: stateName(n.raft.State()), Term: n.raft.CurrentTerm(),
		AppliedIndex: n.raft.AppliedIndex(), CommitIndex: n.raft.CommitIndex(), LastContactMS: -1}
	m.Suffrage = "voter"
	if n.cfg.NonVoter {
		m.Suffrage = "nonvoter"
	}
	if n.raft.State() == raft.Leader {
		m.LastContactMS = 0
	} else if lc := n.raft.LastContact(); !lc.IsZero() {
		m.LastContactMS = time.Since(lc).Milliseconds()
	}
	return m
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	default:
		return "shutdown"
	}
}

func (n *Node) serveStatus(w http.ResponseWriter, _ *http.Request) { WriteRPC(w, n.status()) }

// Members lists the servers of the Raft configuration, each with its own
// account of its state, asked over the servers' RPC (a member that does
// not answer within a second is "unreachable").
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("cluster: configuration: %w", err)
	}
	servers := f.Configuration().Servers
	out := make([]Member, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		suffrage := "voter"
		if s.Suffrage != raft.Voter {
			suffrage = "nonvoter"
		}
		if string(s.ID) == n.cfg.NodeID {
			out[i] = n.status()
			out[i].Suffrage = suffrage
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := Member{ID: string(s.ID), RaftAddr: string(s.Address), Suffrage: suffrage, State: "unreachable", LastContactMS: -1}
			if p, ok := n.peer(m.ID); ok {
				m.HTTPAddr = p.HTTPAddr
			}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			var got Member
			if err := n.Call(cctx, m.RaftAddr, "/cluster/status", nil, &got); err != nil {
				m.Error = err.Error()
			} else {
				m.State, m.Term, m.AppliedIndex, m.CommitIndex, m.LastContactMS = got.State, got.Term, got.AppliedIndex, got.CommitIndex, got.LastContactMS
				if got.HTTPAddr != "" {
					m.HTTPAddr = got.HTTPAddr
				}
			}
			out[i] = m
		}()
	}
	wg.Wait()
	return out, nil
}

// ErrUnknownMember is returned by RemoveMember for an ID that is not in
// the Raft configuration.
var ErrUnknownMember = errors.New("cluster: no such member")

// ErrLastVoter is returned by RemoveMember for the cluster's only voter.
var ErrLastVoter = errors.New("cluster: the only voter cannot be removed")

// RemoveMember removes the server id from the Raft configuration,
// through the leader: a dead server, or one leaving. The leader may
// remove itself; it then steps down and another is elected.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	if n.rpc == nil {
		return ErrNoRPC
	}
	err := n.removeServer(ctx, id)
	var re *RemoteError
	if errors.As(err, &re) {
		switch re.Code {
		case "unknown_member":
			return fmt.Errorf("%w: %s", ErrUnknownMember, id)
		case "last_voter":
			return ErrLastVoter
		}
	}
	return err
}

func (n *Node) removeServer(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		return n.toLeader(ctx, "/cluster/remove", memberRequest{ID: id})
	}
	n.memberMu.Lock()
	defer n.memberMu.Unlock()
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	found, voters := false, 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == id {
			found = true
		}
	}
	if !found {
		return &RemoteError{Code: "unknown_member", Message: "no member has the ID " + id}
	}
	if voters == 1 && id == n.cfg.NodeID {
		return &RemoteError{Code: "last_voter", Message: "the only voter cannot be removed"}
	}
	if err := n.waitFuture(n.raft.RemoveServer(raft.ServerID(id), f.Index(), n.cfg.ApplyTimeout)); err != nil {
		return applyError(err)
	}
	n.peersMu.Lock()
	delete(n.peers, id)
	n.peersMu.Unlock()
	n.log.Info("removed a server from the cluster", "peer_id", id)
	return nil
}

func (n *Node) serveRemove(w http.ResponseWriter, r *http.Request) {
	var req memberRequest
	if !ReadRPC(w, r, &req) {
		return
	}
	ctx, cancel := rpcContext(r)
	defer cancel()
	if err := n.removeServer(ctx, req.ID); err != nil {
		writeMemberError(w, err)
		return
	}
	WriteRPC(w, struct{}{})
}

// Leave removes this node from the cluster before it stops: a leader
// first hands its leadership to another voter, so that the cluster does
// not wait out an election. The only voter does not leave.
func (n *Node) Leave(ctx context.Context) error {
	if n.rpc == nil {
		return nil
	}
	n.leaving.Store(true) // no more requests to join (askToJoin)
	n.joinMu.Lock()       // and none still in flight
	n.joinMu.Unlock()
	if n.raft.State() == raft.Leader {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("could not hand leadership over before leaving", "err", err)
		}
	}
	// Just after a handover this server may still read as the leader,
	// and its own removal then fails as not the leader's: it asks again,
	// through the new leader, for as long as a membership request waits.
	err := n.RemoveMember(ctx, n.cfg.NodeID)
	for deadline := time.Now().Add(toLeaderWait); errors.Is(err, ErrNotLeader) && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(50 * time.Millisecond)
		err = n.RemoveMember(ctx, n.cfg.NodeID)
	}
	if errors.Is(err, ErrLastVoter) {
		return nil
	}
	if err == nil {
		n.log.Info("left the cluster", "node_id", n.cfg.NodeID)
	}
	return err
}

// Replica is this node's replication state, for readers that serve from
// it (follower reads and their headers).
type Replica struct {
	// Leader is true on the leader.
	Leader bool
	// LeaderAddr and LeaderID name the leader, "" when none is known.
	LeaderAddr, LeaderID string
	// LastContact is when this node last heard from its leader (now on
	// the leader), zero when it never has.
	LastContact time.Time
	// Applied and Commit are its applied and known-committed indexes.
	Applied, Commit uint64
}

// Voters returns the leader's Raft address ("" while none is known) and
// the voters' Raft addresses, from this node's own copy of the
// configuration: no message to any other server.
func (n *Node) Voters() (leader string, voters []string, err error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", nil, fmt.Errorf("cluster: configuration: %w", err)
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, string(s.Address))
		}
	}
	addr, _ := n.raft.LeaderWithID()
	return string(addr), voters, nil
}

// IsLeader reports whether this node is the Raft leader now (ready or
// not): one atomic read.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Replica returns this node's replication state. It is cheap: no I/O.
func (n *Node) Replica() Replica {
	addr, id := n.raft.LeaderWithID()
	r := Replica{LeaderAddr: string(addr), LeaderID: string(id), Applied: n.raft.AppliedIndex(), Commit: n.raft.CommitIndex()}
	if n.raft.State() == raft.Leader {
		r.Leader, r.LastContact = true, time.Now()
	} else {
		r.LastContact = n.raft.LastContact()
	}
	return r
}

// ReadIndex makes a consistent read possible on this member: the leader
// takes its commit index and confirms, with a round of heartbeats to a
// majority, that it still leads; this member (the leader itself, or a
// follower that asked it over the servers' RPC) then waits until it has
// applied the log up to that index (the read-index protocol; the index
// is the catalog's, see leaderReadIndex). A read
// served after it returns nil sees every write acknowledged before it
// began. Its errors have Unavailable() true: ErrNotLeader while no ready
// leader confirms, ErrTimeout when ctx ends first.
func (n *Node) ReadIndex(ctx context.Context) error {
	var idx uint64
	if n.raft.State() == raft.Leader {
		var err error
		if idx, err = n.leaderReadIndex(); err != nil {
			return err
		}
	} else {
		addr, _ := n.raft.LeaderWithID()
		if addr == "" || n.rpc == nil {
			return ErrNotLeader
		}
		var ans readIndexAnswer
		if err := n.Call(ctx, string(addr), "/cluster/readindex", struct{}{}, &ans); err != nil {
			var re *RemoteError
			if errors.As(err, &re) {
				return errorOf(re.Code, re.Message)
			}
			return &remoteErr{msg: "cluster: asking the leader for a read index: " + err.Error(), sentinel: ErrNotLeader}
		}
		idx = ans.Index
	}
	if !n.waitIndex(ctx, idx) {
		if ctx.Err() != nil {
			return ErrTimeout
		}
		return ErrClosed
	}
	return nil
}

type readIndexAnswer struct {
	Index uint64 `json:"index"`
}

// leaderReadIndex is the leader's half of ReadIndex. The index is the
// catalog's, not Raft's: a write is acknowledged only once the leader's
// catalog applied it (and a leader is ready only once it applied every
// entry of earlier terms), so every acknowledged write is at or below
// the leader's catalog index; and a member's catalog index, unlike
// raft's applied index (advanced when entries are handed to the FSM, not
// when it has applied them), says what a read of its catalog sees.
func (n *Node) leaderReadIndex() (uint64, error) {
	if !n.IsReady() {
		return 0, ErrNotLeader
	}
	idx := n.cat.Index()
	if err := n.waitFuture(n.raft.VerifyLeader()); err != nil {
		return 0, applyError(err)
	}
	return idx, nil
}

func (n *Node) serveReadIndex(w http.ResponseWriter, _ *http.Request) {
	idx, err := n.leaderReadIndex()
	if err != nil {
		WriteRPCError(w, http.StatusServiceUnavailable, codeOf(err), err.Error())
		return
	}
	WriteRPC(w, readIndexAnswer{Index: idx})
}
