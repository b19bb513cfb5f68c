package registry

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
)

// ErrTokenExpired means the caller's token has passed its expiry: it
// authorises nothing until it is replaced (ExpiredError carries when).
var ErrTokenExpired = errors.New("registry: token expired")

// ErrOutOfScope means the caller's token is of a role that may do this,
// but its service patterns do not cover the service.
var ErrOutOfScope = errors.New("registry: token's services do not cover this service")

// ExpiredError is ErrTokenExpired with the token's ID and expiry.
type ExpiredError struct {
	ID string
	At time.Time
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("token %s expired at %s", e.ID, e.At.UTC().Format(time.RFC3339))
}
func (e *ExpiredError) Unwrap() error { return ErrTokenExpired }

// ScopeError is ErrOutOfScope with the service the token does not cover.
type ScopeError struct{ Service string }

func (e *ScopeError) Error() string {
	return fmt.Sprintf("this token's services do not cover %q", e.Service)
}
func (e *ScopeError) Unwrap() error { return ErrOutOfScope }

// RoleError means a token of another role was used to register: only
// an enrolment key (the register role) registers instances.
type RoleError struct{ Role catalog.Role }

func (e *RoleError) Error() string {
	return fmt.Sprintf("this token's role is %s; registering needs an enrolment key (a token of role register)", e.Role)
}
func (e *RoleError) Unwrap() error { return catalog.ErrKeyScope }

// Caller is who a request's bearer token says its sender is: nobody (no
// token), the holder of the admin token, or the holder of a token (an
// enrolment key or a token of another role). A session token is not a
// Caller: it proves only that its holder is one instance, and the
// instance's own routes check it (see owned).
type Caller struct {
	admin bool         // the admin token, or a token of the admin role
	key   *catalog.Key // the token; nil for the admin token and for none
}

// Anonymous reports whether the request carried no credential.
func (c Caller) Anonymous() bool { return !c.admin && c.key == nil }

// KeyID is the ID of the caller's token, "" for the admin token or none:
// what the audit trail records as who did it.
func (c Caller) KeyID() string {
	if c.key == nil {
		return ""
	}
	return c.key.ID
}

// Role is the caller's role: RoleAdmin for the admin token, the token's
// role, or "" for no token.
func (c Caller) Role() catalog.Role {
	switch {
	case c.key != nil:
		return c.key.RoleOrDefault()
	case c.admin:
		return catalog.RoleAdmin
	}
	return ""
}

// covers reports whether the caller's scope holds the service: always
// for the admin token and the admin role.
func (c Caller) covers(service string) bool {
	return c.admin || (c.key != nil && c.key.Allows(service))
}

// canRead reports whether the caller may read the service when reads
// need a credential: any role may read the services its patterns cover
// (an enrolment key reads what it registers, an operator what it
// drains).
func (c Caller) canRead(service string) bool { return c.covers(service) }

// canOperate reports whether the caller may drain, deregister and evict
// any instance of the service: the admin token, the admin role, or the
// operator role within its scope.
func (c Caller) canOperate(service string) bool {
	if c.admin {
		return true
	}
	return c.key != nil && c.key.RoleOrDefault() == catalog.RoleOperator && c.key.Allows(service)
}

// CanOperate reports whether the caller may drain, deregister and evict
// any instance of the service (what the registry checks when it does).
func (c Caller) CanOperate(service string) bool { return c.canOperate(service) }

// Authenticate returns who token says its holder is: the zero Caller for
// "", the admin token's holder, or a token's. Errors: ErrWrongToken for
// a token the registry does not know (revoked, or never issued: a
// session token is not one), an *ExpiredError for an expired one,
// ErrUnavailable when a follower that does not hold the token cannot ask
// the leader whether it exists.
//
// Tokens are found by the SHA-256 of the secret, as keys always were: a
// map lookup by hash, whose timing tells nothing about the secret; the
// admin token is compared in constant time (isAdmin).
func (r *Registry) Authenticate(token string) (Caller, error) {
	if token == "" {
		return Caller{}, nil
	}
	if r.isAdmin(token) {
		return Caller{admin: true}, nil
	}
	h := catalog.HashSecret(token)
	k, ok := r.cat.KeyBySecretHash(h)
	if !ok { // perhaps a token created through another server
		again, err := r.catchUp()
		if err != nil {
			return Caller{}, err
		}
		if again {
			k, ok = r.cat.KeyBySecretHash(h)
		}
	}
	if !ok || subtle.ConstantTimeCompare(k.SecretHash, h) != 1 {
		return Caller{}, ErrWrongToken
	}
	if k.Expired(r.now()) {
		return Caller{}, &ExpiredError{ID: k.ID, At: k.ExpiresAt}
	}
	return Caller{admin: k.RoleOrDefault() == catalog.RoleAdmin, key: k}, nil
}

// AnonymousReads reports whether reads need no credential (the default;
// Config.PrivateReads turns it off).
func (r *Registry) AnonymousReads() bool { return !r.cfg.PrivateReads }

// ReadScope is what a caller may read: everything, or the services its
// token's patterns cover.
type ReadScope struct {
	all    bool
	caller Caller
}

// Covers reports whether the scope holds the service.
func (s ReadScope) Covers(service string) bool { return s.all || s.caller.canRead(service) }

// All reports whether the scope holds every service.
func (s ReadScope) All() bool { return s.all || s.caller.admin }

// Filter is Covers as a function, or nil when the scope holds every
// service.
func (s ReadScope) Filter() func(service string) bool {
	if s.All() {
		return nil
	}
	return s.Covers
}

// Recheck returns nil while the caller of s may still read: with
// anonymous reads, or the admin token, always; with a token, until it is
// revoked (ErrWrongToken) or expires (an *ExpiredError). A stream and a
// blocking query opened with a token ask it again before each answer, so
// that a revocation or an expiry ends what was opened before it.
func (r *Registry) Recheck(s ReadScope) error {
	if s.all || s.caller.key == nil {
		return nil
	}
	k, ok := r.cat.Key(s.caller.key.ID)
	switch {
	case !ok:
		return ErrWrongToken
	case k.Expired(r.now()):
		return &ExpiredError{ID: k.ID, At: k.ExpiresAt}
	}
	return nil
}

// Reader returns what the holder of token may read. With anonymous
// reads (the default) that is everything, whatever the token: a
// credential a read does not need is not looked at. Otherwise the token
// must be one the registry knows, of any role: ErrNoCredential without
// one, ErrWrongToken or an *ExpiredError for a bad one (each a record
// of the refused read).
func (r *Registry) Reader(ctx context.Context, token string) (ReadScope, error) {
	if !r.cfg.PrivateReads {
		return ReadScope{all: true}, nil
	}
	c, err := r.Authenticate(token)
	if err == nil && c.Anonymous() {
		err = ErrNoCredential
	}
	if err != nil {
		r.record(ctx, audit.Record{Action: audit.ActionRead}, err)
		return ReadScope{}, err
	}
	return ReadScope{caller: c}, nil
}

// CheckRead returns nil if the scope holds the service, and an
// *ScopeError (recorded) otherwise.
func (r *Registry) CheckRead(ctx context.Context, s ReadScope, service string) error {
	if s.Covers(service) {
		return nil
	}
	err := &ScopeError{Service: service}
	r.record(ctx, audit.Record{Action: audit.ActionRead, Service: service, Key: s.caller.KeyID()}, err)
	return err
}

// Admin returns nil if token may do an admin operation: the admin token
// or a token of the admin role. Errors: ErrNoCredential, ErrWrongToken
// (any other token, known or not), an *ExpiredError. A refusal is
// recorded under action.
func (r *Registry) Admin(ctx context.Context, action audit.Action, token string) error {
	_, err := r.admin(ctx, action, token)
	return err
}

// admin is Admin, returning the caller.
func (r *Registry) admin(ctx context.Context, action audit.Action, token string) (Caller, error) {
	return r.authorise(ctx, action, token, func(c Caller) bool { return c.admin })
}

// operator returns the caller if token may operate on instances: the
// admin token, the admin role or the operator role (whose scope each
// instance is then checked against, with canOperate). Errors as admin's.
func (r *Registry) operator(ctx context.Context, action audit.Action, token string) (Caller, error) {
	return r.authorise(ctx, action, token, func(c Caller) bool {
		return c.admin || c.key.RoleOrDefault() == catalog.RoleOperator
	})
}

// authorise is check, with a refusal recorded under action.
func (r *Registry) authorise(ctx context.Context, action audit.Action, token string, allowed func(Caller) bool) (Caller, error) {
	c, err := r.check(token, allowed)
	if err != nil {
		r.record(ctx, audit.Record{Action: action, Key: c.KeyID()}, err)
	}
	return c, err
}

// check authenticates token and returns its caller if allowed says so:
// ErrNoCredential without a token, ErrWrongToken for one that is unknown
// or not allowed, an *ExpiredError, ErrUnavailable.
func (r *Registry) check(token string, allowed func(Caller) bool) (Caller, error) {
	c, err := r.Authenticate(token)
	switch {
	case err != nil && !errors.Is(err, ErrTokenExpired) && !errors.Is(err, ErrUnavailable):
		err = ErrWrongToken
	case err == nil && c.Anonymous():
		err = ErrNoCredential
	case err == nil && !allowed(c):
		err = ErrWrongToken
	}
	return c, err
}

// Operator returns nil if token may operate on instances (the admin
// token, the admin role, or the operator role, whose scope each
// instance is then checked against): front ends check with it before
// they read a request's body. A refusal is recorded under action.
func (r *Registry) Operator(ctx context.Context, action audit.Action, token string) error {
	_, err := r.operator(ctx, action, token)
	return err
}
