package catalog

import (
	"errors"
	"sync"
	"time"
)

// Errors returned in Result.Err by Apply and by read methods.
var (
	// ErrNotFound means the instance or key named by a command does not exist.
	ErrNotFound = errors.New("catalog: not found")
	// ErrKeyRevoked means the enrolment key a registration names no longer exists.
	ErrKeyRevoked = errors.New("catalog: enrolment key revoked")
	// ErrKeyScope means the enrolment key does not allow the service name.
	ErrKeyScope = errors.New("catalog: enrolment key not allowed for service")
	// ErrConflict means a conditional command's precondition did not hold.
	ErrConflict = errors.New("catalog: precondition failed")
	// ErrExists means a command would create an object whose ID is taken.
	ErrExists = errors.New("catalog: already exists")
	// ErrProtocolMix means a registration would put instances admitted by
	// the tutorial protocol's key and by ordinary enrolment keys in one
	// service; the catalog keeps the two apart.
	ErrProtocolMix = errors.New("catalog: service belongs to the other registration protocol")
	// ErrBadCommand means a command could not be decoded or is incomplete.
	ErrBadCommand = errors.New("catalog: bad command")
)

// Instance is one registered service instance. Values stored in the catalog
// are immutable: a change replaces the pointer.
type Instance struct {
	ID              string            `json:"id"`
	Service         string            `json:"service"`
	Address         string            `json:"address"`
	Port            int               `json:"port"`
	Scheme          string            `json:"scheme"`
	Tags            []string          `json:"tags,omitempty"`
	Meta            map[string]string `json:"meta,omitempty"`
	TTL             time.Duration     `json:"ttl"`
	DeregisterAfter time.Duration     `json:"deregister_after"`
	// TokenHash is SHA-256 of the session token; the token itself is never stored.
	TokenHash []byte `json:"token_hash"`
	KeyID     string `json:"key_id"`
	Proof     string `json:"proof"`
	// Status is the instance's health as committed: passing or critical.
	Status string `json:"status"`
	// Draining is set when the instance asked to stop receiving new work.
	// It is separate from Status so that a drained instance that misses a
	// heartbeat and comes back is still draining.
	Draining     bool      `json:"draining,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
	CreateIndex  uint64    `json:"create_index"`
	ModifyIndex  uint64    `json:"modify_index"`

	// Derived when the instance enters the catalog, so that lookups do
	// not rebuild them on every request.
	url          string
	registeredAt string
	ttl          string
	// wire caches an encoding of the instance's immutable fields for the
	// API layer (see Wire). A fresh one is set when the instance enters
	// the catalog, so copies never share a stale encoding.
	wire *wireCache
}

type wireCache struct {
	once sync.Once
	b    []byte
}

// Wire returns encode(inst), computed once per stored instance. Lookups use
// it to avoid re-encoding fields that cannot change. encode must depend only
// on the instance's fields.
func (inst *Instance) Wire(encode func(*Instance) []byte) []byte {
	if inst.wire == nil { // an instance not (yet) in a catalog
		return encode(inst)
	}
	inst.wire.once.Do(func() { inst.wire.b = encode(inst) })
	return inst.wire.b
}

// TTLString returns the TTL as a Go duration string ("10s").
func (inst *Instance) TTLString() string { return inst.ttl }

// URL returns scheme://address:port.
func (inst *Instance) URL() string { return inst.url }

// RegisteredAtString returns RegisteredAt in RFC 3339 with nanoseconds, UTC.
func (inst *Instance) RegisteredAtString() string { return inst.registeredAt }

// Key is an enrolment key. Only a hash of its secret is stored.
type Key struct {
	ID          string    `json:"id"`
	SecretHash  []byte    `json:"secret_hash"`
	Services    []string  `json:"services"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	CreateIndex uint64    `json:"create_index"`
}

// Allows reports whether the key's patterns admit the service name.
func (k *Key) Allows(service string) bool {
	for _, p := range k.Services {
		if MatchPattern(p, service) {
			return true
		}
	}
	return false
}

// ServiceView is an immutable picture of one service: its instances sorted
// by ID and the Raft index of the last change to it.
type ServiceView struct {
	Name      string
	Index     uint64
	Instances []*Instance
}

// SeedKeyID is the enrolment key under which the tutorial protocol
// (--seed-compat) registers. Its instances never share a service with
// instances of other keys.
const SeedKeyID = "key_seed_compat"

// Op names a command.
type Op string

// The commands Apply understands.
const (
	OpRegister   Op = "register"
	OpDeregister Op = "deregister"
	OpSetStatus  Op = "set_status"
	OpDrain      Op = "drain"
	OpCreateKey  Op = "create_key"
	OpRevokeKey  Op = "revoke_key"
)

// Command is one catalog change. Which fields are read depends on Op:
//   - OpRegister: Instance (complete, with ID and TokenHash). An existing
//     instance of the same service, address and port is replaced.
//   - OpDeregister: ID; IfStatus, when set, makes it conditional.
//   - OpSetStatus: ID, Status (passing or critical); IfStatus, when set,
//     makes it conditional.
//   - OpDrain: ID. Marks the instance draining; idempotent.
//   - OpCreateKey: Key (complete, with ID and SecretHash).
//   - OpRevokeKey: ID.
type Command struct {
	Op       Op        `json:"op"`
	Instance *Instance `json:"instance,omitempty"`
	Key      *Key      `json:"key,omitempty"`
	ID       string    `json:"id,omitempty"`
	Status   string    `json:"status,omitempty"`
	IfStatus string    `json:"if_status,omitempty"`
	// Reason says why, for the audit trail (e.g. "expired", "api").
	Reason string `json:"reason,omitempty"`
	// Rules is the version of the rules a proposer wants applied. Rules
	// added to Apply after entries were first written are enforced only
	// for commands that ask for them, so an old log replays exactly as it
	// was applied the first time. See RulesCurrent.
	Rules int `json:"rules,omitempty"`
}

// RulesCurrent is the Rules value proposers set today:
//   - 1: tutorial-protocol and /v1 instances do not share a service.
const RulesCurrent = 1

// Result is what Apply returns for one command.
type Result struct {
	// Index is the Raft index at which the command was applied.
	Index uint64
	// Replaced is the ID of an instance a registration replaced, if any.
	Replaced string
	Err      error
}

// Instance statuses, as in package api. Status holds only passing or
// critical; draining is what readers report for a healthy instance with
// Draining set.
const (
	StatusPassing  = "passing"
	StatusCritical = "critical"
	StatusDraining = "draining"
)
