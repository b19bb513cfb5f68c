package audit

import (
	"strings"

	"github.com/musterhq/muster/internal/catalog"
)

// FromCommand returns the record of a command applied at index with
// result res, and false for a command that makes none (one of an
// operation this version does not know, which the catalog skipped). It
// reads only its arguments, so every replica derives the same record
// from the same entry: the time, node and caller come from the command's
// origin (for entries written before commands carried one, the time is
// the instance's registration time or the key's creation time, where
// the command has one). A command the catalog refused is a refused
// record with the catalog's reason.
func FromCommand(index uint64, cmd catalog.Command, res catalog.Result) (Record, bool) {
	r, ok := fromCommand(index, cmd, res)
	return bound(r), ok
}

// fromCommand is FromCommand before bound.
func fromCommand(index uint64, cmd catalog.Command, res catalog.Result) (Record, bool) {
	r := Record{Index: index, Outcome: OutcomeOK, Reason: cmd.Reason, Instance: cmd.ID}
	if o := cmd.Origin; o != nil {
		r.Time, r.Node, r.Caller, r.By = o.Time, o.Node, o.Caller, o.Token
	}
	inst := res.Instance
	switch cmd.Op {
	case catalog.OpRegister:
		r.Action = ActionRegister
		if inst == nil {
			inst = cmd.Instance
		}
		if inst != nil && r.Time.IsZero() {
			r.Time = inst.RegisteredAt
		}
		if res.Replaced != "" {
			r.Reason += "; replaced " + res.Replaced
		}
	case catalog.OpDeregister:
		r.Action = ActionDeregister
		if cmd.IfStatus == catalog.StatusCritical {
			r.Action = ActionRemove // the registry's own: critical past deregister_after
		}
	case catalog.OpSetStatus:
		switch {
		case cmd.Status == catalog.StatusDraining && cmd.IfStatus == "":
			r.Action = ActionDrain // written before draining became a flag
		case cmd.Status == catalog.StatusCritical && cmd.Reason == catalog.ReasonTTLExpired:
			r.Action, r.Status = ActionExpire, string(cmd.Status)
		default:
			r.Action, r.Status = ActionStatus, string(cmd.Status)
		}
	case catalog.OpDrain:
		r.Action = ActionDrain
	case catalog.OpEvict:
		r.Action = ActionEvict
	case catalog.OpCreateKey, catalog.OpCreateToken:
		r.Action = ActionKeyCreate
		if k := cmd.Key; k != nil {
			r.Key = k.ID
			if r.Time.IsZero() {
				r.Time = k.CreatedAt
			}
		}
	case catalog.OpRevokeKey:
		r.Action, r.Key, r.Instance = ActionKeyRevoke, cmd.ID, ""
	case catalog.OpAddCA:
		// The CA by its fingerprint only: never its key.
		r.Action, r.Instance = ActionCAAdd, ""
		if ca := cmd.CA; ca != nil {
			r.Reason = strings.TrimPrefix(r.Reason+"; ca "+caPrefix(ca.ID), "; ")
		}
	case catalog.OpRetireCA:
		r.Action, r.Instance = ActionCARetire, ""
		r.Reason = strings.TrimPrefix(r.Reason+"; ca "+caPrefix(cmd.ID), "; ")
	default:
		return Record{}, false
	}
	if inst != nil {
		r.Service, r.Instance, r.Key = inst.Service, inst.ID, inst.KeyID
	}
	if res.Err != nil {
		r.Outcome, r.Reason = OutcomeRefused, Reason(res.Err)
	}
	return r, true
}

// caPrefix is the first 16 hex digits of a CA's fingerprint: what a
// record names it by (the whole, 64 hex digits, looks like a secret,
// and would be withheld).
func caPrefix(id string) string { return id[:min(16, len(id))] }

// Reason is the text a record gives for err: its message without the
// package prefix of the catalog's and the registry's sentinels.
func Reason(err error) string {
	s := err.Error()
	for _, p := range []string{"catalog: ", "registry: ", "cluster: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}
