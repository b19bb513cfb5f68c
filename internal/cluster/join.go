package cluster

import (
	"context"
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
//     state that has promised no other coordinator, by ID and Raft
//     address, in the last promiseTTL, and kept in
//     DataDir/bootstrap-promise across restarts), and bootstraps Raft with
//     exactly those voters once all have promised, within promiseWindow
//     of its first request. A refusal releases the promises it holds and
//     it tries again later. The others never bootstrap: the coordinator's
//     election and replication reach them. A node deletes its promise
//     (durably) as soon as it holds Raft state (markState), and votes by
//     it only while it binds (voteguard.go).
//   - A server that answers with this node's ID from another Raft
//     address means two servers were given the same ID (a copied
//     --config): the node says so, naming both addresses, and stops
//     looking: it neither bootstraps nor joins (duplicateID).
//
// Two coordinators need promises from every voter of their own
// configurations, and a node promises one coordinator at a time, so two
// configurations sharing a node cannot both be bootstrapped; asking in
// one order means two coordinators cannot each hold a promise the other
// waits for. Configurations sharing no node (more servers started than
// BootstrapExpect, none of which heard of the others) remain possible;
// start every server with the same BootstrapExpect and Join list.
//
// A node whose data dir was wiped has no state: it finds the cluster and
// asks to be added, and the leader refuses while its address belongs to
// another member (a new ID) or while its ID is a member's and it has
// neither state nor a bootstrap promise (the same ID: its data was lost;
// see addServer): the old member must be removed first. Until it is
// added, it takes no log from a leader either (mayReplicate), so it
// cannot slip back into its old place and vote before it has caught up.
// It never forms a second cluster.

const (
	promiseFile = "bootstrap-promise"
	// promiseTTL is how long a promise binds its grantor, and lets it
	// vote for its coordinator: measured on the monotonic clock from the
	// grant while the process runs; a promise read back after a restart
	// can only be aged by the wall clock (loadPromise).
	promiseTTL = 30 * time.Second
	// promiseWindow is how long a coordinator may take from its first
	// request to the bootstrap; well within promiseTTL, so that every
	// promise still binds when it bootstraps.
	promiseWindow = 10 * time.Second
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
	Addr        string `json:"addr"` // the coordinator's Raft address
}

// promiseRecord is DataDir/bootstrap-promise.
type promiseRecord struct {
	Coordinator string    `json:"coordinator"`
	Addr        string    `json:"addr"`
	GrantedAt   time.Time `json:"granted_at"` // wall clock, for a restart
}

// promise is the bootstrap promise this node holds (Node.promise, under
// promiseMu). binds and votes are read on the monotonic clock when the
// promise was granted by this process; zero means passed.
type promise struct {
	promiseRecord
	// binds is until when the node refuses other coordinators.
	binds time.Time
	// votes is until when the node, without Raft state, may vote for
	// the coordinator (voteguard.go).
	votes time.Time
}

type memberRequest struct {
	Self Peer   `json:"self"`
	ID   string `json:"id,omitempty"` // for remove
	// HasState says the server asking to join holds Raft state, and
	// Admitted that it has none yet but was promised into the cluster's
	// bootstrap or added since it started: a server with neither whose
	// ID is a member's lost its data (addServer).
	HasState bool `json:"has_state,omitempty"`
	Admitted bool `json:"admitted,omitempty"`
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

// routes registers the cluster's own RPC routes. Every connection to
// them passed the admin check in the handshake (exchangeAdmin), and
// their bodies are bounded (handle).
func (n *Node) routes() {
	for pattern, h := range map[string]http.HandlerFunc{
		"POST /cluster/apply":      n.serveApply,
		"POST /cluster/hello":      n.serveHello,
		"POST /cluster/promise":    n.servePromise,
		"POST /cluster/release":    n.serveRelease,
		"POST /cluster/add":        n.serveAdd,
		"POST /cluster/remove":     n.serveRemove,
		"GET /cluster/status":      n.serveStatus,
		"POST /cluster/readindex":  n.serveReadIndex,
		"POST /cluster/membership": n.serveMembership,
	} {
		n.handle(pattern, h)
	}
}

func (n *Node) serveHello(w http.ResponseWriter, r *http.Request) {
	var req helloRequest
	if !ReadRPC(w, r, &req) {
		return
	}
	if req.Self.ID == n.cfg.NodeID && req.Self.RaftAddr != string(n.transport.LocalAddr()) && !n.hasState() {
		n.duplicateID(req.Self.RaftAddr)
	}
	if n.learn(req.Self) {
		n.log.Info("heard from a server", "peer_id", req.Self.ID, "peer_raft_addr", req.Self.RaftAddr)
	}
	leader, _ := n.raft.LeaderWithID()
	WriteRPC(w, helloAnswer{Self: n.self(), Known: n.known(), HasState: n.hasState(), Leader: string(leader)})
}

// readPromiseFile returns the promise recorded in dir, if any.
func readPromiseFile(dir string) (promiseRecord, bool) {
	b, err := os.ReadFile(filepath.Join(dir, promiseFile))
	if err != nil {
		return promiseRecord{}, false
	}
	var p promiseRecord
	if json.Unmarshal(b, &p) != nil || p.Coordinator == "" {
		return promiseRecord{}, false
	}
	return p, true
}

// loadPromise reads the promise this node made before it restarted. A
// promise persisted across a restart can only be aged by the wall clock:
// one granted less than promiseTTL ago binds and lets the node vote for
// the rest of it; one dated in the future (the clock was set back since)
// still binds for promiseTTL, to be safe, but no longer lets the node
// vote; an older one does neither. The record is kept in every case
// until the node holds state: it shows the node was a voter of the
// cluster's bootstrap that has not received the log yet, not one that
// lost its data (memberRequest.Admitted).
func (n *Node) loadPromise() {
	rec, ok := readPromiseFile(n.cfg.DataDir)
	if !ok {
		return
	}
	now := time.Now()
	p := &promise{promiseRecord: rec}
	switch age := now.Sub(rec.GrantedAt); {
	case age >= 0 && age < promiseTTL:
		p.binds, p.votes = now.Add(promiseTTL-age), now.Add(promiseTTL-age)
	case age < 0 && age > -promiseTTL:
		p.binds = now.Add(promiseTTL)
	}
	n.promiseMu.Lock()
	n.promise = p
	n.promiseMu.Unlock()
}

// promised reports whether this node holds a bootstrap promise, bound
// or not.
func (n *Node) promised() bool {
	n.promiseMu.Lock()
	defer n.promiseMu.Unlock()
	return n.promise != nil
}

// grantPromise promises the coordinator (by ID and Raft address) that
// this node will join no other bootstrap for promiseTTL, or says why it
// cannot.
func (n *Node) grantPromise(coordinator, addr string) error {
	if coordinator == "" || addr == "" {
		return errors.New("a promise needs the coordinator's ID and Raft address")
	}
	if other := n.dupOf.Load(); other != nil {
		return fmt.Errorf("this node's ID %s is also the ID of the server at %s", n.cfg.NodeID, *other)
	}
	n.promiseMu.Lock()
	defer n.promiseMu.Unlock()
	if n.hasState() {
		return errors.New("this node is already a member of a cluster")
	}
	now := time.Now()
	if p := n.promise; p != nil && now.Before(p.binds) && (p.Coordinator != coordinator || p.Addr != addr) {
		return fmt.Errorf("this node promised to bootstrap with %s at %s", p.Coordinator, p.Addr)
	}
	rec := promiseRecord{Coordinator: coordinator, Addr: addr, GrantedAt: now.UTC().Round(0)}
	b, _ := json.Marshal(rec)
	if err := durable.WriteFile(filepath.Join(n.cfg.DataDir, promiseFile), b, 0o600); err != nil {
		return fmt.Errorf("record the promise: %w", err)
	}
	n.promise = &promise{promiseRecord: rec, binds: now.Add(promiseTTL), votes: now.Add(promiseTTL)}
	return nil
}

// releasePromise drops the promise to the coordinator at addr, if that
// is the one held.
func (n *Node) releasePromise(coordinator, addr string) {
	n.promiseMu.Lock()
	defer n.promiseMu.Unlock()
	if p := n.promise; p != nil && p.Coordinator == coordinator && p.Addr == addr {
		if err := removeDurably(filepath.Join(n.cfg.DataDir, promiseFile)); err != nil {
			n.log.Warn("could not delete the bootstrap promise", "err", err)
			return
		}
		n.promise = nil
	}
}

// forgetPromise deletes the promise, durably, once this node holds Raft
// state: from then on it votes by its configuration, and a promise left
// behind would let it vote for its old coordinator with an empty log if
// it lost raft.db (markState).
func (n *Node) forgetPromise() error {
	n.promiseMu.Lock()
	defer n.promiseMu.Unlock()
	if err := removeDurably(filepath.Join(n.cfg.DataDir, promiseFile)); err != nil {
		return err
	}
	n.promise = nil
	return nil
}

// duplicateID records that the server at other answered with this
// node's ID, and says so once: two servers were given the same ID, and
// this one stops looking for the cluster (discover), neither
// bootstrapping nor joining, until it is restarted with an ID of its
// own.
func (n *Node) duplicateID(other string) {
	if !n.dupOf.CompareAndSwap(nil, &other) {
		return
	}
	n.log.Error("another server answers with this node's ID from another address: two servers were given the same --node-id (a copied --config?). "+
		"This server will neither bootstrap nor join a cluster; give one of them another --node-id and start it again",
		"node_id", n.cfg.NodeID, "raft_addr", string(n.transport.LocalAddr()), "other_raft_addr", other)
}

func (n *Node) servePromise(w http.ResponseWriter, r *http.Request) {
	var req promiseRequest
	if !ReadRPC(w, r, &req) {
		return
	}
	if err := n.grantPromise(req.Coordinator, req.Addr); err != nil {
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
	n.releasePromise(req.Coordinator, req.Addr)
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
		if n.dupOf.Load() != nil {
			return // said in duplicateID
		}
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
			if ans.Self.RaftAddr != "" && ans.Self.RaftAddr != string(n.transport.LocalAddr()) {
				n.duplicateID(ans.Self.RaftAddr)
				return "", errs
			}
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
	// Leave waits for a request in flight (joinMu): one that reached the
	// leader after this server's removal would add it back.
	n.joinMu.RLock()
	if n.isMember() || n.leaving.Load() {
		n.joinMu.RUnlock()
		return // replication got here first, or Leave began
	}
	req := memberRequest{Self: n.self(), HasState: n.hasState(), Admitted: n.admitted.Load() || n.promised()}
	err := n.Call(jctx, addr, "/cluster/add", req, nil)
	n.joinMu.RUnlock()
	var re *RemoteError
	switch {
	case errors.As(err, &re) && re.Code == "state_lost":
		n.log.Error("the cluster refused this node: a member has its ID and this node has no Raft state, so its data was lost. "+
			"Run `muster members remove "+n.cfg.NodeID+"` on a member, then start this server again", "via", addr, "err", err)
		return
	case err != nil:
		n.log.Error("the cluster did not add this node", "via", addr, "err", err)
		return
	}
	n.admitted.Store(true)
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
	me := promiseRequest{Coordinator: n.cfg.NodeID, Addr: string(n.transport.LocalAddr())}
	var granted []Peer
	release := func() {
		for _, p := range granted {
			if p.ID == n.cfg.NodeID {
				n.releasePromise(me.Coordinator, me.Addr)
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = n.Call(rctx, p.RaftAddr, "/cluster/release", me, nil)
			cancel()
		}
	}
	for _, p := range voters {
		var err error
		if p.ID == n.cfg.NodeID {
			err = n.grantPromise(me.Coordinator, me.Addr)
		} else {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err = n.Call(pctx, p.RaftAddr, "/cluster/promise", me, nil)
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
	if n.dupOf.Load() != nil {
		release()
		return errors.New("another server has this node's ID")
	}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil {
		release()
		return fmt.Errorf("bootstrap: %w", err)
	}
	n.markState() // done already when the bootstrap entry was stored; made sure of here
	id, _, _ := readClusterID(n.cfg.DataDir)
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
	if err := n.addServer(ctx, req); err != nil {
		writeMemberError(w, err)
		return
	}
	WriteRPC(w, struct{}{})
}

// addServer adds the server asking (req.Self) to the Raft configuration,
// through the leader.
func (n *Node) addServer(ctx context.Context, req memberRequest) error {
	p := req.Self
	if p.ID == "" || p.RaftAddr == "" {
		return &RemoteError{Code: "bad_request", Message: "a server needs an ID and a Raft address"}
	}
	if n.raft.State() != raft.Leader {
		return n.toLeader(ctx, "/cluster/add", req)
	}
	n.memberMu.Lock()
	defer n.memberMu.Unlock()
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
		if string(s.ID) == p.ID && !req.HasState && !req.Admitted {
			// A member's ID and address, and no state: the member's data
			// was lost. Taken back as it is, it would receive the log from
			// the start and vote again before it caught up, counted as the
			// member that held the writes it lost.
			n.log.Error("refused a server that asks to join under a member's ID without Raft state: its data was lost; "+
				"it joins again once the member is removed (muster members remove "+p.ID+")",
				"peer_id", p.ID, "peer_raft_addr", p.RaftAddr)
			return &RemoteError{Code: "state_lost", Message: fmt.Sprintf(
				"the member %s at %s asks to join without Raft state: this server's data was lost; run `muster members remove %s` on a member, then start it again",
				p.ID, p.RaftAddr, p.ID)}
		}
		if string(s.ID) == p.ID && (s.Suffrage == raft.Voter) == p.Voter {
			n.learn(p)
			return nil // already a member
		}
	}
	if req.HasState {
		// Not in the configuration, and state of its own: it was
		// removed, or left (a request to join sent just before it left
		// must not add it back).
		return &RemoteError{Code: "removed", Message: fmt.Sprintf(
			"the server %s holds a cluster's state but is not a member: it was removed or left; empty its data dir and start it again to join",
			p.ID)}
	}
	// A server that gave up asking (it stopped, or its request timed
	// out) is not added: it may have been removed meanwhile, and adding
	// it back would undo the removal.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("the server asking to join is no longer waiting: %w", err)
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
//
// It waits for a leader at most toLeaderWait (or until ctx ends), so
// that a server cut off from its cluster, or removed from it, answers
// rather than waits for ever; and it asks again when the server it asked
// no longer leads (a leadership just handed over).
func (n *Node) toLeader(ctx context.Context, path string, req memberRequest) error {
	ctx, cancel := context.WithTimeout(ctx, toLeaderWait)
	defer cancel()
	for {
		addr, _ := n.raft.LeaderWithID()
		if addr != "" {
			err := n.Call(ctx, string(addr), path, req, nil)
			var re *RemoteError
			if !errors.Is(err, ErrNotLeader) && (!errors.As(err, &re) || re.Code != "not_leader") {
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

// toLeaderWait bounds how long a membership request waits for a leader.
const toLeaderWait = 5 * time.Second

// writeMemberError answers a membership request that failed.
func writeMemberError(w http.ResponseWriter, err error) {
	var re *RemoteError
	if errors.As(err, &re) {
		WriteRPCError(w, http.StatusConflict, re.Code, re.Message)
		return
	}
	WriteRPCError(w, http.StatusServiceUnavailable, codeOf(err), err.Error())
}
