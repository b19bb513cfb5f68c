package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
)

// External registrations are those of front ends whose clients name an
// instance by an ID of their own choosing, and call again with their
// enrolment key rather than a session token: the Consul-compatible API.
// The key that registered an external ID, and only that key, may
// heartbeat the instance, mark it critical and deregister it, by that
// ID; another key's call finds nothing, as if the ID did not exist.

// RegisterExternal registers req for the holder of adm's key under the
// external ID it chose (catalog.ValidExternalID), replacing the key's
// instance of that ID if there is one. Whether the address is called
// back is the key's policy (catalog.Key.ConsulVerify); without the
// callback the address is still resolved, held to the allowlist and the
// limits, and the instance's proof is "none". It starts passing only if
// passing is set (Consul's checks start critical until their first
// pass). Errors: as Register, and a *FieldError for the field "ID".
func (r *Registry) RegisterExternal(ctx context.Context, adm Admission, req api.RegisterRequest, externalID string, passing bool) (Registered, error) {
	if !catalog.ValidExternalID(externalID) {
		err := badField("ID", "the service ID %.64q must be 1 to %d of A-Z a-z 0-9 - _ . : @", externalID, catalog.MaxExternalIDLen)
		r.record(ctx, audit.Record{Action: audit.ActionRegister, Service: adm.service, Key: adm.KeyID()}, err)
		return Registered{}, err
	}
	as := registerAs{reason: "consul", externalID: externalID, status: catalog.StatusCritical}
	if passing {
		as.status = catalog.StatusPassing
	}
	if adm.key != nil {
		as.callback = adm.key.ConsulVerifyOrDefault() == catalog.ConsulVerifyCallback
	}
	if !as.callback && len(req.Checks) > 0 {
		// The registry probes only addresses a callback proved: probes of
		// an address taken on a key's word would let the key aim them at
		// any port of any allowed host, and read the answers.
		err := badField("Check", "a key whose consul_verify is none registers TTL checks only: muster probes only addresses a callback "+
			"proved (use a key of the default policy, callback, for HTTP, TCP and gRPC checks)")
		r.record(ctx, audit.Record{Action: audit.ActionRegister, Service: adm.service, Key: adm.KeyID()}, err)
		return Registered{}, err
	}
	return r.register(ctx, adm, req, as)
}

// CheckBeatKey checks, before a front end reads the body of a call on an
// instance named by its external ID, that secret is an enrolment key
// (external's checks before the instance is looked for). Errors, each a
// record of a refused heartbeat: as external's.
func (r *Registry) CheckBeatKey(ctx context.Context, secret string) error {
	_, _, err := r.external(ctx, audit.ActionHeartbeat, secret, "", nil)
	return err
}

// RefuseRegistration records the refusal of a registration whose key
// was admitted, for a front end that refuses it before Register: a
// request it cannot read as muster's.
func (r *Registry) RefuseRegistration(ctx context.Context, adm Admission, err error) {
	r.record(ctx, audit.Record{Action: audit.ActionRegister, Service: adm.service, Key: adm.KeyID()}, err)
}

// ExternalRef names an instance by the external ID its registrant chose.
// Check, when above 0, says the name was of the instance's Check-th
// check (Consul's service:<id>:<n>), which it must have among two or
// more: a name of a check the instance does not have finds nothing.
type ExternalRef struct {
	ID    string
	Check int
}

// ExternalIDElsewhereError refuses a registration under an external ID
// that the key already uses, at the same address, for another service:
// moving an instance between services in one command would leave the old
// service's watchers and event streams unaware that it went.
type ExternalIDElsewhereError struct {
	ID, Service string
}

func (e *ExternalIDElsewhereError) Error() string {
	return fmt.Sprintf("registry: the service ID %q is registered at this address as service %q", e.ID, e.Service)
}

// ErrAmbiguousID means an external ID names instances of the caller's
// key at several addresses (replicas on several hosts sharing a service
// ID, as Consul allows, one per agent), and the call came from none of
// them: it cannot tell which is meant.
var ErrAmbiguousID = errors.New("registry: the service ID names instances of this key at several addresses, and the call came from none of them")

// external resolves the instance that the enrolment key of secret
// registered under the first of refs that names one (a caller whose name
// of an instance is ambiguous gives each reading, the most likely
// first). An ID the key registered at several addresses names the one at
// from, the address the call came from (a Consul client calls its own
// agent, on its own host); from none of them, it is ErrAmbiguousID.
// Errors, each a record of action:
// ErrNotReady, ErrNoCredential, ErrWrongToken (no such key, or a token of
// another role), an *ExpiredError, ErrUnavailable, ErrInstanceNotFound
// (no instance of this key has the ID).
func (r *Registry) external(ctx context.Context, action audit.Action, secret, from string, refs []ExternalRef) (inst *catalog.Instance, c Caller, err error) {
	defer func() {
		if err != nil {
			rec := audit.Record{Action: action, Key: c.KeyID()}
			if inst != nil {
				rec.Service, rec.Instance = inst.Service, inst.ID
			}
			r.record(ctx, rec, err)
		}
	}()
	if err := r.Ready(); err != nil {
		return nil, c, err
	}
	if secret == "" {
		return nil, c, ErrNoCredential
	}
	c, err = r.Authenticate(secret)
	if err != nil {
		return nil, c, err
	}
	if c.key == nil || c.key.RoleOrDefault() != catalog.RoleRegister {
		// The admin token and other roles name instances by muster's
		// IDs, through /v1: an external ID is a key's own name.
		return nil, c, ErrWrongToken
	}
	if refs == nil {
		return nil, c, nil // the key alone (CheckBeatKey)
	}
	fits := func(inst *catalog.Instance, ref ExternalRef) bool {
		return ref.Check == 0 || checkCount(inst) >= max(2, ref.Check)
	}
	find := func() (*catalog.Instance, error) {
		for _, ref := range refs {
			// Most calls come from the instance's own address: found
			// there, it is the one meant, whatever else shares the ID.
			if inst, ok := r.cat.InstanceByExternal(c.key.ID, ref.ID, from); ok && fits(inst, ref) {
				return inst, nil
			}
			var named []*catalog.Instance
			for _, inst := range r.cat.InstancesByExternal(c.key.ID, ref.ID) {
				if fits(inst, ref) {
					named = append(named, inst)
				}
			}
			switch {
			case len(named) == 1:
				return named[0], nil
			case len(named) > 1:
				for _, inst := range named {
					if inst.Address == from || inst.HostIP == from {
						return inst, nil
					}
				}
				return nil, ErrAmbiguousID
			}
		}
		return nil, ErrInstanceNotFound
	}
	inst, err = find()
	if errors.Is(err, ErrInstanceNotFound) { // perhaps registered through another server
		again, cerr := r.catchUp()
		if cerr != nil {
			return nil, c, cerr
		}
		if again {
			inst, err = find()
		}
	}
	if err != nil {
		return nil, c, err
	}
	return inst, c, nil
}

// ExternalBeat is a heartbeat of the key's instance named by refs (see external), as
// Heartbeat is of an instance with its session token: it returns the
// instance's status after the beat (a critical instance is brought back
// to passing, unless its checks hold it down or its key is out of write
// budget). Errors: as external, then ErrUnavailable.
func (r *Registry) ExternalBeat(ctx context.Context, secret, from string, refs ...ExternalRef) (catalog.Status, error) {
	inst, _, err := r.external(ctx, audit.ActionHeartbeat, secret, from, refs)
	if err != nil {
		return "", err
	}
	now := r.now()
	status, revive := r.heard(inst, now)
	if revive {
		return r.revive(ctx, inst, now)
	}
	return status, nil
}

// ExternalCritical marks the key's instance named by refs critical: its
// process says it is failing. It is not heard from by this call: a
// process that keeps reporting failure is removed DeregisterAfter after
// its last heartbeat, as one that has gone silent. Going critical never
// waits for the key's write budget (as a failing check does not); the
// return to passing spends from it, which bounds a flapping instance's
// writes. An instance already critical writes nothing. Errors: as
// external, then ErrUnavailable.
func (r *Registry) ExternalCritical(ctx context.Context, secret, from, reason string, refs ...ExternalRef) error {
	inst, c, err := r.external(ctx, audit.ActionStatus, secret, from, refs)
	if err != nil {
		return err
	}
	if inst.Status == catalog.StatusCritical {
		return nil
	}
	ctx = asCaller(ctx, c)
	_, err = r.commit(ctx, catalog.Command{Op: catalog.OpSetStatus, ID: inst.ID, Status: catalog.StatusCritical, IfStatus: catalog.StatusPassing,
		Reason: r.scrub(reason)})
	switch {
	case err == nil, errors.Is(err, catalog.ErrConflict): // already critical
		return nil
	case errors.Is(err, catalog.ErrNotFound):
		return ErrInstanceNotFound
	}
	return err
}

// ExternalDeregister removes the key's instance externalID and returns
// the index of the removal. Errors: as external, then ErrUnavailable.
func (r *Registry) ExternalDeregister(ctx context.Context, secret, from, externalID string) (uint64, error) {
	inst, c, err := r.external(ctx, audit.ActionDeregister, secret, from, []ExternalRef{{ID: externalID}})
	if err != nil {
		return 0, err
	}
	ctx = asCaller(ctx, c)
	res, err := r.commit(ctx, catalog.Command{Op: catalog.OpDeregister, ID: inst.ID, Reason: "consul"})
	if errors.Is(err, catalog.ErrNotFound) {
		return 0, ErrInstanceNotFound
	}
	if err != nil {
		return 0, err
	}
	r.live.Forget(inst.ID)
	r.log.Info("instance deregistered", "id", inst.ID, "service", inst.Service, "external_id", inst.ExternalID, "index", res.Index)
	return res.Index, nil
}

// checkCount is how many checks an instance has as Consul counts them:
// its heartbeat (a TTL check) and its active checks.
func checkCount(inst *catalog.Instance) int {
	n := len(inst.Checks)
	if inst.TTL > 0 {
		n++
	}
	return n
}
