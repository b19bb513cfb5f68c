package catalog

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
)

// The apply methods, one per operation. Each runs under the write lock,
// reads nothing but the catalog and the command, and returns the services
// whose views it rebuilt.

func (c *Catalog) applyRegister(idx uint64, cmd Command) (Result, []string) {
	in := cmd.Instance
	if in == nil || in.ID == "" || !ValidServiceName(in.Service) || len(in.TokenHash) != sha256.Size || !validStatus(in.Status) {
		return Result{Err: ErrBadCommand}, nil
	}
	if _, ok := c.instances[in.ID]; ok {
		return Result{Err: ErrExists}, nil
	}
	// The key is checked again here, inside the state machine, so that a
	// revocation committed between the registry's check and this command
	// wins.
	k, ok := c.keys[in.KeyID]
	if !ok {
		return Result{Err: ErrKeyRevoked}, nil
	}
	if !k.Allows(in.Service) {
		return Result{Err: ErrKeyScope}, nil
	}
	// Only an enrolment key registers. The registry checks the role
	// before it proposes; this keeps a read token's secret from ever
	// registering, whatever a proposer does. (No log written before
	// roles holds a key of another role, so it changes no replay.)
	if r := k.RoleOrDefault(); r != RoleRegister {
		return Result{Err: fmt.Errorf("%w: key %s has role %s, and only a key of role register registers", ErrKeyScope, k.ID, r)}, nil
	}
	if cmd.Rules >= 1 && c.otherProtocol(in) {
		return Result{Err: ErrProtocolMix}, nil
	}
	ak := addrKey(in.Service, in.Address, in.Port)
	if b, ok := c.bars[ak]; ok && cmd.Rules >= 3 {
		if b.Until.After(in.RegisteredAt) {
			return Result{Err: ErrBarred}, nil
		}
		c.dropBar(b) // ended: judged by the command's own time, so alike everywhere
	}
	seed := in.KeyID == SeedKeyID
	if cmd.Rules >= 2 && seed && c.keyed[in.Service] {
		return Result{Err: ErrProtocolMix}, nil
	}
	var res Result
	var dropped string
	old := c.instances[c.addrs[ak]]
	if cmd.Rules >= 2 && old != nil && old.KeyID != in.KeyID && in.Proof != ProofAddressPort &&
		// Rules 5: what no callback proved yields to what one did.
		!(cmd.Rules >= RulesExternal && old.Proof == ProofNone && in.Proof != ProofNone) {
		return Result{Err: ErrReplaceDenied}, nil
	}
	if in.Proof == ProofNone && cmd.Rules < RulesExternal {
		return Result{Err: ErrBadCommand}, nil // no proposer ever wrote one
	}
	if in.ExternalID != "" {
		if cmd.Rules < RulesExternal {
			return Result{Err: ErrBadCommand}, nil
		}
		// Rules 5: the key's instance of the same external ID at the same
		// address is the one replaced; one that holds the address and port besides it would
		// be a second replacement, which a registration never makes.
		if same := c.instances[c.external[externalKey(in.KeyID, in.ExternalID)][in.Address]]; same != nil {
			if old != nil && old != same {
				return Result{Instance: old, Err: fmt.Errorf("%w: instance %s holds the address and port of this registration, and instance %s its external ID", ErrExists, old.ID, same.ID)}, nil
			}
			old = same
		}
	}
	// Proven and unproved instances count against a host's limit apart
	// (no log written before rules 5 holds an unproved one).
	hosts, unproved := c.byHost, in.Proof == ProofNone
	if unproved {
		hosts = c.unproved
	}
	if cmd.KeyLimit > 0 && c.byKey[in.KeyID]-counted(old != nil && old.KeyID == in.KeyID) >= cmd.KeyLimit ||
		cmd.HostLimit > 0 && hosts[in.Host()]-counted(old != nil && old.Host() == in.Host() && (old.Proof == ProofNone) == unproved) >= cmd.HostLimit {
		return Result{Err: ErrQuota}, nil
	}
	if old != nil {
		c.removeInstance(old)
		res.Replaced, dropped = old.ID, old.ID
	}
	ev := &Event{Type: EventRegistered, Replaced: old}
	if cmd.Rules >= 2 && !seed {
		c.keyed[in.Service] = true
	}
	stored := *in
	stored.Tags = slices.Clone(in.Tags)
	stored.Meta = cloneMap(in.Meta)
	stored.TokenHash = slices.Clone(in.TokenHash)
	stored.Checks = slices.Clone(in.Checks)
	stored.CreateIndex = idx
	stored.ModifyIndex = idx
	c.intern(&stored, k)
	c.putInstance(&stored)
	c.update(stored.Service, idx, dropped, &stored)
	ev.Instance = &stored
	c.event = ev
	res.Instance = &stored
	if old != nil && old.Service != stored.Service {
		// An external ID moved to another service (proposers refuse
		// that since; a log may hold one from before): the old service
		// loses the instance too, and its watchers are woken.
		c.update(old.Service, idx, old.ID, nil)
		return res, []string{stored.Service, old.Service}
	}
	return res, []string{stored.Service}
}

func (c *Catalog) applyDeregister(idx uint64, cmd Command) (Result, []string) {
	inst, ok := c.instances[cmd.ID]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	if cmd.IfStatus != "" && !statusIs(inst, cmd.IfStatus) {
		return Result{Instance: inst, Err: ErrConflict}, nil
	}
	c.removeInstance(inst)
	c.update(inst.Service, idx, inst.ID, nil)
	reason := ReasonDeregistered
	if cmd.IfStatus == StatusCritical {
		reason = ReasonExpired
	}
	c.event = &Event{Type: EventDeregistered, Instance: inst, Reason: reason}
	return Result{Instance: inst}, []string{inst.Service}
}

func (c *Catalog) applySetStatus(idx uint64, cmd Command) (Result, []string) {
	if cmd.Status == StatusDraining && cmd.IfStatus == "" {
		// Log entries written before draining became a flag.
		return c.applyDrain(idx, cmd)
	}
	inst, ok := c.instances[cmd.ID]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	if !validStatus(cmd.Status) {
		return Result{Instance: inst, Err: fmt.Errorf("%w: status %q", ErrBadCommand, cmd.Status)}, nil
	}
	if cmd.IfStatus != "" && !statusIs(inst, cmd.IfStatus) {
		return Result{Instance: inst, Err: ErrConflict}, nil
	}
	if inst.Status == cmd.Status {
		return Result{Instance: inst}, nil
	}
	next := *inst
	next.Status = cmd.Status
	next.ModifyIndex = idx
	c.putInstance(&next)
	c.update(next.Service, idx, "", &next)
	c.event = &Event{Type: EventStatus, Instance: &next}
	return Result{Instance: &next}, []string{next.Service}
}

func (c *Catalog) applyDrain(idx uint64, cmd Command) (Result, []string) {
	inst, ok := c.instances[cmd.ID]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	if inst.Draining {
		return Result{Instance: inst}, nil
	}
	next := *inst
	next.Draining = true
	next.ModifyIndex = idx
	c.putInstance(&next)
	c.update(next.Service, idx, "", &next)
	c.event = &Event{Type: EventStatus, Instance: &next}
	return Result{Instance: &next}, []string{next.Service}
}

func (c *Catalog) applyEvict(idx uint64, cmd Command) (Result, []string) {
	inst, ok := c.instances[cmd.ID]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	if cmd.Until.IsZero() {
		return Result{Instance: inst, Err: ErrBadCommand}, nil
	}
	c.removeInstance(inst)
	ak := addrKey(inst.Service, inst.Address, inst.Port)
	if old, ok := c.bars[ak]; ok {
		c.dropBar(old)
	}
	c.addBar(&Bar{Service: inst.Service, Address: inst.Address, Port: inst.Port, Instance: inst.ID, Reason: cmd.Reason, Until: cmd.Until, Index: idx})
	c.update(inst.Service, idx, inst.ID, nil)
	c.event = &Event{Type: EventDeregistered, Instance: inst, Reason: ReasonEvicted}
	return Result{Instance: inst}, []string{inst.Service}
}

// otherProtocol reports whether a registration of in breaks the rule of
// protocols (rules 1): a service whose instances all came in through the
// other protocol refuses it, unless they are all at in's own endpoint
// (the same endpoint moving to this protocol: it is replaced); a service
// that already has instances of in's protocol (mixed before the rule
// existed) does not, so that those can still re-register. The counts
// decide it without a pass over the service, but for the one case that
// needs the endpoints: no instance of in's protocol and some of the
// other, where the pass ends at the first one elsewhere.
func (c *Catalog) otherProtocol(in *Instance) bool {
	var set []*Instance
	if s := c.services[in.Service]; s != nil {
		set = s.list
	}
	own, other := len(set)-c.seeds[in.Service], c.seeds[in.Service]
	if in.KeyID == SeedKeyID {
		own, other = other, own
	}
	if own > 0 || other == 0 {
		return false
	}
	for _, ex := range set {
		if ex.Address != in.Address || ex.Port != in.Port {
			return true
		}
	}
	return false
}

// addBar records b. The caller updates the service (update), which
// takes the service's new bars.
func (c *Catalog) addBar(b *Bar) {
	c.bars[addrKey(b.Service, b.Address, b.Port)] = b
	c.barsByID[b.Instance] = b
	list := append(slices.Clone(c.barsBySvc[b.Service]), b)
	sort.Slice(list, func(i, j int) bool {
		return addrKey(b.Service, list[i].Address, list[i].Port) < addrKey(b.Service, list[j].Address, list[j].Port)
	})
	c.barsBySvc[b.Service] = list
}

// dropBar forgets b. The caller updates the service (update), which
// takes the service's new bars.
func (c *Catalog) dropBar(b *Bar) {
	delete(c.bars, addrKey(b.Service, b.Address, b.Port))
	delete(c.barsByID, b.Instance)
	list := slices.DeleteFunc(slices.Clone(c.barsBySvc[b.Service]), func(x *Bar) bool { return x == b })
	if len(list) == 0 {
		delete(c.barsBySvc, b.Service)
	} else {
		c.barsBySvc[b.Service] = list
	}
}

func (c *Catalog) applyCreateKey(idx uint64, cmd Command) (Result, []string) {
	k := cmd.Key
	if k == nil || k.ID == "" || len(k.SecretHash) != sha256.Size || len(k.Services) == 0 {
		return Result{Err: ErrBadCommand}, nil
	}
	if k.tokenOnly() {
		// An older replica would drop these fields and store an
		// enrolment key: see OpCreateToken.
		return Result{Err: badCommand("key", "create_key carries an enrolment key without role, expires_at or callback_tls; a key with them is created by create_token")}, nil
	}
	return c.putKey(idx, k)
}

// applyCreateToken creates a key of any role: what applyCreateKey does,
// with the fields create_key may not carry, held to the rules every
// stored key meets (tokenProblem), so that a snapshot of the catalog
// always restores.
func (c *Catalog) applyCreateToken(idx uint64, cmd Command) (Result, []string) {
	k := cmd.Key
	if k == nil || k.ID == "" || len(k.SecretHash) != sha256.Size || len(k.Services) == 0 {
		return Result{Err: ErrBadCommand}, nil
	}
	if k.Role == "" {
		return Result{Err: badCommand("key.role", "create_token needs the key's role (register, read, operator or admin)")}, nil
	}
	if field, problem := tokenProblem(k); problem != "" {
		return Result{Err: badCommand(field, "%s", problem)}, nil
	}
	if k.ConsulVerify != "" && cmd.Rules < RulesExternal {
		// A replica that predates the field would drop it; the rules
		// version halts that replica instead.
		return Result{Err: badCommand("key.consul_verify", "consul_verify needs rules %d, the command asks for %d", RulesExternal, cmd.Rules)}, nil
	}
	return c.putKey(idx, k)
}

// putKey stores a copy of k, created at idx, unless its ID or its
// secret is taken (ErrExists).
func (c *Catalog) putKey(idx uint64, k *Key) (Result, []string) {
	if _, ok := c.keys[k.ID]; ok {
		return Result{Err: ErrExists}, nil
	}
	if _, ok := c.keysByHash[string(k.SecretHash)]; ok {
		return Result{Err: ErrExists}, nil
	}
	stored := *k
	stored.Services = slices.Clone(k.Services)
	stored.SecretHash = slices.Clone(k.SecretHash)
	stored.CreateIndex = idx
	c.keys[stored.ID] = &stored
	c.keysByHash[string(stored.SecretHash)] = &stored
	return Result{}, nil
}

func (c *Catalog) applyRevokeKey(idx uint64, cmd Command) (Result, []string) {
	k, ok := c.keys[cmd.ID]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	delete(c.keys, k.ID)
	delete(c.keysByHash, string(k.SecretHash))
	return Result{}, nil
}

// counted is 1 when the instance a registration replaces is counted in
// the same limit as the registration (it goes as the new one comes), else
// 0.
func counted(same bool) int {
	if same {
		return 1
	}
	return 0
}
