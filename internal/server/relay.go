package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/cluster"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/random"
	"github.com/musterhq/muster/internal/registry"
)

// The relay carries heartbeats between the members of a cluster, and
// says whether a follower may serve reads. Heartbeats are not Raft
// commands: they live in each member's Tracker, and the leader's is the
// one that judges expiry. So:
//
//   - A heartbeat heard by a follower (Liveness.Beat → Heard) waits in an
//     outbox that keeps the latest beat per instance, and a forwarding
//     goroutine sends the outbox to the leader as one request every few
//     milliseconds (forwardEvery), however many instances beat through
//     that follower: 100,000 instances cost the leader a few hundred
//     requests a second, not 30,000.
//   - The leader records every beat it hears, its own or forwarded, in a
//     journal: a ring of the latest journalSize beats with sequence
//     numbers, started afresh under a new random epoch each time it
//     becomes leader. Each follower pulls the journal from its cursor
//     every feedEvery, and a follower whose cursor fell out of the ring,
//     or belongs to another epoch, gets every instance's last beat
//     instead. So followers show heartbeat ages and quality within a
//     feed interval of the leader's, and a follower that becomes leader
//     already holds them (it still grants every instance a full TTL and
//     the grace from its election).
//   - Every tick (stateEvery) it reads the node's replication state: a
//     follower serves reads once it has caught up with the log (applied
//     the commit index it knew, with a leader known) since it started.
//
// Beats travel as ages (how long before the message was sent), never as
// clock readings, so members' clocks need not agree.
type relay struct {
	node    *cluster.Node
	tracker *health.Tracker
	cat     *catalog.Catalog
	live    *health.Liveness // set by serve
	// revive brings a critical instance back after a beat a follower
	// passed on (the registry's Revive); set by serve.
	revive func(ctx context.Context, id string)
	log    *slog.Logger

	leading  atomic.Bool
	caughtUp atomic.Bool
	info     atomic.Pointer[replicaState]

	// The leader's journal.
	jmu     sync.Mutex
	epoch   string
	journal []journalEntry // ring of journalSize
	next    uint64         // sequence number of the next entry

	// A follower's outbox.
	omu    sync.Mutex
	outbox map[string]time.Time
	kick   chan struct{}
}

// replicaState is the node's replication state as of the last tick.
type replicaState struct {
	leader      bool
	knownLeader bool
	leaderAddr  string
	lastContact time.Time // zero: never
}

type journalEntry struct {
	id string
	at time.Time
}

// Tunables of the relay.
const (
	journalSize  = 1 << 16
	forwardEvery = 5 * time.Millisecond
	feedEvery    = 200 * time.Millisecond
	stateEvery   = 50 * time.Millisecond
	// collectEvery is how often a follower drops the heartbeats of
	// instances that left the catalog (the leader's sweep does it there).
	collectEvery = 30 * time.Second
	// maxBeatAge bounds the age of a relayed beat; an older one is
	// ignored.
	maxBeatAge = 10 * time.Minute
)

// wireBeat is one heartbeat on the wire: the instance and how long before
// the message it was heard.
type wireBeat struct {
	ID    string `json:"id"`
	AgeMS int64  `json:"age_ms"`
}

type beatsRequest struct {
	Beats []wireBeat `json:"beats"`
}

type feedRequest struct {
	Epoch string `json:"epoch"`
	After uint64 `json:"after"`
}

type feedAnswer struct {
	Epoch string `json:"epoch"`
	// Next is the cursor to ask with next time.
	Next uint64 `json:"next"`
	// Reset means Beats holds every instance's last beat, not the ones
	// since the cursor.
	Reset bool       `json:"reset,omitempty"`
	Beats []wireBeat `json:"beats"`
}

func newRelay(node *cluster.Node, tracker *health.Tracker, cat *catalog.Catalog, log *slog.Logger) *relay {
	r := &relay{node: node, tracker: tracker, cat: cat, log: log,
		journal: make([]journalEntry, journalSize), outbox: map[string]time.Time{}, kick: make(chan struct{}, 1)}
	r.info.Store(&replicaState{})
	return r
}

// serve sets what the relay needs of the components built after it, and
// then adds its routes to the servers' RPC: the leader's half is served
// from then on.
func (r *relay) serve(live *health.Liveness, revive func(ctx context.Context, id string)) {
	r.live, r.revive = live, revive
	r.node.HandleRPC("POST /relay/beats", http.HandlerFunc(r.serveBeats))
	r.node.HandleRPC("POST /relay/feed", http.HandlerFunc(r.serveFeed))
}

// Serving implements health.Replica: this node has caught up with the
// log once since it started. Liveness asks it only when the node is not
// a ready leader, so that a leader stepping down (or one elected and not
// yet ready) goes on answering reads as a follower does.
func (r *relay) Serving() bool { return r.caughtUp.Load() }

// Heard implements health.Replica: the leader journals the beat, a
// follower queues it for the leader.
func (r *relay) Heard(id string, at time.Time) {
	if r.leading.Load() {
		r.jmu.Lock()
		r.journal[r.next%journalSize] = journalEntry{id: id, at: at}
		r.next++
		r.jmu.Unlock()
		return
	}
	r.omu.Lock()
	if old, ok := r.outbox[id]; !ok || at.After(old) {
		r.outbox[id] = at
	}
	r.omu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run keeps the replication state current, forwards the outbox and
// pulls the feed, until ctx ends.
func (r *relay) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.forwardLoop(ctx) }()
	go func() { defer wg.Done(); r.feedLoop(ctx) }()
	tick := time.NewTicker(stateEvery)
	defer tick.Stop()
	lastCollect := time.Now()
	for {
		r.refresh()
		if !r.leading.Load() && time.Since(lastCollect) > collectEvery && r.tracker.Len() > r.cat.Len() {
			lastCollect = time.Now()
			r.tracker.Retain(func(id string) bool { _, ok := r.cat.Instance(id); return ok })
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
	}
}

// refresh reads the node's replication state.
func (r *relay) refresh() {
	rep := r.node.Replica()
	leader := rep.Leader && r.node.IsReady()
	if leader && !r.leading.Load() {
		r.jmu.Lock()
		r.epoch, r.next = random.ID(8), 0
		r.jmu.Unlock()
	}
	r.leading.Store(leader)
	if !r.caughtUp.Load() && rep.LeaderAddr != "" && rep.Applied >= rep.Commit && rep.Commit > 0 {
		r.caughtUp.Store(true)
		if !rep.Leader {
			r.log.Info("caught up with the leader's log; serving reads", "index", rep.Applied)
		}
	}
	r.info.Store(&replicaState{leader: rep.Leader, knownLeader: rep.LeaderAddr != "", leaderAddr: rep.LeaderAddr, lastContact: rep.LastContact})
}

// forwardLoop sends a follower's outbox to the leader, one request per
// forwardEvery at most.
func (r *relay) forwardLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		select { // let beats gather
		case <-ctx.Done():
			return
		case <-time.After(forwardEvery):
		}
		r.omu.Lock()
		batch := r.outbox
		r.outbox = make(map[string]time.Time, len(batch))
		r.omu.Unlock()
		st := r.info.Load()
		if r.leading.Load() || st.leaderAddr == "" || len(batch) == 0 {
			continue // no leader to send to: the next beats will be
		}
		now := time.Now()
		req := beatsRequest{Beats: make([]wireBeat, 0, len(batch))}
		for id, at := range batch {
			req.Beats = append(req.Beats, wireBeat{ID: id, AgeMS: now.Sub(at).Milliseconds()})
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := r.node.Call(cctx, st.leaderAddr, "/relay/beats", req, nil)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.log.Debug("forwarding heartbeats to the leader failed; they are sent again with the next", "leader", st.leaderAddr, "beats", len(batch), "err", err)
			r.omu.Lock()
			for id, at := range batch {
				if old, ok := r.outbox[id]; !ok || at.After(old) {
					r.outbox[id] = at
				}
			}
			r.omu.Unlock()
		}
	}
}

// serveBeats is /relay/beats, on the leader: beats a follower heard.
func (r *relay) serveBeats(w http.ResponseWriter, req *http.Request) {
	var in beatsRequest
	if !cluster.ReadRPC(w, req, &in) {
		return
	}
	if !r.leading.Load() {
		cluster.WriteRPCError(w, http.StatusServiceUnavailable, "not_leader", "this server does not lead")
		return
	}
	now := time.Now()
	var critical []string
	for _, b := range in.Beats {
		if b.AgeMS < 0 || b.AgeMS > maxBeatAge.Milliseconds() {
			continue
		}
		inst, ok := r.cat.Instance(b.ID)
		if !ok {
			continue
		}
		r.live.Beat(b.ID, now.Add(-time.Duration(b.AgeMS)*time.Millisecond))
		if inst.Status == catalog.StatusCritical {
			critical = append(critical, b.ID)
		}
	}
	// Instances heard again after they went critical: their return is a
	// write, decided here, where their checks and budgets are.
	for _, id := range critical {
		r.revive(req.Context(), id)
	}
	cluster.WriteRPC(w, struct{}{})
}

// feedLoop pulls the leader's journal into a follower's tracker.
func (r *relay) feedLoop(ctx context.Context) {
	var epoch string
	var after uint64
	tick := time.NewTicker(feedEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := r.info.Load()
		if r.leading.Load() || st.leaderAddr == "" {
			epoch = ""
			continue
		}
		var ans feedAnswer
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := r.node.Call(cctx, st.leaderAddr, "/relay/feed", feedRequest{Epoch: epoch, After: after}, &ans)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.log.Debug("pulling heartbeats from the leader failed", "leader", st.leaderAddr, "err", err)
			}
			continue
		}
		now := time.Now()
		for _, b := range ans.Beats {
			if b.AgeMS >= 0 && b.AgeMS <= maxBeatAge.Milliseconds() {
				r.tracker.Beat(b.ID, now.Add(-time.Duration(b.AgeMS)*time.Millisecond))
			}
		}
		epoch, after = ans.Epoch, ans.Next
	}
}

// serveFeed is /relay/feed, on the leader: the beats since a follower's
// cursor, or every instance's last beat.
func (r *relay) serveFeed(w http.ResponseWriter, req *http.Request) {
	var in feedRequest
	if !cluster.ReadRPC(w, req, &in) {
		return
	}
	if !r.leading.Load() {
		cluster.WriteRPCError(w, http.StatusServiceUnavailable, "not_leader", "this server does not lead")
		return
	}
	now := time.Now()
	r.jmu.Lock()
	ans := feedAnswer{Epoch: r.epoch, Next: r.next}
	first := uint64(0)
	if r.next > journalSize {
		first = r.next - journalSize
	}
	if in.Epoch == r.epoch && in.After >= first && in.After <= r.next {
		// Only the latest beat of each instance since the cursor.
		seen := make(map[string]bool, r.next-in.After)
		for seq := r.next; seq > in.After; seq-- {
			e := r.journal[(seq-1)%journalSize]
			if seen[e.id] {
				continue
			}
			seen[e.id] = true
			ans.Beats = append(ans.Beats, wireBeat{ID: e.id, AgeMS: max(0, now.Sub(e.at).Milliseconds())})
		}
		r.jmu.Unlock()
	} else {
		r.jmu.Unlock()
		ans.Reset = true
		for _, id := range r.tracker.IDs() {
			if at, ok := r.tracker.Seen(id); ok {
				ans.Beats = append(ans.Beats, wireBeat{ID: id, AgeMS: max(0, now.Sub(at).Milliseconds())})
			}
		}
	}
	cluster.WriteRPC(w, ans)
}

// replication adapts the node (and the relay's view of it) to what the
// registry needs for reads and membership.
type replication struct {
	node  *cluster.Node
	relay *relay // nil on a single node
}

var (
	_ registry.Replication = replication{}
	_ registry.Membership  = replication{}
)

// Info implements registry.Replication.
func (p replication) Info() registry.ReplicaInfo {
	info := registry.ReplicaInfo{Node: p.node.NodeID(), LastContact: -1}
	if p.relay == nil {
		// A single node: it has no leader but itself. This runs on every
		// lookup, so it is one atomic read, not the node's whole Replica.
		if p.node.IsLeader() {
			info.Leader, info.KnownLeader, info.LastContact = true, true, 0
		}
		return info
	}
	st := p.relay.info.Load()
	info.Leader, info.KnownLeader = st.leader, st.knownLeader
	switch {
	case st.leader:
		info.LastContact = 0
	case !st.lastContact.IsZero():
		info.LastContact = time.Since(st.lastContact)
	}
	return info
}

// ReadIndex implements registry.Replication.
func (p replication) ReadIndex(ctx context.Context) error { return p.node.ReadIndex(ctx) }

// Members implements registry.Membership.
func (p replication) Members(ctx context.Context) ([]api.Member, error) {
	if !p.node.HasPeers() {
		return nil, registry.ErrNotClustered
	}
	ms, err := p.node.Members(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Member, len(ms))
	for i, m := range ms {
		out[i] = api.Member{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, Suffrage: m.Suffrage, State: m.State,
			Term: m.Term, AppliedIndex: m.AppliedIndex, CommitIndex: m.CommitIndex, LastContactMS: m.LastContactMS, Error: m.Error}
	}
	return out, nil
}

// Voters implements registry.Membership.
func (p replication) Voters() (string, []string, error) {
	if !p.node.HasPeers() {
		return "", nil, registry.ErrNotClustered
	}
	return p.node.Voters()
}

// RemoveMember implements registry.Membership.
func (p replication) RemoveMember(ctx context.Context, id string) error {
	err := p.node.RemoveMember(ctx, id)
	switch {
	case errors.Is(err, cluster.ErrUnknownMember):
		return registry.ErrMemberNotFound
	case errors.Is(err, cluster.ErrLastVoter):
		return registry.ErrLastVoter
	case errors.Is(err, cluster.ErrNoRPC):
		return registry.ErrNotClustered
	}
	return err
}

// Self implements registry.Membership.
func (p replication) Self() api.ClusterSelf {
	return api.ClusterSelf{Node: p.node.NodeID(), RaftAddr: p.node.RaftAddr(), Clustered: p.node.HasPeers()}
}
