package cluster

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/musterhq/muster/internal/durable"
)

// Forming a cluster. A node without Raft state that was given members to
// join (Config.Join) or a number of voters to wait for
// (Config.BootstrapExpect) runs discover until it holds Raft state:
//
//   - It says hello to every address it was given and every member it has
//     heard of, over the servers' RPC, and learns who they know. A hello
//     that finds a member with Raft state means a cluster exists: the node
//     asks it to add this node (the member forwards the request to its
//     leader), and the leader's replication then gives it the state. It
//     never bootstraps while a cluster answers.
//   - When no member holds state and this node knows at least
//     BootstrapExpect voters, the one with the lowest ID among them
//     coordinates: it asks each of them, in ascending order of ID and
//     itself included, for a promise (granted only by a node without
//     state that has promised no other coordinator in the last
//     promiseTTL, and kept in DataDir/bootstrap-promise across restarts),
//     and bootstraps Raft with exactly those voters once all have
//     promised, within promiseWindow of its first request. A refusal
//     releases the promises it holds and it tries again later. The others
//     never bootstrap: the coordinator's election and replication reach
//     them.
//
// Two coordinators need promises from every voter of their own
// configurations, and a node promises one coordinator at a time, so two
// configurations sharing a node cannot both be bootstrapped; asking in
// one order means two coordinators cannot each hold a promise the other
// waits for. Configurations sharing no node (more servers started than
// BootstrapExpect, none of which heard of the others) remain possible;
// start every server with the same BootstrapExpect and Join list.
//
// A node whose data dir was wiped has a new ID and no state: it finds
// the cluster and asks to be added, and the leader refuses while its
// address belongs to another member (see serveAdd): the dead member must
// be removed first. It never forms a second cluster.

const (
	promiseFile = "bootstrap-promise"
	// promiseTTL is how long a promise binds its grantor (by its wall
	// clock, so across restarts).
	promiseTTL = 30 * time.Second
	// promiseWindow is how long a coordinator may take from its first
	// request to the bootstrap; well within promiseTTL, so that every
	// promise still binds when it bootstraps.
	promiseWindow = 10 * time.Second
	// adminCheckHeader carries Config.AdminCheck on every RPC.
	adminCheckHeader = "X-Muster-Admin-Check"
)

// Peer is what members tell each other about themselves.
type Peer struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Voter    bool   `json:"voter"`
}

type helloRequest struct {
	Self   Peer `json:"self"`
	Expect int  `json:"expect,omitempty"`
}

type helloAnswer struct {
	Self     Peer   `json:"self"`
	Known    []Peer `json:"known,omitempty"`
	HasState bool   `json:"has_state"`
	Leader   string `json:"leader,omitempty"`
}

type promiseRequest struct {
	Coordinator string `json:"coordinator"`
}

type promiseRecord struct {
	Coordinator string    `json:"coordinator"`
	GrantedAt   time.Time `json:"granted_at"`
}

type memberRequest struct {
	Self Peer   `json:"self"`
	ID   string `json:"id,omitempty"` // for remove
}

// self describes this node to its peers.
func (n *Node) self() Peer {
	return Peer{ID: n.cfg.NodeID, RaftAddr: string(n.transport.LocalAddr()), HTTPAddr: n.cfg.HTTPAddr, Voter: !n.cfg.NonVoter}
}

// hasState reports whether this node holds Raft state: it bootstrapped,
// or a leader has replicated to it.
func (n *Node) hasState() bool {
	if n.raft.LastIndex() > 0 {
		return true
	}
	f := n.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// isMember reports whether this node's latest Raft configuration lists
// it: a node that holds state but is not listed (it was removed, or it
// took over the address of a member whose data dir was wiped) is not a
// member, and keeps asking to be one.
func (n *Node) isMember() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.cfg.NodeID {
			return true
		}
	}
	return false
}

// learn records peers heard of, and returns whether any is new.
func (n *Node) learn(ps ...Peer) bool {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	added := false
	for _, p := range ps {
		if p.ID == "" || p.RaftAddr == "" || p.ID == n.cfg.NodeID {
			continue
		}
		if old, ok := n.peers[p.ID]; !ok || old != p {
			added = added || !ok
			n.peers[p.ID] = p
		}
	}
	return added
}

// known returns the peers heard of, sorted by ID.
func (n *Node) known() []Peer {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	out := make([]Peer, 0, len(n.peers))
	for _, p := range n.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// peer returns what this node heard of the member id.
func (n *Node) peer(id string) (Peer, bool) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	p, ok := n.peers[id]
	return p, ok
}

// checkAdmin is middleware on every RPC route: a member whose admin
// token differs is refused, and both sides say so.
func (n *Node) checkAdmin(h http.HandlerFunc) http.HandlerFunc {
	want := hex.EncodeToString(n.cfg.AdminCheck)
	return func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get(adminCheckHeader)
		if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			n.log.Error("refused a member whose admin token differs from this node's; every server of a cluster needs the same admin token",
				"remote", r.RemoteAddr)
			WriteRPCError(w, http.StatusForbidden, "admin_mismatch",
				"the admin token of this node differs from the member's; every server of a cluster needs the same admin token (MUSTER_ADMIN_TOKEN or --admin-token-file)")
			return
		}
		h(w, r)
	}
}

// routes registers the cluster's own RPC routes.
func (n *Node) routes() {
	m := n.rpc.mux
	m.HandleFunc("POST /cluster/apply", n.checkAdmin(n.serveApply))
	m.HandleFunc("POST /cluster/hello", n.checkAdmin(n.serveHello))
	m.HandleFunc("POST /cluster/promise", n.checkAdmin(n.servePromise))
	m.HandleFunc("POST /cluster/release", n.checkAdmin(n.serveRelease))
	m.HandleFunc("POST /cluster/add", n.checkAdmin(n.serveAdd))
	m.HandleFunc("POST /cluster/remove", n.checkAdmin(n.serveRemove))
	m.HandleFunc("GET /cluster/status", n.checkAdmin(n.serveStatus))
	m.HandleFunc("POST /cluster/readindex", n.checkAdmin(n.serveReadIndex))
}

func (n *Node) serveHello(w http.ResponseWriter, r *http.Request) {
	var req helloRequest
	if !ReadRPC(w, r, &req) {
		return
	}
	if n.learn(req.Self) {
		n.log.Info("heard from a server", "peer_id", req.Self.ID, "peer_raft_addr", req.Self.RaftAddr)
	}
	leader, _ := n.raft.LeaderWithID()
	WriteRPC(w, helloAnswer{Self: n.self(), Known: n.known(), HasState: n.hasState(), Leader: string(leader)})
}

// readPromise returns the promise this node holds, if any.
func (n *Node) readPromise() (promiseRecord, bool) {
	b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, promiseFile))
	if err != nil {
		return promiseRecord{}, false
	}
	var p promiseRecord
	if json.Unmarshal(b, &p) != nil || p.Coordinator == "" {
		return promiseRecord{}, false
	}
	return p, true
}

// grantPromise promises coordinator that this node will join no other
// bootstrap for promiseTTL, or says why it cannot.
func (n *Node) grantPromise(coordinator string) error {
	n.promiseMu.Lock()
	defer n.promiseMu.Unlock()
	if n.hasState() {
		return errors.New("this node is already a member of a cluster")
	}
	if p, ok := n.readPromise(); ok && p.Coordinator != coordinator && time.Since(p.GrantedAt) < promiseTTL && time.Since(p.GrantedAt) > -promiseTTL {
		return fmt.Errorf("this node promised to bootstrap with %s", p.Coordinator)
	}
	b, _ := json.Marshal(promiseRecord{Coordinator: coordinator, GrantedAt: time.Now().UTC()})
	if err := durable.WriteFile(filepath.Join(n.cfg.DataDir, promiseFile), b, 0o600); err != nil {
		return fmt.Errorf("record the promise: %w", err)
	}
	return nil
}

// releasePromise drops the promise to coordinator, if that is the one
// held.
func (n *Node) releasePromise(coordinator string) {
	n.promiseMu.Lock()
	defer n.promiseMu.Unlock()
	if p, ok := n.readPromise(); ok && p.Coordinator == coordinator {
		os.Remove(filepath.Join(n.cfg.DataDir, promiseFile))
	}
}

func (n *Node) servePromise(w http.ResponseWriter, r *http.Request) {
	var req promiseRequest
	if !ReadRPC(w, r, &req) {
		return
	}
	if err := n.grantPromise(req.Coordinator); err != nil {
		WriteRPCError(w, http.StatusConflict, "promised", err.Error())
		return
	}
	WriteRPC(w, struct{}{})
}

func (n *Node) serveRelease(w http.ResponseWriter, r *http.Request) {
	var req promiseRequest
	if !ReadRPC(w, r, &req) {
		return
	}
	n.releasePromise(req.Coordinator)
	WriteRPC(w, struct{}{})
}

// discover runs until this node holds Raft state (see the comment at the
// top of this file), or the node closes.
func (n *Node) discover() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	n.log.Info("looking for the cluster", "join", n.cfg.Join, "bootstrap_expect", n.cfg.BootstrapExpect, "voter", !n.cfg.NonVoter)
	lastKnown, lastWarn := -1, time.Time{}
	for attempt := 0; ; attempt++ {
		if n.isMember() {
			n.log.Info("this node is a member of the cluster", "node_id", n.cfg.NodeID)
			return
		}
		existing, errs := n.helloAll(ctx)
		if len(errs) > 0 && time.Since(lastWarn) > 10*time.Second {
			lastWarn = time.Now()
			n.log.Warn("some servers to join did not answer yet; still trying", "errors", errors.Join(errs...).Error())
		}
		switch {
		case existing != "":
			n.askToJoin(ctx, existing)
		case n.cfg.BootstrapExpect == 0 || n.cfg.NonVoter:
			if attempt == 0 || attempt%50 == 0 {
				n.log.Info("no server reached holds a cluster yet; waiting to join one (a new cluster forms only among servers started with --bootstrap-expect)",
					"known", len(n.known()))
			}
		case n.cfg.BootstrapExpect > 0 && !n.cfg.NonVoter:
			voters := []Peer{n.self()}
			for _, p := range n.known() {
				if p.Voter {
					voters = append(voters, p)
				}
			}
			slices.SortFunc(voters, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
			if len(voters) != lastKnown {
				lastKnown = len(voters)
				n.log.Info("waiting for the servers to bootstrap with", "expect", n.cfg.BootstrapExpect, "known", len(voters))
			}
			if len(voters) >= n.cfg.BootstrapExpect && voters[0].ID == n.cfg.NodeID {
				if err := n.coordinate(ctx, voters); err != nil {
					n.log.Info("bootstrap not possible yet; trying again", "err", err)
				}
			}
		}
		// Jittered, growing to 2 s: servers started together do not
		// step in lock-step.
		d := min(time.Duration(200+100*attempt)*time.Millisecond, 2*time.Second)
		d = d/2 + rand.N(d/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// helloAll greets every address to join and every peer heard of, and
// returns the Raft address of one that holds state (a cluster exists),
// or "".
func (n *Node) helloAll(ctx context.Context) (existing string, errs []error) {
	targets := map[string]bool{}
	for _, a := range n.cfg.Join {
		addr := a
		if n.cfg.ResolveJoin != nil {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var err error
			addr, err = n.cfg.ResolveJoin(rctx, a)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a, err))
				continue
			}
		}
		targets[addr] = true
	}
	for _, p := range n.known() {
		targets[p.RaftAddr] = true
	}
	delete(targets, string(n.transport.LocalAddr()))
	for addr := range targets {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var ans helloAnswer
		err := n.Call(hctx, addr, "/cluster/hello", helloRequest{Self: n.self(), Expect: n.cfg.BootstrapExpect}, &ans)
		cancel()
		if err != nil {
			var re *RemoteError
			if errors.As(err, &re) && re.Code == "admin_mismatch" {
				n.log.Error("a server refused this node: its admin token differs from this node's; every server of a cluster needs the same admin token", "peer", addr)
			}
			errs = append(errs, err)
			continue
		}
		if ans.Self.ID == n.cfg.NodeID {
			continue // our own address under another name
		}
		if n.learn(append(ans.Known, ans.Self)...) {
			n.log.Info("heard of servers", "via", addr, "known", len(n.known()))
		}
		if ans.HasState && existing == "" {
			existing = addr
		}
	}
	return existing, errs
}

// askToJoin asks the member at addr to add this node to its cluster.
func (n *Node) askToJoin(ctx context.Context, addr string) {
	jctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout+2*time.Second)
	defer cancel()
	err := n.Call(jctx, addr, "/cluster/add", memberRequest{Self: n.self()}, nil)
	if err != nil {
		n.log.Error("the cluster did not add this node", "via", addr, "err", err)
		return
	}
	n.log.Info("the cluster added this node; waiting for the leader's log", "via", addr, "voter", !n.cfg.NonVoter)
	deadline := time.Now().Add(10 * time.Second)
	for !n.isMember() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// coordinate gathers the promises of voters (ascending ID, this node
// first) and bootstraps Raft with them.
func (n *Node) coordinate(ctx context.Context, voters []Peer) error {
	start := time.Now()
	var granted []Peer
	release := func() {
		for _, p := range granted {
			if p.ID == n.cfg.NodeID {
				n.releasePromise(n.cfg.NodeID)
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = n.Call(rctx, p.RaftAddr, "/cluster/release", promiseRequest{Coordinator: n.cfg.NodeID}, nil)
			cancel()
		}
	}
	for _, p := range voters {
		var err error
		if p.ID == n.cfg.NodeID {
			err = n.grantPromise(n.cfg.NodeID)
		} else {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err = n.Call(pctx, p.RaftAddr, "/cluster/promise", promiseRequest{Coordinator: n.cfg.NodeID}, nil)
			cancel()
		}
		if err != nil {
			release()
			return fmt.Errorf("%s (%s): %w", p.ID, p.RaftAddr, err)
		}
		granted = append(granted, p)
	}
	if time.Since(start) > promiseWindow {
		release()
		return errors.New("gathering the promises took too long")
	}
	conf := raft.Configuration{}
	for _, p := range voters {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
	}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil {
		release()
		return fmt.Errorf("bootstrap: %w", err)
	}
	id, err := writeClusterID(n.cfg.DataDir)
	if err != nil {
		n.log.Error("could not record the cluster id", "err", err)
	}
	ids := make([]string, len(voters))
	for i, p := range voters {
		ids[i] = p.ID
	}
	n.log.Info("bootstrapped a new cluster", "voters", ids, "cluster_id", id)
	return nil
}

// serveAdd adds a server to the cluster, on the leader (a follower
// forwards it there).
func (n *Node) serveAdd(w http.ResponseWriter, r *http.Request) {
	var req memberRequest
	if !ReadRPC(w, r, &req) {
		return
	}
	ctx, cancel := rpcContext(r)
	defer cancel()
	if err := n.addServer(ctx, req.Self); err != nil {
		writeMemberError(w, err)
		return
	}
	WriteRPC(w, struct{}{})
}

// addServer adds p to the Raft configuration, through the leader.
func (n *Node) addServer(ctx context.Context, p Peer) error {
	if p.ID == "" || p.RaftAddr == "" {
		return &RemoteError{Code: "bad_request", Message: "a server needs an ID and a Raft address"}
	}
	if n.raft.State() != raft.Leader {
		return n.toLeader(ctx, "/cluster/add", memberRequest{Self: p})
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.Address) == p.RaftAddr && string(s.ID) != p.ID {
			return &RemoteError{Code: "address_taken", Message: fmt.Sprintf(
				"the address %s belongs to member %s; if that server's data dir was wiped, remove it first (muster members remove %s), then start this one again",
				p.RaftAddr, s.ID, s.ID)}
		}
		if string(s.ID) == p.ID && string(s.Address) != p.RaftAddr {
			// A server that asks to join holds no state: a member that
			// moved keeps its data dir and needs no join. Another server
			// under a member's ID (a copied --config) would take its
			// place, so it is refused.
			return &RemoteError{Code: "id_taken", Message: fmt.Sprintf(
				"the node ID %s belongs to the member at %s; give this server another --node-id, or, if that member is gone for good, remove it first (muster members remove %s)",
				p.ID, s.Address, p.ID)}
		}
		if string(s.ID) == p.ID && (s.Suffrage == raft.Voter) == p.Voter {
			n.learn(p)
			return nil // already a member
		}
	}
	timeout := n.cfg.ApplyTimeout
	var fut raft.IndexFuture
	if p.Voter {
		fut = n.raft.AddVoter(raft.ServerID(p.ID), raft.ServerAddress(p.RaftAddr), f.Index(), timeout)
	} else {
		fut = n.raft.AddNonvoter(raft.ServerID(p.ID), raft.ServerAddress(p.RaftAddr), f.Index(), timeout)
	}
	if err := n.waitFuture(fut); err != nil {
		return applyError(err)
	}
	n.learn(p)
	n.log.Info("added a server to the cluster", "peer_id", p.ID, "peer_raft_addr", p.RaftAddr, "voter", p.Voter)
	return nil
}

// toLeader sends a membership request to the leader and returns its
// refusal, if any.
func (n *Node) toLeader(ctx context.Context, path string, req memberRequest) error {
	for {
		addr, _ := n.raft.LeaderWithID()
		if addr != "" {
			err := n.Call(ctx, string(addr), path, req, nil)
			var re *RemoteError
			if !errors.As(err, &re) || re.Code != "not_leader" {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ErrNotLeader
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// writeMemberError answers a membership request that failed.
func writeMemberError(w http.ResponseWriter, err error) {
	var re *RemoteError
	if errors.As(err, &re) {
		WriteRPCError(w, http.StatusConflict, re.Code, re.Message)
		return
	}
	WriteRPCError(w, http.StatusServiceUnavailable, codeOf(err), err.Error())
}
