package registry

import (
	"context"
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
	if len(k.Description) > maxDescriptionLen {
		return badField("description", "at most %d bytes", maxDescriptionLen)
	}
	if k.MaxInstances < 0 || k.MaxInstances > MaxKeyInstances {
		return badField("max_instances", "max_instances must be between 1 and %d, or 0 for the server's default", MaxKeyInstances)
	}
	if _, err := catalog.ParseCallbackTLS(k.CallbackTLS); err != nil && k.CallbackTLS != "" {
		return badField("callback_tls", "callback_tls must be verify or any")
	}
	return nil
}

// CreateKey creates an enrolment key for the holder of the admin token and
// returns it with its secret, which is shown this once and stored only as
// a hash. Errors: ErrNoCredential, ErrWrongToken, a *FieldError,
// ErrUnavailable.
func (r *Registry) CreateKey(ctx context.Context, token string, spec KeySpec) (*catalog.Key, string, error) {
	if err := r.Admin(ctx, audit.ActionKeyCreate, token); err != nil {
		return nil, "", err
	}
	if err := spec.Validate(); err != nil {
		r.record(ctx, audit.Record{Action: audit.ActionKeyCreate}, err)
		return nil, "", err
	}
	secret := "mk_" + random.Secret()
	k := &catalog.Key{
		ID:           "key_" + random.ID(8),
		SecretHash:   catalog.HashSecret(secret),
		Services:     spec.Services,
		Description:  r.scrub(spec.Description),
		MaxInstances: spec.MaxInstances,
		CreatedAt:    r.now().UTC().Truncate(time.Second),
	}
	op := catalog.OpCreateKey
	if mode, _ := catalog.ParseCallbackTLS(spec.CallbackTLS); mode == catalog.CallbackTLSAny {
		// A field create_key cannot carry: a token of the register role
		// (an older replica halts at create_token rather than drop it).
		k.Role, k.CallbackTLS, op = catalog.RoleRegister, mode, catalog.OpCreateToken
	}
	if _, err := r.commit(ctx, catalog.Command{Op: op, Key: k, Reason: "api"}); err != nil {
		return nil, "", err
	}
	r.log.Info("enrolment key created", "key_id", k.ID, "services", k.Services)
	if stored, ok := r.cat.Key(k.ID); ok {
		k = stored // with its CreateIndex, and not sharing spec's slice
	}
	return k, secret, nil
}

// Keys lists the enrolment keys, sorted by ID, for the holder of the admin
// token. Errors: ErrNoCredential, ErrWrongToken, ErrNotReady. Each call
// is a record.
func (r *Registry) Keys(ctx context.Context, token string) ([]*catalog.Key, error) {
	if err := r.Admin(ctx, audit.ActionKeyList, token); err != nil {
		return nil, err
	}
	err := r.Ready()
	r.record(ctx, audit.Record{Action: audit.ActionKeyList}, err)
	if err != nil {
		return nil, err
	}
	return r.cat.Keys(), nil
}

// RevokeKey revokes an enrolment key for the holder of the admin token.
// Instances it admitted stay; no new registration can use it, even one
// whose callback was running when it was revoked. Errors: ErrNoCredential,
// ErrWrongToken, catalog.ErrNotFound, ErrUnavailable.
func (r *Registry) RevokeKey(ctx context.Context, token, id string) error {
	if err := r.Admin(ctx, audit.ActionKeyRevoke, token); err != nil {
		return err
	}
	if !catalog.ValidID(id) || !strings.HasPrefix(id, "key_") {
		// No key has such an ID (every key's is key_ and hex), so
		// nothing is proposed, and the ID asked for is not recorded: an
		// operator who passes a key's secret (or the admin token) for
		// its ID must not find it in the audit trail, the Raft log and
		// every server's disk, as an outside review did.
		r.record(ctx, audit.Record{Action: audit.ActionKeyRevoke, Reason: "not an enrolment key's ID"}, catalog.ErrNotFound)
		return catalog.ErrNotFound
	}
	if _, err := r.commit(ctx, catalog.Command{Op: catalog.OpRevokeKey, ID: id, Reason: "api"}); err != nil {
		return err
	}
	r.log.Info("enrolment key revoked", "key_id", id)
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
