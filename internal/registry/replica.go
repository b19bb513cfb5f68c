package registry

import (
	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"

	"context"
	"errors"
	"fmt"
	"time"
)

// Reads in a cluster. Every member serves lookups, the service list,
// instances, blocking queries and streams from its own replica of the
// catalog. A follower reports the statuses the leader committed (the
// leader's sweep turns a missed TTL into a command within a sweep
// interval, and replication brings it within milliseconds), with
// heartbeat ages and quality from the heartbeats the leader passes on.
// Read says, before a front end reads, whether this member may answer in
// the mode the client asked for, and which member answered.

// ReadMode is how fresh a read must be.
type ReadMode uint8

const (
	// ReadDefault answers from this member's replica while it is the
	// ready leader, or a follower that has caught up with the log and
	// heard from a leader within MaxStale; otherwise ErrStale.
	ReadDefault ReadMode = iota
	// ReadStale answers from this member's replica whatever its lag, once
	// it has caught up with the log since it started.
	ReadStale
	// ReadConsistent answers only after the leader confirmed, with a
	// majority, that it still leads and this member applied the log up
	// to the leader's commit index at that moment: the read sees every
	// write acknowledged before it began (linearizable).
	ReadConsistent
)

// DefaultMaxStale is how long a follower may go without hearing from a
// leader and still answer default reads: long enough to ride out an
// election without refusing reads, short enough that a follower cut off
// from its cluster stops answering as if it were current.
const DefaultMaxStale = 5 * time.Second

// ErrStale means this member has not heard from a leader for longer than
// MaxStale: its replica may be behind. Ask another member, retry, or
// accept a stale answer (ReadStale).
var ErrStale = errors.New("registry: this server has not heard from a leader recently; its replica may be behind")

// ErrNoReadIndex means a consistent read could not be confirmed: no
// leader answered for a read index within ReadIndexTimeout (an election,
// or this server cannot reach the leader, or the leader a majority). It
// wraps the replication layer's error.
var ErrNoReadIndex = errors.New("registry: no leader confirmed a consistent read")

// ReadIndexTimeout bounds the read-index round of a consistent read: a
// leader that holds its majority answers within a few round trips, and a
// client waiting longer is better told to retry (or to read ?stale).
const ReadIndexTimeout = 2 * time.Second

// ReplicaInfo says which member answered a read and how current its
// replica is.
type ReplicaInfo struct {
	// Node is the answering member's ID.
	Node string
	// Leader reports whether it leads.
	Leader bool
	// KnownLeader reports whether it knows a leader now.
	KnownLeader bool
	// LastContact is how long ago it last heard from its leader: 0 on the
	// leader, -1 when it never has.
	LastContact time.Duration
}

// Replication is what reads need of the replication layer: the server's
// adapter over *cluster.Node implements it.
type Replication interface {
	// Info describes this member's replica; it must be cheap.
	Info() ReplicaInfo
	// ReadIndex returns once this member has applied every write the
	// leader acknowledged before the call (a read-index round through
	// the leader), or an error with Unavailable() true.
	ReadIndex(ctx context.Context) error
}

// Read checks that this member may answer a read in mode now, and says
// who answers. Errors: ErrNotReady (the replica has not caught up with
// the log), ErrStale (ReadDefault on a follower cut off for longer than
// MaxStale), ErrUnavailable (ReadConsistent while no leader confirms).
func (r *Registry) Read(ctx context.Context, mode ReadMode) (ReplicaInfo, error) {
	info := ReplicaInfo{Leader: true, KnownLeader: r.prop.Leader() != ""}
	if r.cfg.Replication != nil {
		info = r.cfg.Replication.Info()
	}
	switch mode {
	case ReadConsistent:
		if r.cfg.Replication != nil {
			rctx, cancel := context.WithTimeout(ctx, ReadIndexTimeout)
			err := r.cfg.Replication.ReadIndex(rctx)
			cancel()
			if err != nil {
				if unavailable(err) || rctx.Err() != nil && ctx.Err() == nil {
					return info, fmt.Errorf("%w: %w", ErrNoReadIndex, err)
				}
				return info, err
			}
		}
	case ReadDefault:
		maxStale := r.cfg.MaxStale
		if maxStale <= 0 {
			maxStale = DefaultMaxStale
		}
		if !info.Leader && (info.LastContact < 0 || info.LastContact > maxStale) {
			return info, ErrStale
		}
	}
	return info, r.Ready()
}

// Membership is what the cluster commands need of the replication layer
// (the server's adapter over *cluster.Node implements it, beside
// Replication).
type Membership interface {
	// Members lists the servers with each one's own account of its state.
	Members(ctx context.Context) ([]api.Member, error)
	// RemoveMember removes a server through the leader. Errors:
	// ErrMemberNotFound, ErrLastVoter, ErrNotClustered, or one with
	// Unavailable() true.
	RemoveMember(ctx context.Context, id string) error
	// Self says how to reach this server's Raft port.
	Self() api.ClusterSelf
	// Voters returns the leader's Raft address ("" while none is known)
	// and the voters', from this server's own view, with no message to
	// the others (Members asks each). Errors: ErrNotClustered.
	Voters() (leader string, voters []string, err error)
}

// Errors of the cluster's membership.
var (
	// ErrMemberNotFound means no server of the cluster has the ID.
	ErrMemberNotFound = errors.New("registry: no member has this ID")
	// ErrLastVoter means the server is the cluster's only voter.
	ErrLastVoter = errors.New("registry: the only voter cannot be removed")
	// ErrNotClustered means this server has no cluster secret, so no
	// peers: it is the single voter of its own cluster.
	ErrNotClustered = errors.New("registry: this server is not part of a cluster of several servers")
)

// Members lists the servers of the cluster. Errors: ErrNotClustered.
func (r *Registry) Members(ctx context.Context) ([]api.Member, error) {
	m, ok := r.cfg.Replication.(Membership)
	if !ok {
		return nil, ErrNotClustered
	}
	return m.Members(ctx)
}

// Voters returns the leader's Raft address and the voters', from this
// server's view. Errors: ErrNotClustered.
func (r *Registry) Voters() (leader string, voters []string, err error) {
	m, ok := r.cfg.Replication.(Membership)
	if !ok {
		return "", nil, ErrNotClustered
	}
	return m.Voters()
}

// RemoveMember removes the server id from the cluster (admin token).
// Errors: ErrNoCredential, ErrWrongToken, ErrMemberNotFound,
// ErrLastVoter, ErrNotClustered, ErrUnavailable.
func (r *Registry) RemoveMember(ctx context.Context, adminToken, id string) (err error) {
	if err := r.Admin(ctx, audit.ActionMemberRemove, adminToken); err != nil {
		return err
	}
	defer func() {
		r.record(ctx, audit.Record{Action: audit.ActionMemberRemove, Reason: "member " + id}, err)
	}()
	m, ok := r.cfg.Replication.(Membership)
	if !ok {
		return ErrNotClustered
	}
	err = m.RemoveMember(ctx, id)
	if err != nil && unavailable(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err == nil {
		r.log.Info("removed a server from the cluster", "member", id)
	}
	return err
}

// Self says how to reach this server's Raft port.
func (r *Registry) Self() api.ClusterSelf {
	if m, ok := r.cfg.Replication.(Membership); ok {
		return m.Self()
	}
	return api.ClusterSelf{}
}

// maxCatchUps bounds the catch-ups (read-index rounds through the
// leader) a follower runs at once on behalf of writes that named
// something it did not hold: a stranger sending unknown keys to a
// follower cannot turn each into a round trip to the leader beyond it.
const maxCatchUps = 16

// catchUp, on a follower, waits until its replica holds every write the
// leader acknowledged (a read index, within 2 s), so that a write naming
// something another server has just created (an enrolment key, an
// instance) is judged as the leader would judge it. It reports whether
// the caller should look again. On the leader and on a single node a
// miss is the truth: false, nil. On a follower that cannot catch up (no
// leader confirms, or maxCatchUps are running) it returns ErrUnavailable:
// it cannot tell a missing key or instance from one it has not received
// yet, and must not answer 401 or 404 for one that exists.
func (r *Registry) catchUp() (bool, error) {
	if r.cfg.Replication == nil || r.cfg.Replication.Info().Leader {
		return false, nil
	}
	select {
	case r.catchUps <- struct{}{}:
		defer func() { <-r.catchUps }()
	default:
		return false, fmt.Errorf("%w: too many lookups of unknown keys or instances are waiting for the leader", ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.cfg.Replication.ReadIndex(ctx); err != nil {
		return false, fmt.Errorf("%w: this server does not hold it and cannot reach the leader to be sure: %w", ErrUnavailable, err)
	}
	return true, nil
}
