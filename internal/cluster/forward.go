package cluster

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/musterhq/muster/internal/catalog"
)

// Writes sent to a follower are forwarded to the leader over the
// servers' RPC: the follower has done everything a write needs before it
// proposes (authentication, validation, the verification callback), so
// what travels is the encoded command alone, and the leader proposes it
// as if it were its own and answers with its fate. The callback is thus
// made exactly once, by the node the client talked to.
//
// A forward that succeeded returns once this member has applied the
// write too, so that the client reads its own write on the member it
// wrote through.
//
// A forward is retried only when the command cannot have reached the
// log: the leader was not known yet, the connection to it could not be
// made, or it answered that it no longer leads before it proposed. A
// forward whose fate is unknown (the connection broke after the command
// was sent) is never retried here; the client hears ErrNotLeader and
// retries, and every registry write is safe to repeat.

// applyRequest and applyAnswer are the bodies of /cluster/apply.
type applyRequest struct {
	Command []byte `json:"command"` // catalog.EncodeCommand's bytes
}

type applyAnswer struct {
	Index    uint64 `json:"index,omitempty"`
	Replaced string `json:"replaced,omitempty"`
	Code     string `json:"code,omitempty"` // the command's error, see errorCodes
	Message  string `json:"message,omitempty"`
}

// errorCodes names every error Apply returns by a code that travels
// between members; the forwarding member rebuilds an error that matches
// the same sentinel with errors.Is.
var errorCodes = []struct {
	code string
	err  error
}{
	{"not_found", catalog.ErrNotFound},
	{"key_revoked", catalog.ErrKeyRevoked},
	{"key_scope", catalog.ErrKeyScope},
	{"conflict", catalog.ErrConflict},
	{"exists", catalog.ErrExists},
	{"replace_denied", catalog.ErrReplaceDenied},
	{"barred", catalog.ErrBarred},
	{"protocol_mix", catalog.ErrProtocolMix},
	{"bad_command", catalog.ErrBadCommand},
	{"unsupported", catalog.ErrUnsupported},
	{"skipped", catalog.ErrSkipped},
	{"corrupt", catalog.ErrCorrupt},
	{"quota", catalog.ErrQuota},
	{"not_leader", ErrNotLeader},
	{"timeout", ErrTimeout},
	{"closed", ErrClosed},
	{"halted", ErrHalted},
	{"disk_full", ErrDiskFull},
	{"storage", ErrStorage},
}

// leadershipLostCode is the code of a command that was proposed and whose
// leader lost its leadership before it committed: its fate is unknown,
// so it is not retried.
const leadershipLostCode = "leadership_lost"

func codeOf(err error) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

// remoteErr is an error another member returned, rebuilt: its message is
// the member's, and it matches the member's sentinel.
type remoteErr struct {
	msg      string
	sentinel error
}

func (e *remoteErr) Error() string { return e.msg }
func (e *remoteErr) Unwrap() error { return e.sentinel }

func errorOf(code, msg string) error {
	if code == "" {
		return nil
	}
	if code == leadershipLostCode {
		return &remoteErr{msg: msg, sentinel: ErrNotLeader}
	}
	for _, c := range errorCodes {
		if c.code == code {
			return &remoteErr{msg: msg, sentinel: c.err}
		}
	}
	return &remoteErr{msg: msg, sentinel: errors.New("cluster: internal error of the leader")}
}

// serveApply is /cluster/apply: a follower's write, proposed here.
func (n *Node) serveApply(w http.ResponseWriter, r *http.Request) {
	var req applyRequest
	if !ReadRPC(w, r, &req) {
		return
	}
	cmd, err := catalog.DecodeCommand(req.Command)
	if err == nil {
		err = cmd.Validate()
	}
	if err != nil {
		WriteRPCError(w, http.StatusBadRequest, "bad_command", err.Error())
		return
	}
	ctx, cancel := rpcContext(r)
	defer cancel()
	var ans applyAnswer
	if n.raft.State() != raft.Leader {
		ans.Code, ans.Message = "not_leader", ErrNotLeader.Error()
		WriteRPC(w, ans)
		return
	}
	res, err := n.applyEncoded(ctx, req.Command)
	ans.Index, ans.Replaced = res.Index, res.Replaced
	if err != nil {
		ans.Code, ans.Message = codeOf(err), err.Error()
		if ans.Code == "not_leader" {
			// Proposed, then leadership was lost: its fate is unknown.
			ans.Code = leadershipLostCode
		}
	}
	WriteRPC(w, ans)
}

// forward sends an encoded command to the leader and returns its fate,
// retrying while the command cannot have reached the log, until ctx ends
// or ApplyTimeout passes.
func (n *Node) forward(ctx context.Context, b []byte) (catalog.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	for {
		if n.raft.State() == raft.Leader {
			return n.applyEncoded(ctx, b)
		}
		addr, _ := n.raft.LeaderWithID()
		if addr != "" {
			var ans applyAnswer
			err := n.Call(ctx, string(addr), "/cluster/apply", applyRequest{Command: b}, &ans)
			switch {
			case err == nil && ans.Code != "not_leader":
				res := catalog.Result{Index: ans.Index, Replaced: ans.Replaced, Err: errorOf(ans.Code, ans.Message)}
				n.waitIndex(ctx, res.Index) // the client then reads its write here
				return res, res.Err
			case err == nil: // it no longer leads, and proposed nothing
			case !notSent(err):
				n.log.Warn("forwarding a write to the leader failed after it was sent; its fate is unknown", "leader", addr, "err", err)
				return catalog.Result{}, &remoteErr{msg: "cluster: the connection to the leader broke during a forwarded write: " + err.Error(), sentinel: ErrNotLeader}
			}
		}
		select {
		case <-ctx.Done():
			return catalog.Result{}, ErrNotLeader
		case <-n.stop:
			return catalog.Result{}, ErrClosed
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitIndex waits until this member's catalog has applied index, ctx
// ends or the node closes, and reports whether it has. It polls, from
// 50 µs up to a millisecond apart: the wait is usually a replication
// round trip, and the catalog has no wake-up for every index.
func (n *Node) waitIndex(ctx context.Context, index uint64) bool {
	for d := 50 * time.Microsecond; n.cat.Index() < index; d = min(2*d, time.Millisecond) {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-n.stop:
			t.Stop()
			return false
		case <-t.C:
		}
	}
	return true
}

// notSent reports whether an RPC's error shows the request never reached
// the member: the connection or the handshake failed.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Code == "not_leader"
	}
	// A refused handshake (handshakeError) happens before the request.
	return errors.Is(err, errHandshake)
}
