package cluster

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// unavailableError is an error of the replication layer that means "no
// node can take this write right now; retry". Its methods are how
// consumers recognise it without importing this package: Unavailable
// (package registry), and UnavailableReason and RetryAfter (front ends,
// through the registry's ErrUnavailable, which wraps it).
type unavailableError struct {
	msg    string        // Error(), for logs
	reason string        // for clients: no paths, no internals
	retry  time.Duration // how long a client should wait before retrying
}

func (e *unavailableError) Error() string { return e.msg }

// Unavailable reports true: retrying later, or on the leader, may succeed.
func (*unavailableError) Unavailable() bool { return true }

// UnavailableReason says, in words fit for a client, why the write was
// refused.
func (e *unavailableError) UnavailableReason() string { return e.reason }

// RetryAfter is how long a client should wait before it retries.
func (e *unavailableError) RetryAfter() time.Duration { return e.retry }

// Errors of Apply other than the catalog's own. Each has an
// Unavailable() bool method that reports true, and UnavailableReason and
// RetryAfter methods. Apply may return them wrapped, with detail: match
// them with errors.Is.
var (
	// ErrNotLeader means this node cannot accept writes because it is not
	// the Raft leader.
	ErrNotLeader error = &unavailableError{"cluster: not the leader",
		"no leader can accept writes right now", time.Second}
	// ErrTimeout means a command could not be handed to Raft in time; it
	// was not applied.
	ErrTimeout error = &unavailableError{"cluster: timed out waiting for the log",
		"the log is too busy to take the write in time", time.Second}
	// ErrRemoved means this server found that its cluster no longer
	// counts it (see watchRemoval): it takes no writes.
	ErrRemoved error = &unavailableError{"cluster: this server was removed from its cluster",
		"this server was removed from its cluster; send the request to another server", time.Second}
	// ErrClosed means the node has been closed.
	ErrClosed error = &unavailableError{"cluster: node closed",
		"the registry is shutting down", time.Second}
	// ErrHalted means the node stopped applying the log because it met a
	// command this version cannot apply, or a corrupt entry; see Node.Done.
	ErrHalted error = &unavailableError{"cluster: node halted at a log entry it cannot apply",
		"the registry stopped applying its log and needs its operator", 10 * time.Second}
	// ErrDiskFull means the filesystem of the data dir has less free space
	// than the reserve (Config.DiskReserve), or a write of the log found it
	// full. The command was not applied, and was refused before it reached
	// Raft (so the leader keeps its term and reads go on); writes succeed
	// again once space is freed. Apply returns it wrapped with the dir and
	// the free space.
	ErrDiskFull error = &unavailableError{"cluster: the data dir's disk is full",
		"the registry's disk is full; writes are refused until its operator frees space, reads still work", 10 * time.Second}
	// ErrStorage means Raft could not write the command to the log (an I/O
	// error of the data dir's disk). The command was not applied. Apply
	// returns it wrapped with the storage error.
	ErrStorage error = &unavailableError{"cluster: the log could not be written to disk",
		"the registry could not write to its disk", 5 * time.Second}
)

// applyError folds an error of a Raft apply future into this package's
// errors. Any error that is not about leadership, shutdown or the enqueue
// timeout comes from writing the log (raft responds to the futures with
// the LogStore's error when StoreLogs fails); it is ErrDiskFull when the
// disk is out of space, else ErrStorage, and never a bare error that a
// front end would report as an internal failure.
func applyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrAbortedByRestore):
		return ErrNotLeader
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrTimeout
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: writing the log: %w", ErrDiskFull, err)
	default:
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
}
