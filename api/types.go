package api

// Instance statuses. Lookups return only StatusPassing instances unless asked
// otherwise.
const (
	// StatusPassing means the instance heartbeats within its TTL.
	StatusPassing = "passing"
	// StatusCritical means the instance's TTL ran out without a heartbeat.
	StatusCritical = "critical"
	// StatusDraining means the instance asked to stop receiving new work.
	StatusDraining = "draining"
)

// Proof kinds tell a client what a registration proved about an address.
const (
	// ProofAddressPort means the registry's callback reached the advertised
	// address and port, and the instance answered it.
	ProofAddressPort = "address+port"
	// ProofAddress means the callback reached the advertised address on
	// another port (verify_port, e.g. a sidecar's): the instance proved
	// control of the host, not of the exact port it advertises.
	ProofAddress = "address"
	// ProofNone means nothing was proved: the instance registered through
	// the Consul-compatible API with a key whose consul_verify is "none",
	// and its address is taken on the key's word.
	ProofNone = "none"
)

// Default values the server applies when a registration leaves a field out.
const (
	DefaultScheme     = "http"
	DefaultTTL        = "10s"
	DefaultVerifyPath = "/.well-known/muster/verify"
)

// HeaderIndex carries the catalog's Raft index for the answered query.
const HeaderIndex = "X-Muster-Index"

// Headers of every read (lookups, the service list, an instance, the
// event stream): which server answered and how current its replica is.
const (
	// HeaderNode is the answering server's node ID.
	HeaderNode = "X-Muster-Node"
	// HeaderKnownLeader is "true" when the answering server knows a
	// leader now, "false" during an election or a partition.
	HeaderKnownLeader = "X-Muster-Known-Leader"
	// HeaderLastContact is how long ago, in milliseconds, the answering
	// server last heard from its leader: 0 on the leader, -1 never.
	HeaderLastContact = "X-Muster-Last-Contact"
)

// Query parameters of every read that choose its consistency.
const (
	// QueryConsistent makes a read linearizable: the server confirms
	// with the leader that it has applied every acknowledged write.
	QueryConsistent = "consistent"
	// QueryStale lets any server answer from its replica, whatever its
	// lag behind the leader.
	QueryStale = "stale"
)

// RegisterRequest is the body of POST /v1/services/{service}/instances.
type RegisterRequest struct {
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Scheme  string            `json:"scheme,omitempty"`
	Tags    []string          `json:"tags,omitempty"`
	Meta    map[string]string `json:"meta,omitempty"`
	// TTL is a Go duration between 1s and 1h; default 10s.
	TTL string `json:"ttl,omitempty"`
	// DeregisterAfter is how long an instance may go without a heartbeat
	// before it is removed (it turns critical after TTL first); at least
	// the TTL, default 10 × TTL.
	DeregisterAfter string `json:"deregister_after,omitempty"`
	// Checks are active health checks the registry runs against the
	// instance (see CheckDecl); with checks, TTL may be "0s": the
	// instance does not heartbeat, and its checks alone decide its
	// status.
	Checks     []CheckDecl `json:"checks,omitempty"`
	VerifyPath string      `json:"verify_path,omitempty"`
	// VerifyScheme is the scheme of the callback; default Scheme. A sidecar
	// that answers in plain HTTP for an https instance sets "http".
	VerifyScheme string `json:"verify_scheme,omitempty"`
	// VerifyPort, when set and different from Port, is where the callback
	// goes (a sidecar registering a process that cannot answer it). The
	// instance's proof is then ProofAddress instead of ProofAddressPort.
	VerifyPort int `json:"verify_port,omitempty"`
	// Nonce is chosen by the instance and echoed in the callback so that the
	// instance can tie the callback to a registration it started.
	Nonce string `json:"nonce,omitempty"`
}

// VerifyPathPrefix is where every verify_path must live.
const VerifyPathPrefix = "/.well-known/muster/"

// RegisterResponse is the 201 answer to a registration. The session token is
// not in it: it travels only to the advertised address, in the callback.
type RegisterResponse struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	TTL     string `json:"ttl"`
	Index   uint64 `json:"index"`
}

// VerifyRequest is the body the registry POSTs to the instance's verify path.
type VerifyRequest struct {
	Service    string `json:"service"`
	InstanceID string `json:"instance_id"`
	Challenge  string `json:"challenge"`
	Nonce      string `json:"nonce"`
	Token      string `json:"token"`
}

// VerifyResponse is the instance's 200 answer to a VerifyRequest. Proof is
// base64(HMAC-SHA256(enrolment key secret, challenge)). Nonce, when present,
// must equal the request's nonce.
type VerifyResponse struct {
	Proof string `json:"proof"`
	Nonce string `json:"nonce,omitempty"`
}

// HeartbeatResponse answers PUT /v1/instances/{id}/heartbeat.
type HeartbeatResponse struct {
	TTL    string `json:"ttl"`
	Status string `json:"status"`
}

// HeartbeatsRequest is the body of POST /v1/heartbeats: a batch of
// heartbeats, each with its own instance's session token, at most
// MaxBeats.
type HeartbeatsRequest struct {
	Beats []Beat `json:"beats"`
}

// Beat is one heartbeat of a batch.
type Beat struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

// MaxBeats is the most heartbeats one POST /v1/heartbeats may carry.
const MaxBeats = 1000

// HeartbeatsResponse answers POST /v1/heartbeats: one result per beat,
// in the order of the request.
type HeartbeatsResponse struct {
	Results []BeatResult `json:"results"`
}

// BeatResult is the fate of one beat of a batch: what PUT
// /v1/instances/{id}/heartbeat would have answered. TTL and Status when
// the beat was recorded; otherwise Error, with the HTTP status the
// per-instance heartbeat would have answered and, when it asks for a
// wait, its Retry-After in seconds.
type BeatResult struct {
	TTL         string       `json:"ttl,omitempty"`
	Status      string       `json:"status,omitempty"`
	Error       *ErrorDetail `json:"error,omitempty"`
	HTTPStatus  int          `json:"http_status,omitempty"`
	RetryAfterS int          `json:"retry_after_s,omitempty"`
}

// Instance is one registered instance as lookups show it.
type Instance struct {
	ID      string            `json:"id"`
	Service string            `json:"service"`
	Address string            `json:"address"`
	Port    int               `json:"port"`
	Scheme  string            `json:"scheme"`
	URL     string            `json:"url"`
	Tags    []string          `json:"tags"`
	Meta    map[string]string `json:"meta"`
	Status  string            `json:"status"`
	// LastSeenMS is the age of the last heartbeat in milliseconds; -1 when
	// this registry has not heard from the instance since it became leader.
	LastSeenMS int64 `json:"last_seen_ms"`
	TTLMS      int64 `json:"ttl_ms"`
	// Quality in [0,1] is how far the instance's liveness can be trusted;
	// see docs/api.md for the formula.
	Quality      float64 `json:"quality"`
	Proof        string  `json:"proof"`
	RegisteredAt string  `json:"registered_at"`
	// Checks are the states of the instance's active health checks, as
	// the registry last probed them; absent when it declares none.
	Checks []CheckState `json:"checks,omitempty"`
}

// LookupResponse answers GET /v1/services/{service}.
type LookupResponse struct {
	Service string `json:"service"`
	Index   uint64 `json:"index"`
	// Protection is true while the registry's mass-expiry protection
	// holds expiries: too many instances fell silent at once, and those
	// whose TTL ran out since are still shown with their last status.
	// Absent otherwise.
	Protection bool       `json:"protection,omitempty"`
	Instances  []Instance `json:"instances"`
	// Evicted are the service's endpoints an operator evicted, which may
	// not register before their Until; absent when there are none.
	Evicted []Eviction `json:"evicted,omitempty"`
}

// ServiceSummary is one row of GET /v1/services.
type ServiceSummary struct {
	Name      string `json:"name"`
	Index     uint64 `json:"index"`
	Instances int    `json:"instances"`
	Passing   int    `json:"passing"`
	Critical  int    `json:"critical"`
	Draining  int    `json:"draining"`
}

// ServicesResponse answers GET /v1/services.
type ServicesResponse struct {
	Index uint64 `json:"index"`
	// Protection is true while mass-expiry protection holds expiries (as
	// in LookupResponse); it concerns the whole catalog, so it is here
	// rather than in each ServiceSummary. Absent otherwise.
	Protection bool             `json:"protection,omitempty"`
	Services   []ServiceSummary `json:"services"`
}

// CreateKeyRequest is the body of POST /v1/keys.
type CreateKeyRequest struct {
	// Services are name patterns; "*" matches any run of characters.
	Services []string `json:"services"`
	// Description is a free-form note shown in listings.
	Description string `json:"description,omitempty"`
	// MaxInstances caps the instances registered with the key at once;
	// 0 or absent means the server's default (--max-instances-per-key).
	MaxInstances int `json:"max_instances,omitempty"`
	// CallbackTLS is how the certificate of an https verification
	// callback is checked for the key's registrations: "verify" (the
	// default: against the registry's CA bundle, --verify-ca) or "any"
	// (accepted whatever it is, for instances with self-signed
	// certificates; the proof still binds the answer to the key).
	CallbackTLS string `json:"callback_tls,omitempty"`
	// ConsulVerify is whether registrations with the key through the
	// Consul-compatible API (muster server --consul-addr) must pass the
	// address callback: "callback" (the default) or "none" (the address
	// is taken on the key's word, and the instance's proof is "none").
	ConsulVerify string `json:"consul_verify,omitempty"`
}

// Key is an enrolment key as listings show it, without its secret.
type Key struct {
	ID          string   `json:"id"`
	Services    []string `json:"services"`
	Description string   `json:"description,omitempty"`
	// MaxInstances is the key's limit of instances at once, the server's
	// default when the key was created without one.
	MaxInstances int `json:"max_instances"`
	// Instances is how many instances are registered with the key now.
	Instances int    `json:"instances"`
	CreatedAt string `json:"created_at"`
	// CallbackTLS is "any" for a key whose https callbacks accept any
	// certificate; absent for the default, "verify".
	CallbackTLS string `json:"callback_tls,omitempty"`
	// ConsulVerify is "none" for a key whose registrations through the
	// Consul-compatible API skip the address callback; absent for the
	// default, "callback".
	ConsulVerify string `json:"consul_verify,omitempty"`
	// Role is what the token's holder may do: register (an enrolment
	// key), read, operator or admin.
	Role string `json:"role"`
	// ExpiresAt is when the token stops authorising anything (RFC
	// 3339); absent for one that lasts until it is revoked.
	ExpiresAt string `json:"expires_at,omitempty"`
	// Expired is set once ExpiresAt has passed, by the server's clock.
	Expired bool `json:"expired,omitempty"`
	// Secret is set only in the answer to POST /v1/keys and POST
	// /v1/tokens.
	Secret string `json:"secret,omitempty"`
}

// Token is a token of any role as listings show it; an enrolment key is
// a token of role register.
type Token = Key

// CreateTokenRequest is the body of POST /v1/tokens.
type CreateTokenRequest struct {
	// Role is register, read, operator or admin.
	Role string `json:"role"`
	// Services are name patterns, as for keys; for the admin role only
	// "*", which is also its default.
	Services    []string `json:"services,omitempty"`
	Description string   `json:"description,omitempty"`
	// TTL, when set, is how long the token lasts, a Go duration from 1m
	// to 87600h (such as "24h"); absent, until it is revoked.
	TTL string `json:"ttl,omitempty"`
	// MaxInstances, CallbackTLS and ConsulVerify are for the register
	// role only, as in CreateKeyRequest.
	MaxInstances int    `json:"max_instances,omitempty"`
	CallbackTLS  string `json:"callback_tls,omitempty"`
	ConsulVerify string `json:"consul_verify,omitempty"`
}

// TokensResponse answers GET /v1/tokens.
type TokensResponse struct {
	Tokens []Token `json:"tokens"`
}

// EvictRequest is the body of POST /v1/instances/{id}/evict.
type EvictRequest struct {
	// For is how long the instance's endpoint may not register again, a
	// Go duration from 1s to 720h.
	For string `json:"for"`
	// Reason is a note for the audit trail and the refusals, at most 256
	// printable characters.
	Reason string `json:"reason,omitempty"`
}

// Eviction answers POST /v1/instances/{id}/evict.
type Eviction struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	// Until is when the endpoint may register again (RFC 3339).
	Until  string `json:"until"`
	Reason string `json:"reason,omitempty"`
	Index  uint64 `json:"index"`
}

// KeysResponse answers GET /v1/keys.
type KeysResponse struct {
	Keys []Key `json:"keys"`
}

// Health answers /livez and /readyz.
type Health struct {
	Status string `json:"status"`
	Leader string `json:"leader,omitempty"`
	Index  uint64 `json:"index,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Degraded names what is impaired while the node still serves reads
	// ("disk": writes are refused until space is freed); /readyz then
	// answers 200 with status "degraded".
	Degraded string `json:"degraded,omitempty"`
	// Protection is true while mass-expiry protection holds expiries;
	// the node is still ready. Absent otherwise.
	Protection bool `json:"protection,omitempty"`
	// ProtectionActivations counts the times mass-expiry protection
	// turned on since the process started; absent while 0.
	ProtectionActivations uint64 `json:"protection_activations,omitempty"`
	// ProtectionCooldownUntil is, after a hold, the time (RFC 3339)
	// before which no new hold may begin: a mass silence until then
	// expires on time. Absent when no cooldown runs.
	ProtectionCooldownUntil string `json:"protection_cooldown_until,omitempty"`
}
