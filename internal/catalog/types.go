package catalog

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned in Result.Err by Apply and by read methods.
var (
	// ErrNotFound means the instance or key named by a command does not exist.
	ErrNotFound = errors.New("catalog: not found")
	// ErrKeyRevoked means the enrolment key a registration names no longer exists.
	ErrKeyRevoked = errors.New("catalog: enrolment key revoked")
	// ErrKeyScope means the enrolment key does not allow the service
	// name, or the key a registration names is a token of another role
	// than register.
	ErrKeyScope = errors.New("catalog: enrolment key not allowed for service")
	// ErrConflict means a conditional command's precondition did not hold.
	ErrConflict = errors.New("catalog: precondition failed")
	// ErrExists means a command would create an object whose ID is taken.
	ErrExists = errors.New("catalog: already exists")
	// ErrReplaceDenied means a registration would replace an instance
	// registered with another enrolment key at the same service, address
	// and port without proving the port itself (Proof is not
	// address+port): proving the host alone does not take over another
	// key's instance.
	ErrReplaceDenied = errors.New("catalog: the instance at this address and port belongs to another enrolment key")
	// ErrBarred means a registration is for an endpoint an operator
	// evicted, whose bar has not ended (see Bar).
	ErrBarred = errors.New("catalog: the endpoint is barred by an eviction")
	// ErrProtocolMix means a registration would put instances admitted by
	// the tutorial protocol's key and by ordinary enrolment keys in one
	// service; the catalog keeps the two apart.
	ErrProtocolMix = errors.New("catalog: service belongs to the other registration protocol")
	// ErrBadCommand means a command could not be decoded or is incomplete.
	// Every replica refuses such a command alike, so refusing it changes
	// nothing and the log goes on.
	ErrBadCommand = errors.New("catalog: bad command")
	// ErrUnsupported means a command needs a newer version of muster: its
	// operation, encoding or rules version is unknown to this one, and it
	// is not marked SkipIfUnknown. A replica that meets it must stop
	// applying the log, or it would diverge from replicas that applied it.
	ErrUnsupported = errors.New("catalog: command needs a newer version of muster")
	// ErrCorrupt means a log entry is not what its proposer wrote: its
	// checksum does not match (encoding version 2), or, in a version-1
	// entry, which has no checksum, it does not parse or holds a command
	// that no muster proposes (see Command.Validate). Unlike
	// ErrBadCommand it is not refused alike by every replica: the damage
	// is in this replica's copy. A replica that meets it must stop
	// applying the log, as for ErrUnsupported, rather than serve what the
	// damage made of it.
	ErrCorrupt = errors.New("catalog: log entry is corrupt")
	// ErrSkipped means a command of an unknown operation marked
	// SkipIfUnknown was skipped: it changed nothing here, by its
	// proposer's leave.
	ErrSkipped = errors.New("catalog: unknown optional command skipped")
	// ErrQuota means a registration would take its enrolment key or its
	// host over the limit of instances the command carries
	// (Command.KeyLimit, HostLimit).
	ErrQuota = errors.New("catalog: the enrolment key or the address holds its limit of instances")
)

// Status is an instance's health. The catalog stores only StatusPassing
// and StatusCritical; StatusDraining is what readers report for a healthy
// instance whose Draining flag is set.
type Status string

// Instance statuses; the same words as in package api.
const (
	StatusPassing  Status = "passing"
	StatusCritical Status = "critical"
	StatusDraining Status = "draining"
)

// Instance is one registered service instance. Values stored in the catalog
// are immutable: a change replaces the pointer. It is the in-memory model
// only; the Raft log and snapshots use their own versioned records
// (codec.go), and the HTTP API its own encoding.
type Instance struct {
	ID              string
	Service         string
	Address         string
	Port            int
	Scheme          string
	Tags            []string
	Meta            map[string]string
	TTL             time.Duration
	DeregisterAfter time.Duration
	// TokenHash is SHA-256 of the session token; the token itself is never stored.
	TokenHash []byte
	KeyID     string
	Proof     string
	// HostIP is the address that stood for the instance's host when it
	// registered (the lowest its address resolved to), so that limits per
	// address count hosts, not spellings. Empty in instances registered
	// before it was recorded; Address stands in for it then.
	HostIP string
	// Checks are the active health checks the registry runs against the
	// instance (nil: none). With checks, TTL may be 0: the instance does
	// not heartbeat, and its checks alone decide its status.
	Checks []Check
	// Status is the instance's health as committed: passing or critical.
	Status Status
	// ExternalID is the service ID a registrant chose through the
	// Consul-compatible API (rules 5), which its later calls name the
	// instance by, with the key that registered it; empty for every other
	// instance. A key has at most one instance of each ExternalID at each
	// address, as a Consul agent has of each service ID: a registration
	// replaces the key's instance of its ExternalID at its address, and
	// replicas on several hosts may share one.
	ExternalID string
	// Draining is set when the instance asked to stop receiving new work.
	// It is separate from Status so that a drained instance that misses a
	// heartbeat and comes back is still draining.
	Draining     bool
	RegisteredAt time.Time
	CreateIndex  uint64
	ModifyIndex  uint64
}

// Check is one active health check of an instance, as declared at
// registration with every default filled in (package checks decides the
// defaults and the registry's bounds; the catalog only stores it).
type Check struct {
	Type        string // "http", "tcp" or "grpc"
	Path        string // the HTTP check's path and query
	Port        int    // 0: the instance's port
	Interval    time.Duration
	Timeout     time.Duration
	GRPCService string
	// FailuresBeforeCritical consecutive failed probes turn the check
	// critical; SuccessesBeforePassing consecutive good ones turn it
	// passing again.
	FailuresBeforeCritical int
	SuccessesBeforePassing int
}

// Host is what limits per address count the instance under: HostIP, or
// Address for an instance registered before HostIP was recorded.
func (in *Instance) Host() string {
	if in.HostIP != "" {
		return in.HostIP
	}
	return in.Address
}

// Bar keeps an evicted endpoint (a service, address and port) from
// registering again until Until.
type Bar struct {
	Service  string
	Address  string
	Port     int
	Instance string // the ID evicted
	Reason   string
	Until    time.Time
	Index    uint64 // of the eviction
}

// Key is an access token: an enrolment key (role register) or a token
// of another role. Only a hash of its secret is stored. Keys created by
// OpCreateKey are enrolment keys with Role, ExpiresAt and CallbackTLS
// empty; only OpCreateToken sets them (see OpCreateToken for why).
type Key struct {
	ID          string
	SecretHash  []byte
	Services    []string
	Description string
	// MaxInstances caps the instances registered with the key at once;
	// 0 means the registry's default.
	MaxInstances int
	CreatedAt    time.Time
	CreateIndex  uint64
	// Role is what the key's holder may do, within Services. It is empty
	// in keys created by OpCreateKey, which are enrolment keys: read it
	// through RoleOrDefault.
	Role Role
	// ExpiresAt is when the key stops authorising anything; zero means
	// never. The catalog only stores it (Apply reads no clock): the
	// registry compares it with its own clock, through Expired.
	ExpiresAt time.Time
	// CallbackTLS is how a registration's HTTPS callback judges the
	// instance's certificate; empty means CallbackTLSVerify (read it
	// through CallbackTLSOrDefault). Only an enrolment key may have
	// CallbackTLSAny.
	CallbackTLS CallbackTLS
	// ConsulVerify is whether registrations through the Consul-compatible
	// API with this key must pass the address callback; empty means
	// ConsulVerifyCallback (read it through ConsulVerifyOrDefault). Only
	// an enrolment key may have ConsulVerifyNone.
	ConsulVerify ConsulVerify
}

// Role is what a key's holder may do with the services its patterns
// admit. The same words as in the API.
type Role string

// The roles. RoleAdmin may do everything, so its key's patterns must be
// exactly ["*"]: a scope that did not cover everything would promise a
// limit the role does not keep.
const (
	// RoleRegister registers, heartbeats, drains and deregisters its
	// own instances: the enrolment keys of old.
	RoleRegister Role = "register"
	// RoleRead looks services up, watches and streams them, and lists
	// them.
	RoleRead Role = "read"
	// RoleOperator drains, deregisters and evicts any instance of its
	// services, and reads the audit trail.
	RoleOperator Role = "operator"
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
)

// Roles are the valid roles, from the least to the most allowed.
func Roles() []Role { return []Role{RoleRegister, RoleRead, RoleOperator, RoleAdmin} }

// Valid reports whether r is one of the roles. The empty Role of a key
// created by OpCreateKey is not one: it stands for RoleRegister (see
// Key.RoleOrDefault).
func (r Role) Valid() bool {
	switch r {
	case RoleRegister, RoleRead, RoleOperator, RoleAdmin:
		return true
	}
	return false
}

// ParseRole returns the role named s. Its error lists the roles, for a
// caller to show.
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.Valid() {
		return r, nil
	}
	return "", fmt.Errorf("catalog: unknown role %.32q: use register, read, operator or admin", s)
}

// CallbackTLS says how the HTTPS callback of a registration with an
// enrolment key judges the instance's certificate.
type CallbackTLS string

// The ways a callback judges a certificate. A key's CallbackTLS may also
// be empty, which means CallbackTLSVerify.
const (
	// CallbackTLSVerify: the certificate must chain to a CA the registry
	// is configured with.
	CallbackTLSVerify CallbackTLS = "verify"
	// CallbackTLSAny: any certificate is accepted. The callback's HMAC
	// proof still binds the answer to the key, so this gives up only
	// the check of who holds the address, for instances with
	// self-signed certificates.
	CallbackTLSAny CallbackTLS = "any"
)

// Valid reports whether m is one of the ways, or empty.
func (m CallbackTLS) Valid() bool {
	return m == "" || m == CallbackTLSVerify || m == CallbackTLSAny
}

// ParseCallbackTLS returns the way named s ("" for empty, the default).
// Its error lists the ways, for a caller to show.
func ParseCallbackTLS(s string) (CallbackTLS, error) {
	if m := CallbackTLS(s); m.Valid() {
		return m, nil
	}
	return "", fmt.Errorf("catalog: unknown callback_tls %.32q: use verify or any", s)
}

// ConsulVerify says whether a registration through the Consul-compatible
// API, which has no callback of its own, must still pass the address
// callback.
type ConsulVerify string

// The policies. A key's ConsulVerify may also be empty, which means
// ConsulVerifyCallback.
const (
	// ConsulVerifyCallback: the registry calls the address back, as for
	// every /v1 registration (a sidecar on the host may answer).
	ConsulVerifyCallback ConsulVerify = "callback"
	// ConsulVerifyNone: the address is taken on the key's word. The
	// instance's proof says so ("none").
	ConsulVerifyNone ConsulVerify = "none"
)

// Valid reports whether v is one of the policies, or empty.
func (v ConsulVerify) Valid() bool {
	return v == "" || v == ConsulVerifyCallback || v == ConsulVerifyNone
}

// ParseConsulVerify returns the policy named s ("" for empty, the
// default). Its error lists the policies, for a caller to show.
func ParseConsulVerify(s string) (ConsulVerify, error) {
	if v := ConsulVerify(s); v.Valid() {
		return v, nil
	}
	return "", fmt.Errorf("catalog: unknown consul_verify %.32q: use callback or none", s)
}

// ConsulVerifyOrDefault is the key's policy for registrations through the
// Consul-compatible API: ConsulVerify, or ConsulVerifyCallback when it is
// empty.
func (k *Key) ConsulVerifyOrDefault() ConsulVerify {
	if k.ConsulVerify == "" {
		return ConsulVerifyCallback
	}
	return k.ConsulVerify
}

// RoleOrDefault is the key's role: Role, or RoleRegister for a key
// created by OpCreateKey, which has none.
func (k *Key) RoleOrDefault() Role {
	if k.Role == "" {
		return RoleRegister
	}
	return k.Role
}

// CallbackTLSOrDefault is how callbacks of registrations with the key
// judge certificates: CallbackTLS, or CallbackTLSVerify when it is empty.
func (k *Key) CallbackTLSOrDefault() CallbackTLS {
	if k.CallbackTLS == "" {
		return CallbackTLSVerify
	}
	return k.CallbackTLS
}

// Expired reports whether the key has expired at now: it has an
// ExpiresAt, and now is not before it. An expired key authorises
// nothing, though it stays in the catalog until it is revoked.
func (k *Key) Expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// tokenOnly reports whether k has a field that only OpCreateToken may
// set.
func (k *Key) tokenOnly() bool {
	return k.Role != "" || !k.ExpiresAt.IsZero() || k.CallbackTLS != "" || k.ConsulVerify != ""
}

// Allows reports whether the key's patterns admit the service name. It
// does not look at the role or the expiry.
func (k *Key) Allows(service string) bool {
	for _, p := range k.Services {
		if MatchPattern(p, service) {
			return true
		}
	}
	return false
}

// ServiceView is an immutable picture of one service: its instances sorted
// by ID and the Raft index of the last change to it. A change to the
// service replaces the view, so a view's pointer identifies one version of
// the service (front ends key their caches by it).
type ServiceView struct {
	Name      string
	Index     uint64
	Instances []*Instance
	// Checked counts the Instances that have active checks, so that
	// those who run checks pass over a service with none at once.
	Checked int
	// Bars are the evictions' bars on the service's endpoints, ended or
	// not (readers compare Until with the time), sorted by address and
	// port.
	Bars []*Bar
}

// ProofNone is Instance.Proof when nothing was proved: a registration
// through the Consul-compatible API with a key whose ConsulVerify is
// ConsulVerifyNone (the same word as api.ProofNone).
const ProofNone = "none"

// ProofAddressPort is Instance.Proof when the registration's callback
// reached the advertised port itself (the same words as
// api.ProofAddressPort).
const ProofAddressPort = "address+port"

// SeedKeyID is the enrolment key under which the tutorial protocol
// (--seed-compat) registers. Its instances never share a service with
// instances of other keys.
const SeedKeyID = "key_seed_compat"

// Op names a command.
type Op string

// The commands Apply understands. Each has one apply method (apply.go) and
// an entry in the table New builds.
const (
	OpRegister   Op = "register"
	OpDeregister Op = "deregister"
	OpSetStatus  Op = "set_status"
	OpDrain      Op = "drain"
	OpCreateKey  Op = "create_key"
	OpRevokeKey  Op = "revoke_key"
	// OpEvict removes an instance and bars its endpoint (service, address
	// and port) from registering again until Until. Added with command
	// encoding version 2; an older replica halts at it, as it must.
	OpEvict Op = "evict"
	// OpCreateToken creates a key with a role, an expiry or a callback
	// TLS mode: what OpCreateKey does, with those fields. It is an
	// operation of its own, not fields added to create_key, because a
	// replica that predates tokens decodes a command's JSON leniently:
	// it would drop the fields and store a read or admin token as an
	// enrolment key (one that never expires), and serve registrations
	// with it. An unknown operation halts that replica instead, as it
	// must; so create_token is never SkipIfUnknown.
	OpCreateToken Op = "create_token"
)

// Command is one catalog change. Which fields are read depends on Op:
//   - OpRegister: Instance (complete, with ID and TokenHash). An existing
//     instance of the same service, address and port is replaced.
//   - OpDeregister: ID; IfStatus, when set, makes it conditional.
//   - OpSetStatus: ID, Status (passing or critical); IfStatus, when set,
//     makes it conditional.
//   - OpDrain: ID. Marks the instance draining; idempotent.
//   - OpCreateKey: Key (complete, with ID and SecretHash), an enrolment
//     key: Role, ExpiresAt and CallbackTLS empty.
//   - OpCreateToken: Key, as for OpCreateKey, with Role set.
//   - OpRevokeKey: ID (of a key of any role).
//   - OpEvict: ID, Until.
//   - OpAddCA: CA (complete, with ID, certificate, key and AddedAt).
//   - OpRetireCA: ID (of a CA).
type Command struct {
	Op       Op
	Instance *Instance
	Key      *Key
	// CA is the CA an OpAddCA adds.
	CA       *CA
	ID       string
	Status   Status
	IfStatus Status
	// Reason says why, for the audit trail (e.g. "expired", "api").
	Reason string
	// Until is when an eviction's bar ends (OpEvict).
	Until time.Time
	// Rules is the version of the rules a proposer wants applied. Rules
	// added to Apply after entries were first written are enforced only
	// for commands that ask for them, so an old log replays exactly as it
	// was applied the first time. See RulesMax.
	Rules int
	// SkipIfUnknown lets a replica that does not know Op skip the command
	// instead of stopping. Set it only on operations whose absence on an
	// older replica changes nothing that replica serves.
	SkipIfUnknown bool
	// KeyLimit and HostLimit, on a registration, are the most instances
	// its enrolment key and its host (Instance.Host) may hold once it is
	// applied (0: no limit). The proposer's admission counts what it
	// knows; these make the count exact whichever server admitted the
	// registration (ErrQuota). A replaced instance of the same key, or at
	// the same host, is not counted.
	KeyLimit, HostLimit int
	// Origin says who asked for the command, for the audit trail, which
	// every replica derives from the applied log alike; nil in commands
	// written before it existed. Apply never reads it, and Validate does
	// not judge it: it changes nothing of what the command does.
	Origin *Origin
}

// Origin is where a command came from: what the audit record of an
// applied command needs beyond the catalog, and which the replicas that
// apply it could not know.
type Origin struct {
	// Time is when the proposer decided, by its clock (UTC).
	Time time.Time
	// Node is the ID of the node that handled the request and proposed
	// the command (a follower that forwarded it names itself).
	Node string
	// Caller is the address of the client whose request it was, as the
	// node saw it (host:port); empty for the registry's own decisions
	// (an expiry, a check's verdict).
	Caller string
	// Token names the credential that asked, when it was not the
	// instance's own session token nor an enrolment key registering:
	// "admin" for the admin token, else a token's ID (an operator's, an
	// admin-role token's). Older replicas ignore it.
	Token string
}

// ReasonTTLExpired is the Reason of the sweep's commands that turn an
// instance critical because its TTL ran out: the audit trail tells an
// expiry from other status changes by it.
const ReasonTTLExpired = "ttl expired"

// RulesMax is the highest Rules value this version applies:
//   - 1: tutorial-protocol and /v1 instances do not share a service.
//   - 2: replacing another key's instance needs proof of its port
//     (ErrReplaceDenied); a service that has had /v1 instances (since
//     rules 2) is never taken by the tutorial protocol (ErrProtocolMix).
//   - 3: an endpoint barred by an eviction does not register before the
//     bar ends, judged by the registration's RegisteredAt (ErrBarred).
//   - 4: an instance may declare active health checks (Instance.Checks),
//     and with checks its TTL may be 0 (Command.Validate).
//   - 5: an instance may have an ExternalID, and a registration with one
//     replaces the instance of the same key, ExternalID and address (or is
//     refused with ErrExists when another instance holds its address and
//     port); an instance whose Proof is ProofNone counts against its
//     host's limit apart from proven ones, and yields to another key's
//     registration that proved the address.
//
// Proposers set RulesCurrent, and RulesExternal only on a registration
// that needs it (RulesFor): a replica that predates rules 5 halts at a
// command that asks for them, so a rolling upgrade meets the first such
// command only when someone registers through the Consul-compatible API.
const RulesMax = 5

// RulesCurrent is the Rules value proposers set on every command but a
// registration with an ExternalID.
const RulesCurrent = 4

// RulesExternal is the Rules value of a registration with an ExternalID.
const RulesExternal = 5

// RulesFor is the Rules value a registration of in asks for, replacing
// old (nil: none) at its address and port.
func RulesFor(in, old *Instance) int {
	if in != nil && (in.ExternalID != "" || in.Proof == ProofNone) || old != nil && old.Proof == ProofNone {
		return RulesExternal
	}
	return RulesCurrent
}

// Result is what Apply returns for one command.
type Result struct {
	// Index is the Raft index at which the command was applied.
	Index uint64
	// Replaced is the ID of an instance a registration replaced, if any.
	Replaced string
	// Instance is the instance the command named, as the command left it
	// (a registration's new instance, a changed one), as it was when it
	// went (a deregistration, an eviction), or as found when the command
	// was refused for a reason other than its absence; nil when there is
	// none. It is not sent between members: the audit trail reads it
	// where the command was applied.
	Instance *Instance
	Err      error
}
