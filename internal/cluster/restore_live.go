package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/musterhq/muster/internal/catalog"
)

// Restoring a backup into the running cluster (muster snapshot restore
// without --data-dir; RestoreSnapshot, in restore.go, writes one into a
// new data dir instead).
//
// The leader restores it with hashicorp/raft's Restore: the snapshot
// goes into the leader's snapshot store, its FSM restores it, and the
// log before it is deleted (see contiguousLog), so that every follower,
// finding no entry to replicate, installs the snapshot
// (InstallSnapshot), as a new member would. Restore returns once a no-op after it is committed: a majority
// holds the restored catalog. It is one Raft operation: every member
// goes from the old catalog to the new one, with no command of either
// in between.
//
// Around it:
//
//   - The backup is checked in full first (catalog.ReadBackup), on the
//     member the client sent it to and again on the leader: a refused
//     one changes nothing. A FSM that fails to restore makes
//     hashicorp/raft panic, so nothing unchecked may reach it.
//   - The leader rebases it (catalog.Backup.Rebased) to an index above
//     every index its log has used, for the catalog and for every
//     service of the backup and of the catalog it replaces: indexes move
//     forward only, so blocking queries and caches see the change, and
//     event streams resync. It keeps the running CAs, which a backup
//     never holds (catalog.Backup.WithCAs), and is written in the
//     binary format of Raft's snapshots (catalog.Backup.WriteSnapshot).
//   - No command is proposed while the leader restores: writes in flight
//     finish first, and one that arrives meanwhile is refused (it was
//     decided against the catalog being replaced) with ErrTimeout, not
//     applied; its client retries.
//   - Expiry is judged afresh, as after an election: Ready reports the
//     end of the restore as the time this node became ready, so the
//     leader's health.Liveness grants every instance its TTL plus grace
//     from then. Restored instances have no heartbeat history, and their
//     registration times are those of the backup: judged from the old
//     floor, they would expire at once.
//   - A follower forwards the backup to the leader over the servers' RPC,
//     as the body of POST /cluster/restore, written as it is encoded and
//     bounded by catalog.MaxSnapshotSize (not by the RPC's 16 MiB), and
//     answers once it holds the restored catalog itself, as a forwarded
//     write does.
//   - If the leader loses its leadership during the restore, whether the
//     cluster holds the backup is unknown: Restore says so (ErrNotLeader,
//     wrapping errRestoreFate). Restoring the same backup again is safe
//     and makes every member hold it.

// contiguousLog is the log store as Raft sees it: raft-boltdb, declared
// monotonic (raft.MonotonicLogStore), so that after it restores or
// installs a snapshot Raft deletes the log the snapshot covers rather
// than leave a hole between that log and the entries after the snapshot.
// Open checks that the log numbers its entries without a gap
// (checkBolt, checkLog) and takes a hole for damage; without this, one
// would be left after every restore into the running cluster, on every
// member, and on a follower that installed a snapshot after it fell
// behind, and none of them would start again.
//
// stored, if not nil, is called after every write of entries
// (Node.markState, which records the first). guard (required)
// serialises the writes (the log's and, as Raft's stable store, its
// term and vote) and drops raft.db's resident pages after each
// compaction of the log (resident.go).
type contiguousLog struct {
	*raftboltdb.BoltStore
	stored func()
	guard  *writeGuard
}

// IsMonotonic implements raft.MonotonicLogStore.
func (contiguousLog) IsMonotonic() bool { return true }

// StoreLog stores one entry; see StoreLogs.
func (l contiguousLog) StoreLog(e *raft.Log) error { return l.StoreLogs([]*raft.Log{e}) }

// StoreLogs stores entries, then calls stored.
func (l contiguousLog) StoreLogs(es []*raft.Log) error {
	l.guard.mu.Lock()
	err := l.BoltStore.StoreLogs(es)
	l.guard.mu.Unlock()
	if err != nil {
		return err
	}
	if l.stored != nil {
		l.stored()
	}
	return nil
}

// DeleteRange deletes the entries from min to max, then drops raft.db's
// resident pages, most of them the deleted entries' (resident.go).
func (l contiguousLog) DeleteRange(min, max uint64) error {
	l.guard.mu.Lock()
	defer l.guard.mu.Unlock()
	if err := l.BoltStore.DeleteRange(min, max); err != nil {
		return err
	}
	l.guard.shedLocked()
	return nil
}

// Set implements raft.StableStore under the write lock.
func (l contiguousLog) Set(k, v []byte) error {
	l.guard.mu.Lock()
	defer l.guard.mu.Unlock()
	return l.BoltStore.Set(k, v)
}

// SetUint64 implements raft.StableStore under the write lock.
func (l contiguousLog) SetUint64(k []byte, v uint64) error {
	l.guard.mu.Lock()
	defer l.guard.mu.Unlock()
	return l.BoltStore.SetUint64(k, v)
}

// restoreTimeout bounds a restore forwarded to the leader: the upload of
// the backup, the leader's restore and its commitment by a majority.
const restoreTimeout = 10 * time.Minute

// restoreCodes are the RPC codes of a refused backup, beside
// errorCodes' (forward.go).
var restoreCodes = []struct {
	code   string
	status int
	err    error
}{
	{"bad_snapshot", http.StatusBadRequest, catalog.ErrBadSnapshot},
	{"too_large", http.StatusRequestEntityTooLarge, catalog.ErrSnapshotTooLarge},
}

var (
	// errRestoring refuses a write proposed while a restore runs: it was
	// not applied, and its client retries.
	errRestoring = fmt.Errorf("%w: the catalog is being restored from a backup", ErrTimeout)
	// errRestoreFate marks a restore during which the leader lost its
	// leadership: whether the cluster holds the backup is unknown.
	errRestoreFate = errors.New("cluster: the leader changed during the restore, so whether the cluster holds the backup is unknown; restoring it again is safe")
)

type restoreAnswer struct {
	Index uint64 `json:"index"`
}

// Restore makes b the catalog of every member, as one Raft operation of
// the leader's, and returns the catalog's index after it: above every
// index before. On the leader it returns once a majority holds it; on a
// follower, which forwards b to the leader, once this member holds it
// too (or Config.ApplyTimeout passed). See the top of this file for what
// surrounds it.
//
// Errors: catalog.ErrBadSnapshot or catalog.ErrSnapshotTooLarge when the
// leader refuses b; ErrNotLeader when no ready leader takes it within
// Config.ApplyTimeout, or, wrapping errRestoreFate, when its fate is
// unknown; ErrDiskFull, ErrTimeout, ErrStorage, ErrClosed, ErrHalted.
// All but the first two have Unavailable() true.
func (n *Node) Restore(ctx context.Context, b *catalog.Backup) (uint64, error) {
	deadline := time.Now().Add(n.cfg.ApplyTimeout)
	for {
		if n.Err() != nil {
			return 0, ErrHalted
		}
		if n.raft.State() == raft.Leader {
			return n.restoreLocal(b)
		}
		if n.rpc == nil {
			return 0, ErrNotLeader
		}
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			index, err := n.sendRestore(ctx, string(addr), b)
			if err == nil {
				// As a forwarded write: the client reads it here next.
				actx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
				n.waitIndex(actx, index)
				cancel()
				return index, nil
			}
			if !notSent(err) {
				return 0, remoteRestoreError(err)
			}
		}
		if time.Now().After(deadline) {
			return 0, ErrNotLeader
		}
		select {
		case <-ctx.Done():
			return 0, ErrNotLeader
		case <-n.stop:
			return 0, ErrClosed
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// restoreLocal is Restore on the leader.
func (n *Node) restoreLocal(b *catalog.Backup) (uint64, error) {
	n.mu.Lock()
	gen := n.leaderGen
	n.mu.Unlock()
	if !n.IsReady() {
		return 0, ErrNotLeader // still applying its log, as for a read
	}
	if err := n.disk().check(); err != nil {
		return 0, err
	}
	// Writes in flight finish; new ones are refused (applyEncoded).
	n.restoreMu.Lock()
	defer n.restoreMu.Unlock()
	if !n.judgeAfresh(gen) {
		return 0, ErrNotLeader
	}
	var services []string
	for _, v := range n.cat.Services() {
		services = append(services, v.Name)
	}
	index := max(n.raft.LastIndex()+1, b.Index())
	// The backup holds no CA: the running ones are kept (see
	// catalog.Backup.WithCAs).
	rb := b.Rebased(index, services).WithCAs(n.cat.CAs())
	// Raft needs the size first; the encoding is deterministic, so it is
	// counted, then written again into Raft's snapshot, rather than kept
	// in a buffer of its own or a file.
	size, err := rb.WriteSnapshot(io.Discard)
	if err != nil {
		return 0, err
	}
	from := n.cat.Index()
	err = n.runRestore(&raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: index, Size: size}, rb)
	n.judgeAfresh(gen)
	if err != nil {
		if n.cat.Index() == index { // the FSM took it; its commitment failed
			n.log.Error("a restore from a backup was interrupted after this node took it; restore the same backup again", "index", index, "err", err)
			return 0, fmt.Errorf("%w: %w: %w", ErrNotLeader, errRestoreFate, err)
		}
		return 0, restoreError(err)
	}
	sum := rb.Summary()
	n.log.Warn("the catalog was replaced by a backup", "from_index", from, "index", index, "snapshot_index", b.Index(),
		"instances", sum.Instances, "services", sum.Services, "keys", sum.Keys, "evictions", sum.Evictions)
	return index, nil
}

// judgeAfresh makes the time Ready reports now, while this node is still
// the ready leader of the term gen: the leader's Liveness then judges
// expiry from now, as after an election. It reports whether it is.
func (n *Node) judgeAfresh(gen uint64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if gen != n.leaderGen {
		return false
	}
	select {
	case <-n.ready:
		n.leaderSince = time.Now()
		return true
	default:
		return false
	}
}

// runRestore hands rb to Raft's Restore, through a pipe, and waits for
// it, or until the node closes or halts.
func (n *Node) runRestore(meta *raft.SnapshotMeta, rb *catalog.Backup) error {
	pr, pw := io.Pipe()
	go func() {
		_, err := rb.WriteSnapshot(pw)
		pw.CloseWithError(err)
	}()
	defer pr.Close() // ends the writer if Raft stopped reading
	done := make(chan error, 1)
	go func() { done <- n.raft.Restore(meta, pr, n.cfg.ApplyTimeout) }()
	select {
	case err := <-done:
		return err
	case <-n.stop:
		return ErrClosed
	case <-n.halted:
		return ErrHalted
	}
}

// restoreError folds an error of Raft's Restore that left the catalog
// as it was into this package's errors.
func restoreError(err error) error {
	switch {
	case errors.Is(err, ErrClosed), errors.Is(err, ErrHalted):
		return err
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, raft.ErrEnqueueTimeout):
		return applyError(err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: writing the snapshot: %w", ErrDiskFull, err)
	case strings.Contains(err.Error(), "configuration entry"):
		// A change of membership is still being committed.
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	default:
		return fmt.Errorf("%w: restoring the snapshot: %w", ErrStorage, err)
	}
}

// sendRestore forwards b to the leader at addr, written into the
// request as it is encoded, and returns the index it answers. A refusal
// is a *RemoteError.
func (n *Node) sendRestore(ctx context.Context, addr string, b *catalog.Backup) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	pr, pw := io.Pipe()
	go func() {
		_, err := b.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/cluster/restore", pr)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	// The leader answers once a majority holds the backup, later than
	// the RPC client waits for other answers: ctx bounds it instead.
	c := *n.rpc.client
	if t, ok := c.Transport.(*http.Transport); ok {
		t = t.Clone()
		t.ResponseHeaderTimeout = 0
		defer t.CloseIdleConnections()
		c.Transport = t
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, adminRefusal(addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, rpcMaxHeader))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		var e rpcError
		if json.Unmarshal(body, &e) != nil || e.Code == "" {
			e = rpcError{Code: "internal", Message: fmt.Sprintf("%s from %s", resp.Status, addr)}
		}
		return 0, &RemoteError{Addr: addr, Code: e.Code, Message: e.Message}
	}
	var ans restoreAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return 0, fmt.Errorf("cluster: answer of %s to a restore: %w", addr, err)
	}
	return ans.Index, nil
}

// remoteRestoreError rebuilds the leader's refusal of a restore.
func remoteRestoreError(err error) error {
	var re *RemoteError
	if !errors.As(err, &re) {
		// Sent, and then the connection broke: its fate is unknown.
		return fmt.Errorf("%w: %w: forwarding it to the leader: %w", ErrNotLeader, errRestoreFate, err)
	}
	for _, c := range restoreCodes {
		if c.code == re.Code {
			return &remoteErr{msg: re.Message, sentinel: c.err}
		}
	}
	if re.Code == leadershipLostCode {
		return &remoteErr{msg: re.Message, sentinel: ErrNotLeader}
	}
	return errorOf(re.Code, re.Message)
}

// restoreRoutes adds the leader's side of a forwarded restore to the
// servers' RPC.
func (n *Node) restoreRoutes() {
	n.rpc.mux.HandleFunc("POST /cluster/restore", n.serveRestore)
}

// serveRestore is /cluster/restore: a follower's restore, checked and
// run here.
func (n *Node) serveRestore(w http.ResponseWriter, r *http.Request) {
	b, err := catalog.ReadBackup(r.Body)
	var index uint64
	if err == nil {
		if n.raft.State() != raft.Leader {
			err = ErrNotLeader
		} else {
			index, err = n.restoreLocal(b)
		}
	}
	if err == nil {
		WriteRPC(w, restoreAnswer{Index: index})
		return
	}
	for _, c := range restoreCodes {
		if errors.Is(err, c.err) {
			WriteRPCError(w, c.status, c.code, err.Error())
			return
		}
	}
	code := codeOf(err)
	if errors.Is(err, errRestoreFate) {
		code = leadershipLostCode // not to be retried as if never sent
	}
	WriteRPCError(w, http.StatusServiceUnavailable, code, err.Error())
}
