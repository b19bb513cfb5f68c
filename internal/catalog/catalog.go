package catalog

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Catalog is the in-memory state machine. See the package doc for its
// concurrency contract.
type Catalog struct {
	mu        sync.RWMutex
	index     uint64
	instances map[string]*Instance
	// byService holds each service's instances by ID.
	byService map[string]map[string]*Instance
	services  map[string]*ServiceView
	keys      map[string]*Key
	// keysByHash maps string(SecretHash) to the key, for authentication.
	keysByHash map[string]*Key
	// addrs maps service+address+port to the instance ID, for replacement.
	addrs map[string]string
	// onChange, when set, is called after each applied change with the
	// names of the services it touched. It runs on the Apply goroutine.
	onChange func(index uint64, services []string)
}

// New returns an empty catalog.
func New() *Catalog {
	c := &Catalog{}
	c.reset()
	return c
}

// OnChange registers fn to be called after every Apply and Restore with the
// index and the services that changed (nil after Restore: everything may
// have). fn runs on the Apply goroutine and must not block. Call OnChange
// before the first Apply.
func (c *Catalog) OnChange(fn func(index uint64, services []string)) { c.onChange = fn }

func (c *Catalog) reset() {
	c.index = 0
	c.instances = map[string]*Instance{}
	c.byService = map[string]map[string]*Instance{}
	c.services = map[string]*ServiceView{}
	c.keys = map[string]*Key{}
	c.keysByHash = map[string]*Key{}
	c.addrs = map[string]string{}
}

func addrKey(service, address string, port int) string {
	return fmt.Sprintf("%s/%s/%d", service, address, port)
}

// Apply applies cmd at Raft index idx. It is deterministic.
func (c *Catalog) Apply(idx uint64, cmd Command) Result {
	c.mu.Lock()
	res, touched := c.apply(idx, cmd)
	if touched == nil {
		touched = []string{} // nil is reserved for "everything", after Restore
	}
	if idx > c.index {
		c.index = idx
	}
	c.mu.Unlock()
	res.Index = idx
	if res.Err == nil && c.onChange != nil {
		c.onChange(idx, touched)
	}
	return res
}

func (c *Catalog) apply(idx uint64, cmd Command) (Result, []string) {
	switch cmd.Op {
	case OpRegister:
		return c.applyRegister(idx, cmd)
	case OpDeregister:
		inst, ok := c.instances[cmd.ID]
		if !ok {
			return Result{Err: ErrNotFound}, nil
		}
		if cmd.IfStatus != "" && !statusIs(inst, cmd.IfStatus) {
			return Result{Err: ErrConflict}, nil
		}
		c.removeInstance(inst)
		c.rebuild(inst.Service, idx)
		return Result{}, []string{inst.Service}
	case OpSetStatus:
		if cmd.Status == StatusDraining && cmd.IfStatus == "" {
			// Log entries written before draining became a flag.
			cmd.Op = OpDrain
			return c.apply(idx, cmd)
		}
		inst, ok := c.instances[cmd.ID]
		if !ok {
			return Result{Err: ErrNotFound}, nil
		}
		if !validStatus(cmd.Status) {
			return Result{Err: fmt.Errorf("%w: status %q", ErrBadCommand, cmd.Status)}, nil
		}
		if cmd.IfStatus != "" && !statusIs(inst, cmd.IfStatus) {
			return Result{Err: ErrConflict}, nil
		}
		if inst.Status == cmd.Status {
			return Result{}, nil
		}
		next := *inst
		next.Status = cmd.Status
		next.ModifyIndex = idx
		c.putInstance(&next)
		c.rebuild(next.Service, idx)
		return Result{}, []string{next.Service}
	case OpDrain:
		inst, ok := c.instances[cmd.ID]
		if !ok {
			return Result{Err: ErrNotFound}, nil
		}
		if inst.Draining {
			return Result{}, nil
		}
		next := *inst
		next.Draining = true
		next.ModifyIndex = idx
		c.putInstance(&next)
		c.rebuild(next.Service, idx)
		return Result{}, []string{next.Service}
	case OpCreateKey:
		k := cmd.Key
		if k == nil || k.ID == "" || len(k.SecretHash) != sha256.Size || len(k.Services) == 0 {
			return Result{Err: ErrBadCommand}, nil
		}
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
	case OpRevokeKey:
		k, ok := c.keys[cmd.ID]
		if !ok {
			return Result{Err: ErrNotFound}, nil
		}
		delete(c.keys, k.ID)
		delete(c.keysByHash, string(k.SecretHash))
		return Result{}, nil
	default:
		return Result{Err: fmt.Errorf("%w: unknown op %q", ErrBadCommand, cmd.Op)}, nil
	}
}

// statusIs reports whether inst is in status s for a conditional command.
// Entries written when draining was a status name it: it means a passing
// instance with the drain flag.
func statusIs(inst *Instance, s string) bool {
	if s == StatusDraining {
		return inst.Status == StatusPassing && inst.Draining
	}
	return inst.Status == s
}

func validStatus(s string) bool {
	switch s {
	case StatusPassing, StatusCritical:
		return true
	}
	return false
}

func (c *Catalog) applyRegister(idx uint64, cmd Command) (Result, []string) {
	in := cmd.Instance
	if in == nil || in.ID == "" || !ValidServiceName(in.Service) || len(in.TokenHash) != sha256.Size || !validStatus(in.Status) {
		return Result{Err: ErrBadCommand}, nil
	}
	if _, ok := c.instances[in.ID]; ok {
		return Result{Err: ErrExists}, nil
	}
	// The key is checked again here, inside the state machine, so that a
	// revocation committed between the HTTP check and this command wins.
	k, ok := c.keys[in.KeyID]
	if !ok {
		return Result{Err: ErrKeyRevoked}, nil
	}
	if !k.Allows(in.Service) {
		return Result{Err: ErrKeyScope}, nil
	}
	if cmd.Rules >= 1 {
		// A service whose instances all came in through the other
		// protocol refuses this one; a service that already has instances
		// of this protocol (mixed before the rule existed) does not, so
		// that those can still re-register.
		own, other := false, false
		for _, ex := range c.byService[in.Service] {
			switch {
			case (ex.KeyID == SeedKeyID) == (in.KeyID == SeedKeyID):
				own = true
			case ex.Address == in.Address && ex.Port == in.Port:
				// The same endpoint moving to this protocol: it is replaced.
			default:
				other = true
			}
		}
		if other && !own {
			return Result{Err: ErrProtocolMix}, nil
		}
	}
	var res Result
	ak := addrKey(in.Service, in.Address, in.Port)
	if oldID, ok := c.addrs[ak]; ok {
		if old, ok := c.instances[oldID]; ok {
			c.removeInstance(old)
			res.Replaced = oldID
		}
	}
	stored := *in
	stored.Tags = slices.Clone(in.Tags)
	stored.Meta = cloneMap(in.Meta)
	stored.TokenHash = slices.Clone(in.TokenHash)
	stored.CreateIndex = idx
	stored.ModifyIndex = idx
	c.putInstance(&stored)
	c.rebuild(stored.Service, idx)
	return res, []string{stored.Service}
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (c *Catalog) putInstance(inst *Instance) {
	inst.url = inst.Scheme + "://" + net.JoinHostPort(inst.Address, strconv.Itoa(inst.Port))
	inst.registeredAt = inst.RegisteredAt.UTC().Format(time.RFC3339Nano)
	inst.ttl = inst.TTL.String()
	inst.wire = &wireCache{}
	c.instances[inst.ID] = inst
	set := c.byService[inst.Service]
	if set == nil {
		set = map[string]*Instance{}
		c.byService[inst.Service] = set
	}
	set[inst.ID] = inst
	c.addrs[addrKey(inst.Service, inst.Address, inst.Port)] = inst.ID
}

func (c *Catalog) removeInstance(inst *Instance) {
	delete(c.instances, inst.ID)
	delete(c.byService[inst.Service], inst.ID)
	ak := addrKey(inst.Service, inst.Address, inst.Port)
	if c.addrs[ak] == inst.ID {
		delete(c.addrs, ak)
	}
}

// rebuild replaces the service's immutable view. The view of a service whose
// last instance left is kept (empty) so that its index keeps growing: a
// client waiting on that index must see the removal.
func (c *Catalog) rebuild(service string, idx uint64) {
	set := c.byService[service]
	list := make([]*Instance, 0, len(set))
	for _, inst := range set {
		list = append(list, inst)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	c.services[service] = &ServiceView{Name: service, Index: idx, Instances: list}
}

// Index returns the Raft index of the last applied command.
func (c *Catalog) Index() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.index
}

// Service returns the immutable view of one service, or nil if the service
// has never had an instance.
func (c *Catalog) Service(name string) *ServiceView {
	c.mu.RLock()
	v := c.services[name]
	c.mu.RUnlock()
	return v
}

// Services returns the views of all services, sorted by name.
func (c *Catalog) Services() []*ServiceView {
	c.mu.RLock()
	out := make([]*ServiceView, 0, len(c.services))
	for _, v := range c.services {
		out = append(out, v)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Instance returns one instance by ID.
func (c *Catalog) Instance(id string) (*Instance, bool) {
	c.mu.RLock()
	inst, ok := c.instances[id]
	c.mu.RUnlock()
	return inst, ok
}

// InstanceByAddr returns the instance of service registered at address and
// port (there is at most one: a new registration replaces the old).
func (c *Catalog) InstanceByAddr(service, address string, port int) (*Instance, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	inst, ok := c.instances[c.addrs[addrKey(service, address, port)]]
	return inst, ok
}

// Instances returns every instance, in no particular order.
func (c *Catalog) Instances() []*Instance {
	c.mu.RLock()
	out := make([]*Instance, 0, len(c.instances))
	for _, inst := range c.instances {
		out = append(out, inst)
	}
	c.mu.RUnlock()
	return out
}

// KeyBySecretHash returns the key whose secret hashes to h.
func (c *Catalog) KeyBySecretHash(h []byte) (*Key, bool) {
	c.mu.RLock()
	k, ok := c.keysByHash[string(h)]
	c.mu.RUnlock()
	return k, ok
}

// Keys returns every enrolment key sorted by ID.
func (c *Catalog) Keys() []*Key {
	c.mu.RLock()
	out := make([]*Key, 0, len(c.keys))
	for _, k := range c.keys {
		out = append(out, k)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// HashSecret returns the SHA-256 of a secret (session token or key secret),
// the only form in which secrets are stored.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// TokenMatches reports in constant time whether token hashes to the
// instance's stored token hash.
func (inst *Instance) TokenMatches(token string) bool {
	// A stack buffer for the usual token size keeps the heartbeat path
	// free of this allocation.
	var buf [64]byte
	h := sha256.Sum256(append(buf[:0], token...))
	return subtle.ConstantTimeCompare(h[:], inst.TokenHash) == 1
}

// HasTags reports whether the instance carries every tag in want.
func (inst *Instance) HasTags(want []string) bool {
	for _, t := range want {
		if !slices.Contains(inst.Tags, t) {
			return false
		}
	}
	return true
}

// HasMeta reports whether the instance's meta has every "key:value" in want.
func (inst *Instance) HasMeta(want []string) bool {
	for _, kv := range want {
		k, v, _ := strings.Cut(kv, ":")
		got, ok := inst.Meta[k]
		if !ok || got != v {
			return false
		}
	}
	return true
}
