package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/redact"
)

// Action names what a record is about.
type Action string

// The actions. Those marked "Raft" are recorded from the applied log, on
// every node; the others by the node that handled the request. A
// registration, deregistration, drain, eviction or key change that was
// refused or failed before anything was proposed is a record of the same
// action in the local journal.
const (
	ActionRegister   Action = "register"   // Raft: a registration (an instance at the same endpoint replaced, if any)
	ActionDeregister Action = "deregister" // Raft: removed by its session token or the admin token
	ActionDrain      Action = "drain"      // Raft: marked draining
	ActionEvict      Action = "evict"      // Raft: removed and its endpoint barred by an operator
	ActionExpire     Action = "expire"     // Raft: its TTL ran out without a heartbeat (critical)
	ActionRemove     Action = "remove"     // Raft: critical past deregister_after, removed
	ActionStatus     Action = "status"     // Raft: another status change (a heartbeat brought it back; its checks failed or passed)
	ActionKeyCreate  Action = "key_create" // Raft: an enrolment key created
	ActionKeyRevoke  Action = "key_revoke" // Raft: an enrolment key revoked
	ActionKeyList    Action = "key_list"   // the enrolment keys listed (admin)
	// ActionSnapshotSave is a backup taken (GET /v1/snapshot, admin): it
	// holds the hashes of every secret.
	ActionSnapshotSave    Action = "snapshot_save"
	ActionSnapshotRestore Action = "snapshot_restore" // a backup restored into the running cluster (admin)
	ActionMemberRemove    Action = "member_remove"    // a server removed from the cluster (admin)
	// ActionHeartbeat is recorded only for a heartbeat refused for its
	// session token (missing, or not the instance's): a failed
	// authentication. Heartbeats themselves decide nothing.
	ActionHeartbeat Action = "heartbeat"
	// ActionAuditRead is recorded only for a read of the audit trail
	// refused for its token.
	ActionAuditRead Action = "audit_read"
	// ActionRead is recorded only for a read of the catalog (a lookup,
	// a list, a stream) refused for its token, when reads need one.
	ActionRead Action = "read"
	// ActionSnapshotInstalled is this node's own record that a snapshot
	// replaced its catalog at an index above its journal's: it holds no
	// record of the entries the snapshot covers that it had not applied.
	ActionSnapshotInstalled Action = "snapshot_installed"
	// ActionSuppressed says how many refusals from one client network
	// were not recorded one by one, past the rate each network may have
	// recorded (its Caller is the network).
	ActionSuppressed Action = "suppressed"
	// ActionCertIssue is a certificate issued to an instance, or refused
	// (its Reason says why): the node's own record, since issuing
	// changes nothing in the catalog. Its Reason names the certificate's
	// serial and SPIFFE ID; nothing of the CA's key is ever in a record.
	ActionCertIssue Action = "cert_issue"
	// ActionCAAdd is a CA added (Raft: the first, or a rotation's); its
	// Reason names the CA's fingerprint.
	ActionCAAdd Action = "ca_add"
	// ActionCARetire is a CA retired (Raft), named by its fingerprint.
	ActionCARetire Action = "ca_retire"
	// ActionCARotate is a rotation asked for (admin), refused or failed;
	// a rotation carried out is the ca_add record it proposed.
	ActionCARotate Action = "ca_rotate"
)

// actions are every Action, in the order the docs list them.
var actions = []Action{
	ActionRegister, ActionDeregister, ActionDrain, ActionEvict, ActionExpire, ActionRemove, ActionStatus,
	ActionKeyCreate, ActionKeyRevoke, ActionKeyList, ActionSnapshotSave, ActionSnapshotRestore, ActionMemberRemove,
	ActionHeartbeat, ActionAuditRead, ActionRead, ActionSnapshotInstalled, ActionSuppressed,
	ActionCertIssue, ActionCAAdd, ActionCARetire, ActionCARotate,
}

// Actions returns every action, in a fixed order.
func Actions() []Action { return slices.Clone(actions) }

// ParseAction returns the action named s, and false if there is none.
func ParseAction(s string) (Action, bool) {
	a := Action(s)
	return a, slices.Contains(actions, a)
}

// Outcome is how an action ended.
type Outcome string

// The outcomes.
const (
	// OutcomeOK: the action was carried out.
	OutcomeOK Outcome = "ok"
	// OutcomeRefused: the registry or the catalog said no (a credential,
	// the request, the callback, a quota, a rate limit, a conflict).
	OutcomeRefused Outcome = "refused"
	// OutcomeFailed: the registry could not carry it out (not ready, no
	// leader, a full disk, busy); a write whose fate was unknown may
	// still have been applied, and then has its own record too.
	OutcomeFailed Outcome = "failed"
)

// ParseOutcome returns the outcome named s, and false if there is none.
func ParseOutcome(s string) (Outcome, bool) {
	switch o := Outcome(s); o {
	case OutcomeOK, OutcomeRefused, OutcomeFailed:
		return o, true
	}
	return "", false
}

// Record is one audit record. It never holds a secret, a token or a hash
// of one: a key appears by its ID.
type Record struct {
	// Time is when the decision was made: by the proposer's clock for a
	// record from the applied log, this node's otherwise. Zero for log
	// entries written before commands carried their origin (and without a
	// registration or creation time of their own).
	Time    time.Time
	Action  Action
	Outcome Outcome
	// Reason says why: the cause a command gives ("api", "ttl expired",
	// "heartbeat", an operator's reason for an eviction), or what refused
	// it.
	Reason   string
	Service  string
	Instance string // the instance's ID
	Key      string // the enrolment key's ID: the one used, or the instance's
	// Status is the status a status change set (passing, critical).
	Status string
	// Caller is the address the request came from (host:port, the TCP
	// peer: behind a proxy, the proxy's); empty for the registry's own
	// decisions.
	Caller string
	// Node is the ID of the node that handled the request.
	Node string
	// By names the credential that asked when it was neither the
	// instance's own session token nor the enrolment key of a
	// registration: "admin" (the admin token) or a token's ID.
	By string
	// Index is the Raft index of the decision, for a record from the
	// applied log (and of the snapshot, for ActionSnapshotInstalled).
	Index uint64
}

// Bounds of a record's fields: longer values are cut (at a character's
// boundary), so that a line stays small whatever a caller sends.
const (
	maxReason = 256
	maxName   = 128 // service, instance, key, node
	maxCaller = 64
	maxStatus = 16
	// MaxLine is the longest line a record can take on disk, with room to
	// spare: readers skip longer lines as damage.
	MaxLine = 4096
)

// bound cuts r's fields to their bounds, and keeps out of them what may
// be a secret (the record's promise; see package redact): a service
// that is not a service name, an instance or key ID that is not of an
// ID's form (the registry's IDs are lowercase; every secret it issues
// has upper- and lowercase letters) becomes redact.Withheld, and a run
// of the reason that looks like a secret is withheld from it. It reads
// only r, so every replica derives the same record from the same entry.
func bound(r Record) Record {
	if r.Outcome != OutcomeOK {
		// A refusal's reason is the registry's message, which may quote
		// what the caller sent (a value cut to its first 32 bytes, too
		// short for the rules above to see a secret in): the quoted
		// text is not recorded.
		r.Reason = unquoted(r.Reason)
	}
	r.Reason = cut(redact.Text(r.Reason), maxReason)
	r.Service = name(r.Service, catalog.ValidServiceName)
	r.Instance = name(r.Instance, validID)
	r.Key = name(r.Key, validID)
	if r.By != "admin" {
		r.By = name(r.By, validID)
	}
	r.Node = cut(redact.Text(r.Node), maxName)
	r.Caller = cut(redact.Text(r.Caller), maxCaller)
	r.Status = cut(redact.Text(r.Status), maxStatus)
	r.Action = Action(cut(string(r.Action), maxName))
	r.Outcome = Outcome(cut(string(r.Outcome), maxStatus))
	return r
}

// unquoted returns s with the text of each double-quoted string (Go's %q:
// backslash escapes) replaced by "…".
func unquoted(s string) string {
	i := strings.IndexByte(s, '"')
	if i < 0 {
		return s
	}
	var b strings.Builder
	for i >= 0 {
		b.WriteString(s[:i])
		b.WriteString(`"…"`)
		j := i + 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(s) {
			return b.String() // unterminated: the rest is quoted
		}
		s = s[j+1:]
		i = strings.IndexByte(s, '"')
	}
	b.WriteString(s)
	return b.String()
}

// name is s if it is empty or valid, else redact.Withheld.
func name(s string, valid func(string) bool) string {
	if s == "" || valid(s) {
		return s
	}
	return redact.Withheld
}

// validID reports whether s has the form of an instance or key ID as
// the registry makes them: catalog.ValidID, without uppercase letters.
func validID(s string) bool {
	return catalog.ValidID(s) && strings.IndexFunc(s, func(c rune) bool { return c >= 'A' && c <= 'Z' }) < 0
}

// withhold replaces the known secrets in r's fields.
func withhold(k redact.Known, r Record) Record {
	r.Reason = k.Text(r.Reason)
	for _, f := range []*string{&r.Service, &r.Instance, &r.Key, &r.Node, &r.Caller, &r.Status, &r.By} {
		if k.Holds(*f) {
			*f = redact.Withheld
		}
	}
	return r
}

// cut returns s cut to at most n bytes, at the start of a character.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// recordV1 is a record as the journals hold it: one JSON object a line,
// time first (readers find a line's time without decoding the rest).
// Its field names are the wire's (api.AuditRecord), but it is a format
// of its own: a change to either is not a change to the other.
type recordV1 struct {
	Time     string `json:"time,omitempty"`
	Action   string `json:"action"`
	Outcome  string `json:"outcome"`
	Reason   string `json:"reason,omitempty"`
	Service  string `json:"service,omitempty"`
	Instance string `json:"instance_id,omitempty"`
	Key      string `json:"key_id,omitempty"`
	Status   string `json:"status,omitempty"`
	Caller   string `json:"caller,omitempty"`
	Node     string `json:"node,omitempty"`
	By       string `json:"by,omitempty"`
	Index    uint64 `json:"index,omitempty"`
}

// timeLayout is the records' time: RFC 3339 with up to nanoseconds, UTC.
const timeLayout = time.RFC3339Nano

// appendLine appends r's line, with its newline, to b.
func appendLine(b []byte, r Record) ([]byte, error) {
	v := recordV1{Action: string(r.Action), Outcome: string(r.Outcome), Reason: r.Reason, Service: r.Service,
		Instance: r.Instance, Key: r.Key, Status: r.Status, Caller: r.Caller, Node: r.Node, By: r.By, Index: r.Index}
	if !r.Time.IsZero() {
		v.Time = r.Time.UTC().Format(timeLayout)
	}
	line, err := json.Marshal(v)
	if err != nil {
		return b, fmt.Errorf("audit: encode record: %w", err)
	}
	b = append(b, line...)
	return append(b, '\n'), nil
}

// errBadLine means a journal line is not a record: damage, or a line cut
// short by a crash.
var errBadLine = errors.New("audit: not a record")

// parseLine decodes one journal line (without its newline).
func parseLine(line []byte) (Record, error) {
	var v recordV1
	if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &v) != nil || v.Action == "" {
		return Record{}, errBadLine
	}
	r := Record{Action: Action(v.Action), Outcome: Outcome(v.Outcome), Reason: v.Reason, Service: v.Service,
		Instance: v.Instance, Key: v.Key, Status: v.Status, Caller: v.Caller, Node: v.Node, By: v.By, Index: v.Index}
	if v.Time != "" {
		t, err := time.Parse(timeLayout, v.Time)
		if err != nil {
			return Record{}, errBadLine
		}
		r.Time = t
	}
	return r, nil
}

// lineTime reads the time at the start of a line as appendLine writes
// it, without decoding the rest: zero when the line has none, or is not
// a record.
func lineTime(line []byte) time.Time {
	const prefix = `{"time":"`
	s, ok := strings.CutPrefix(string(line), prefix)
	if !ok {
		return time.Time{}
	}
	end := strings.IndexByte(s, '"')
	if end < 0 {
		return time.Time{}
	}
	t, err := time.Parse(timeLayout, s[:end])
	if err != nil {
		return time.Time{}
	}
	return t
}
