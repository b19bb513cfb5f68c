package registry

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/random"
)

// Limits of an enrolment key.
const (
	maxKeyPatterns    = 32
	maxDescriptionLen = 256
)

// KeySpec is what an admin asks for when creating an enrolment key.
type KeySpec struct {
	// Services are name patterns; "*" matches any run of name characters.
	Services []string
	// Description is a free-form note shown in listings.
	Description string
	// MaxInstances caps the instances registered with the key at once,
	// 1 to MaxKeyInstances; 0 means Config.MaxInstancesPerKey.
	MaxInstances int
	// CallbackTLS is how the certificate of an https verification
	// callback of the key's registrations is checked: "" or "verify"
	// (against the registry's CA bundle), or "any" (accepted whatever it
	// is, for instances with self-signed certificates; the proof still
	// binds the answer to the key).
	CallbackTLS string
	// ConsulVerify is whether registrations through the Consul-compatible
	// API must pass the address callback: "" or "callback", or "none".
	ConsulVerify string
}

// MaxKeyInstances is the highest limit of instances a key may have.
const MaxKeyInstances = 1_000_000

// Validate checks a key spec; every error is a *FieldError.
func (k KeySpec) Validate() error {
	if len(k.Services) == 0 {
		return badField("services", "at least one service name pattern is required")
	}
	if len(k.Services) > maxKeyPatterns {
		return badField("services", "at most %d patterns", maxKeyPatterns)
	}
	for _, p := range k.Services {
		if !catalog.ValidPattern(p) {
			return badField("services", "pattern %q: 1 to 63 of a-z 0-9 - _ and *", p)
		}
	}
	if len(k.Description) > maxDescriptionLen || !catalog.Displayable(k.Description) {
		return badField("description", "at most %d bytes of printable characters", maxDescriptionLen)
	}
	if k.MaxInstances < 0 || k.MaxInstances > MaxKeyInstances {
		return badField("max_instances", "max_instances must be between 1 and %d, or 0 for the server's default", MaxKeyInstances)
	}
	if _, err := catalog.ParseCallbackTLS(k.CallbackTLS); err != nil && k.CallbackTLS != "" {
		return badField("callback_tls", "callback_tls must be verify or any")
	}
	if _, err := catalog.ParseConsulVerify(k.ConsulVerify); err != nil {
		return badField("consul_verify", "consul_verify must be callback or none")
	}
	return nil
}

// DefaultMaxTokens is the most tokens of every role, keys among them, a
// registry holds unless Config.MaxTokens says otherwise: each is listed
// whole, and one held for ever costs memory on every server.
const DefaultMaxTokens = 10_000

// Bounds of a token's lifetime (TokenSpec.TTL).
const (
	MinTokenTTL = time.Minute
	MaxTokenTTL = 10 * 365 * 24 * time.Hour
)

// TokenSpec is what an admin asks for when creating a token of any role.
type TokenSpec struct {
	// Role is what the token's holder may do: register, read, operator
	// or admin.
	Role string
	// KeySpec holds the token's service patterns (for the admin role,
	// only "*", which is also its default), description and, for the
	// register role only, its limit of instances and callback TLS mode.
	KeySpec
	// TTL, when positive, is how long the token lasts, MinTokenTTL to
	// MaxTokenTTL; 0 means until it is revoked.
	TTL time.Duration
}

// Validate checks a token spec; every error is a *FieldError.
func (t *TokenSpec) Validate() error {
	role, err := catalog.ParseRole(t.Role)
	if err != nil {
		return badField("role", "role must be register, read, operator or admin")
	}
	if role == catalog.RoleAdmin {
		if len(t.Services) == 0 {
			t.Services = []string{"*"}
		}
		if len(t.Services) != 1 || t.Services[0] != "*" {
			return badField("services", "an admin token may do everything, so its services are only \"*\"")
		}
	}
	if role != catalog.RoleRegister {
		if t.MaxInstances != 0 {
			return badField("max_instances", "max_instances is for tokens of role register, which register instances")
		}
		if t.CallbackTLS != "" {
			return badField("callback_tls", "callback_tls is for tokens of role register, which register instances")
		}
		if t.ConsulVerify != "" {
			return badField("consul_verify", "consul_verify is for tokens of role register, which register instances")
		}
	}
	if t.TTL != 0 && (t.TTL < MinTokenTTL || t.TTL > MaxTokenTTL) {
		return badField("ttl", "ttl must be from %s to %s, or absent for a token that lasts until it is revoked", MinTokenTTL, MaxTokenTTL)
	}
	return t.KeySpec.Validate()
}

// CreateKey creates an enrolment key (a token of the register role) for
// the holder of an admin credential and returns it with its secret,
// which is shown this once and stored only as a hash. Errors:
// ErrNoCredential, ErrWrongToken, a *FieldError, ErrUnavailable.
func (r *Registry) CreateKey(ctx context.Context, token string, spec KeySpec) (*catalog.Key, string, error) {
	return r.CreateToken(ctx, token, TokenSpec{Role: string(catalog.RoleRegister), KeySpec: spec})
}

// CreateToken creates a token of any role for the holder of an admin
// credential, as CreateKey does an enrolment key. An enrolment key's ID
// begins key_ and its secret mk_; other roles' tok_ and mt_.
func (r *Registry) CreateToken(ctx context.Context, token string, spec TokenSpec) (*catalog.Key, string, error) {
	caller, err := r.admin(ctx, audit.ActionKeyCreate, token)
	if err != nil {
		return nil, "", err
	}
	ctx = asCaller(ctx, caller)
	if err := spec.Validate(); err != nil {
		r.record(ctx, audit.Record{Action: audit.ActionKeyCreate, Key: caller.KeyID()}, err)
		return nil, "", err
	}
	if n := r.cat.KeyCount(); n >= cmp.Or(r.cfg.MaxTokens, DefaultMaxTokens) {
		err := &QuotaError{Message: fmt.Sprintf("the registry holds %d tokens and keys, its most; revoke some first", n)}
		r.record(ctx, audit.Record{Action: audit.ActionKeyCreate, Key: caller.KeyID()}, err)
		return nil, "", err
	}
	role := catalog.Role(spec.Role)
	idPrefix, secretPrefix := "tok_", "mt_"
	if role == catalog.RoleRegister {
		idPrefix, secretPrefix = "key_", "mk_"
	}
	secret := secretPrefix + random.Secret()
	now := r.now().UTC().Truncate(time.Second)
	k := &catalog.Key{
		ID:           idPrefix + random.ID(8),
		SecretHash:   catalog.HashSecret(secret),
		Services:     spec.Services,
		Description:  r.scrub(spec.Description),
		MaxInstances: spec.MaxInstances,
		CreatedAt:    now,
	}
	mode, _ := catalog.ParseCallbackTLS(spec.CallbackTLS)
	consul, _ := catalog.ParseConsulVerify(spec.ConsulVerify)
	op, rules := catalog.OpCreateKey, catalog.RulesCurrent
	if role != catalog.RoleRegister || mode == catalog.CallbackTLSAny || spec.TTL > 0 || consul == catalog.ConsulVerifyNone {
		// Fields create_key cannot carry: an older replica halts at
		// create_token rather than take the token for an enrolment key
		// that never expires. A plain enrolment key stays create_key,
		// which every version reads.
		k.Role, op = role, catalog.OpCreateToken
		if mode == catalog.CallbackTLSAny {
			k.CallbackTLS = mode
		}
		if spec.TTL > 0 {
			k.ExpiresAt = now.Add(spec.TTL.Round(time.Second))
		}
		if consul == catalog.ConsulVerifyNone {
			// Rules 5: a replica that predates the field halts rather
			// than keep a key that calls back where this one does not.
			k.ConsulVerify, rules = consul, catalog.RulesExternal
		}
	}
	if _, err := r.commit(ctx, catalog.Command{Op: op, Key: k, Reason: "api", Rules: rules}); err != nil {
		return nil, "", err
	}
	r.log.Info("token created", "key_id", k.ID, "role", role, "services", k.Services, "expires_at", k.ExpiresAt)
	if stored, ok := r.cat.Key(k.ID); ok {
		k = stored // with its CreateIndex, and not sharing spec's slice
	}
	return k, secret, nil
}

// Keys lists the enrolment keys (the tokens of the register role),
// sorted by ID, for the holder of an admin credential. Errors:
// ErrNoCredential, ErrWrongToken, ErrNotReady. Each call is a record.
func (r *Registry) Keys(ctx context.Context, token string) ([]*catalog.Key, error) {
	all, err := r.Tokens(ctx, token)
	if err != nil {
		return nil, err
	}
	keys := all[:0:0]
	for _, k := range all {
		if k.RoleOrDefault() == catalog.RoleRegister {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// Tokens lists every token of every role, sorted by ID, for the holder
// of an admin credential; errors as Keys'.
func (r *Registry) Tokens(ctx context.Context, token string) ([]*catalog.Key, error) {
	caller, err := r.admin(ctx, audit.ActionKeyList, token)
	if err != nil {
		return nil, err
	}
	err = r.Ready()
	r.record(ctx, audit.Record{Action: audit.ActionKeyList, Key: caller.KeyID()}, err)
	if err != nil {
		return nil, err
	}
	return r.cat.Keys(), nil
}

// RevokeKey revokes an enrolment key for the holder of an admin
// credential. Instances it admitted stay; no new registration can use
// it, even one whose callback was running when it was revoked. Errors:
// ErrNoCredential, ErrWrongToken, catalog.ErrNotFound (also for a token
// of another role: RevokeToken revokes those), ErrUnavailable.
func (r *Registry) RevokeKey(ctx context.Context, token, id string) error {
	return r.revoke(ctx, token, id, "key_")
}

// RevokeToken revokes a token of any role, as RevokeKey does a key; it
// authorises nothing from the moment the revocation is applied.
func (r *Registry) RevokeToken(ctx context.Context, token, id string) error {
	return r.revoke(ctx, token, id, "key_", "tok_")
}

func (r *Registry) revoke(ctx context.Context, token, id string, prefixes ...string) error {
	caller, err := r.admin(ctx, audit.ActionKeyRevoke, token)
	if err != nil {
		return err
	}
	ctx = asCaller(ctx, caller)
	if !catalog.ValidID(id) || !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(id, p) }) {
		// No such key has such an ID (every one's is a prefix and hex),
		// so nothing is proposed, and the ID asked for is not recorded:
		// an operator who passes a key's secret (or the admin token)
		// for its ID must not find it in the audit trail, the Raft log
		// and every server's disk, as an outside review did.
		r.record(ctx, audit.Record{Action: audit.ActionKeyRevoke, Key: caller.KeyID(), Reason: "not a token's ID"}, catalog.ErrNotFound)
		return catalog.ErrNotFound
	}
	if _, err := r.commit(ctx, catalog.Command{Op: catalog.OpRevokeKey, ID: id, Reason: "api"}); err != nil {
		return err
	}
	r.log.Info("token revoked", "key_id", id)
	return nil
}

// KeyUsage returns the limit of instances of key k (its own, or the
// default) and how many it holds now.
func (r *Registry) KeyUsage(k *catalog.Key) (limit, held int) {
	limit = k.MaxInstances
	if limit == 0 {
		limit = r.cfg.MaxInstancesPerKey
	}
	held, _, _ = r.cat.Held(k.ID, "")
	return limit, held
}

// Snapshot returns a point-in-time copy of the whole catalog (a backup),
// for the holder of the admin token: it holds the hashes of every secret
// and token. Errors: ErrNoCredential, ErrWrongToken, ErrNotReady.
func (r *Registry) Snapshot(ctx context.Context, token string) (*catalog.Snapshot, uint64, error) {
	if err := r.Admin(ctx, audit.ActionSnapshotSave, token); err != nil {
		return nil, 0, err
	}
	if err := r.Ready(); err != nil {
		r.record(ctx, audit.Record{Action: audit.ActionSnapshotSave}, err)
		return nil, 0, err
	}
	s := r.cat.Snapshot()
	r.record(ctx, audit.Record{Action: audit.ActionSnapshotSave, Index: s.Index()}, nil)
	return s, s.Index(), nil
}
