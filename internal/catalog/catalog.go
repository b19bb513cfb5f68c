package catalog

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Catalog is the in-memory state machine. See the package doc for its
// concurrency contract.
type Catalog struct {
	mu sync.RWMutex
	// index is written under mu's write lock and read without it (Index,
	// on every stream's wake-up and every blocking query).
	index     atomic.Uint64
	instances map[string]*Instance
	// seeds counts each service's instances of the tutorial protocol
	// (SeedKeyID), so that a registration's protocol rule is judged
	// without a pass over them. A service's instances are its view's:
	// no second index holds them by service (at 100,000 instances one
	// took 4 MB).
	seeds map[string]int
	// services holds each service's instances, sorted by ID, and the
	// immutable view of them that readers get (see svc).
	services map[string]*svc
	keys     map[string]*Key
	// keysByHash maps string(SecretHash) to the key, for authentication.
	keysByHash map[string]*Key
	// addrs maps service+address+port to the instance ID, for replacement.
	addrs map[string]string
	// external maps a key's ID and an instance's ExternalID
	// (externalKey), then its address, to the instance ID: the
	// Consul-compatible API's calls name instances so. An ExternalID is
	// unique per key and address, as a Consul service ID is per agent:
	// replicas on several hosts may share one.
	external map[string]map[string]string
	// byKey, byHost and byKeyHost count the instances of each key, at
	// each address, and of each key at each address, for quotas. byHost
	// and byKeyHost count proven instances only; unproved counts those
	// whose Proof is ProofNone at each address, apart, so that what no
	// callback proved never takes a host's capacity from its owner, nor
	// counts as the key holding the host.
	byKey, byHost, byKeyHost, unproved map[string]int
	// hosts holds, for each key of byHost, the string an instance stored
	// first for it, so that the instances at one address share it
	// (intern).
	hosts map[string]string
	// keyed holds the services that have had an instance of an ordinary
	// enrolment key (registered under rules 2 or later): the tutorial
	// protocol never takes them.
	keyed map[string]bool
	// bars are the evicted endpoints by addrKey, by instance ID, and by
	// service (a sorted slice replaced, never changed, when a bar comes or
	// goes, so that views can share it).
	bars      map[string]*Bar
	barsByID  map[string]*Bar
	barsBySvc map[string][]*Bar
	// cas are the CAs, oldest first (ca.go): a slice replaced, never
	// changed, when one comes or goes, so that CAs may share it.
	cas []*CA

	// ops is the dispatch table, built by New and never changed.
	ops map[Op]applyFunc

	subs  subscribers
	watch watches
	// events are the recent changes, for streams; event is the one the
	// command being applied made, recorded by Apply if it succeeds.
	events history
	event  *Event
}

// applyFunc applies one command at index idx under the write lock. It
// returns the result and the services whose views it rebuilt.
type applyFunc func(c *Catalog, idx uint64, cmd Command) (Result, []string)

// New returns an empty catalog.
func New(opts ...Option) *Catalog {
	c := &Catalog{ops: map[Op]applyFunc{
		OpRegister:    (*Catalog).applyRegister,
		OpDeregister:  (*Catalog).applyDeregister,
		OpSetStatus:   (*Catalog).applySetStatus,
		OpDrain:       (*Catalog).applyDrain,
		OpCreateKey:   (*Catalog).applyCreateKey,
		OpRevokeKey:   (*Catalog).applyRevokeKey,
		OpEvict:       (*Catalog).applyEvict,
		OpCreateToken: (*Catalog).applyCreateToken,
		OpAddCA:       (*Catalog).applyAddCA,
		OpRetireCA:    (*Catalog).applyRetireCA,
	}}
	c.events = newHistory(DefaultEventHistory)
	for _, o := range opts {
		o(c)
	}
	c.reset()
	return c
}

// Ops returns the operations this version applies, sorted.
func (c *Catalog) Ops() []Op {
	out := make([]Op, 0, len(c.ops))
	for op := range c.ops {
		out = append(out, op)
	}
	slices.Sort(out)
	return out
}

func (c *Catalog) reset() {
	c.index.Store(0)
	c.instances = map[string]*Instance{}
	c.seeds = map[string]int{}
	c.services = map[string]*svc{}
	c.keys = map[string]*Key{}
	c.keysByHash = map[string]*Key{}
	c.addrs = map[string]string{}
	c.external = map[string]map[string]string{}
	c.byKey = map[string]int{}
	c.byHost = map[string]int{}
	c.hosts = map[string]string{}
	c.byKeyHost = map[string]int{}
	c.unproved = map[string]int{}
	c.keyed = map[string]bool{}
	c.bars = map[string]*Bar{}
	c.barsByID = map[string]*Bar{}
	c.barsBySvc = map[string][]*Bar{}
	c.cas = nil
}

func addrKey(service, address string, port int) string {
	return service + "/" + address + "/" + strconv.Itoa(port)
}

func externalKey(keyID, externalID string) string {
	return keyID + "\x00" + externalID
}

// Apply applies cmd at Raft index idx. It is deterministic.
//
// A command this version cannot apply as its proposer meant it (an
// unknown operation, or rules newer than RulesMax) is answered
// ErrUnsupported, changes nothing and does not advance Index: the caller
// must stop applying the log (package cluster does), because replicas
// that know the command apply it. An unknown operation marked
// SkipIfUnknown is answered ErrSkipped instead, and the log goes on. A
// command with no operation at all is malformed (ErrBadCommand), which
// every replica agrees on.
func (c *Catalog) Apply(idx uint64, cmd Command) Result {
	fn, known := c.ops[cmd.Op]
	switch {
	case !known && cmd.Op != "" && !cmd.SkipIfUnknown:
		return Result{Index: idx, Err: fmt.Errorf("%w: unknown op %q", ErrUnsupported, cmd.Op)}
	case cmd.Rules > RulesMax:
		return Result{Index: idx, Err: fmt.Errorf("%w: rules version %d (this version knows up to %d)", ErrUnsupported, cmd.Rules, RulesMax)}
	}
	var (
		res     Result
		touched []string
	)
	c.mu.Lock()
	switch {
	case cmd.Op == "":
		res.Err = fmt.Errorf("%w: no op", ErrBadCommand)
	case !known:
		res.Err = fmt.Errorf("%w: op %q", ErrSkipped, cmd.Op)
	default:
		res, touched = fn(c, idx, cmd)
	}
	ev := c.event
	c.event = nil
	if ev != nil && res.Err == nil {
		ev.Index = idx
		c.events.record(ev)
	} else {
		ev = nil
	}
	if idx > c.index.Load() {
		c.index.Store(idx)
	}
	c.mu.Unlock()
	res.Index = idx
	if res.Err == nil {
		c.subs.notify(idx, touched, false)
		c.watch.wake(touched, false)
	}
	if ev != nil {
		c.events.wake()
	}
	return res
}

// statusIs reports whether inst is in status s for a conditional command.
// Entries written when draining was a status name it: it means a passing
// instance with the drain flag.
func statusIs(inst *Instance, s Status) bool {
	if s == StatusDraining {
		return inst.Status == StatusPassing && inst.Draining
	}
	return inst.Status == s
}

func validStatus(s Status) bool {
	switch s {
	case StatusPassing, StatusCritical:
		return true
	}
	return false
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

// putInstance stores inst, new or a changed copy of a stored instance of
// the same ID, keeping every index and count right.
func (c *Catalog) putInstance(inst *Instance) {
	if old, ok := c.instances[inst.ID]; ok {
		c.removeInstance(old)
	}
	c.instances[inst.ID] = inst
	if inst.KeyID == SeedKeyID {
		c.seeds[inst.Service]++
	}
	c.addrs[addrKey(inst.Service, inst.Address, inst.Port)] = inst.ID
	if inst.ExternalID != "" {
		ek := externalKey(inst.KeyID, inst.ExternalID)
		if c.external[ek] == nil {
			c.external[ek] = map[string]string{}
		}
		c.external[ek][inst.Address] = inst.ID
	}
	c.byKey[inst.KeyID]++
	if inst.Proof == ProofNone {
		c.unproved[inst.Host()]++
		return
	}
	if c.byHost[inst.Host()]++; c.byHost[inst.Host()] == 1 {
		c.hosts[inst.Host()] = inst.Host()
	}
	c.byKeyHost[inst.KeyID+"\x00"+inst.Host()]++
}

func (c *Catalog) removeInstance(inst *Instance) {
	delete(c.instances, inst.ID)
	if inst.KeyID == SeedKeyID {
		decrement(c.seeds, inst.Service)
	}
	ak := addrKey(inst.Service, inst.Address, inst.Port)
	if c.addrs[ak] == inst.ID {
		delete(c.addrs, ak)
	}
	if inst.ExternalID != "" {
		ek := externalKey(inst.KeyID, inst.ExternalID)
		if byAddr := c.external[ek]; byAddr[inst.Address] == inst.ID {
			if delete(byAddr, inst.Address); len(byAddr) == 0 {
				delete(c.external, ek)
			}
		}
	}
	decrement(c.byKey, inst.KeyID)
	if inst.Proof == ProofNone {
		decrement(c.unproved, inst.Host())
		return
	}
	if decrement(c.byHost, inst.Host()) {
		delete(c.hosts, inst.Host())
	}
	decrement(c.byKeyHost, inst.KeyID+"\x00"+inst.Host())
}

// decrement counts one fewer of k in m, and reports whether none is
// left.
func decrement(m map[string]int, k string) bool {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
		return true
	}
	return false
}

// intern makes a new instance, not yet stored, of key k share the
// strings it has in common with others (its service's name, its key's
// ID, its address, and the few values its scheme, proof and status take)
// instead of holding copies decoded from its command: at 100,000
// instances they came to about 9 MB.
func (c *Catalog) intern(in *Instance, k *Key) {
	if s := c.services[in.Service]; s != nil {
		in.Service = s.name
	}
	if k != nil && k.ID == in.KeyID {
		in.KeyID = k.ID
	}
	if h, ok := c.hosts[in.Address]; ok {
		in.Address = h
	}
	if h, ok := c.hosts[in.HostIP]; ok {
		in.HostIP = h
	}
	in.Scheme = internOf(in.Scheme, "http", "https")
	in.Proof = internOf(in.Proof, ProofAddressPort)
	in.Status = Status(internOf(string(in.Status), string(StatusPassing), string(StatusCritical)))
}

// internOf returns the one of common equal to s, or s.
func internOf(s string, common ...string) string {
	for _, c := range common {
		if s == c {
			return c
		}
	}
	return s
}

// svc is one service's state. list is its instances sorted by ID, which
// the apply path changes in place under the catalog's write lock and
// never hands out; readers get view, an immutable copy made on the first
// read after a change (under the read lock, so list holds still). A
// change used to copy the whole list into a new view: with thousands of
// instances in a service, a burst of registrations copied (and the
// garbage collector scanned) kilobytes each, for views no one read. Now
// a change costs a binary search and a shift of the list, and a view is
// made at most once per read after changes, however many there were.
type svc struct {
	name    string
	index   uint64
	list    []*Instance
	checked int
	bars    []*Bar
	// mu serialises making view among readers holding the read lock.
	mu   sync.Mutex
	view atomic.Pointer[ServiceView]
}

// viewLocked returns s's immutable view, making it if a change dropped
// it. The caller holds the catalog's lock, read or write.
func (s *svc) viewLocked() *ServiceView {
	if v := s.view.Load(); v != nil {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.view.Load(); v != nil {
		return v
	}
	v := &ServiceView{Name: s.name, Index: s.index, Instances: slices.Clone(s.list), Checked: s.checked, Bars: s.bars}
	if v.Instances == nil {
		v.Instances = []*Instance{}
	}
	s.view.Store(v)
	return v
}

// changed records that s changed at idx: its view is made again when
// next read. The caller holds the write lock.
func (c *Catalog) changed(s *svc, idx uint64) {
	s.index = idx
	s.bars = c.barsBySvc[s.name]
	s.view.Store(nil)
}

// rebuild replaces the service's instances with list, which it sorts and
// keeps. A service whose last instance left is kept (empty) so that its
// index keeps growing: a client waiting on that index must see the
// removal.
func (c *Catalog) rebuild(service string, idx uint64, list []*Instance) {
	slices.SortFunc(list, byID)
	checked := 0
	for _, inst := range list {
		checked += hasChecks(inst)
	}
	s := &svc{name: service, list: list, checked: checked}
	c.changed(s, idx)
	c.services[service] = s
}

// hasChecks is 1 when inst has active checks, else 0.
func hasChecks(inst *Instance) int {
	if len(inst.Checks) > 0 {
		return 1
	}
	return 0
}

// update changes the service's list after one command changed it: the
// instance drop (an ID, or "") left, and add (nil: none) came or took the
// place of the stored instance of its ID. It keeps the list as rebuild
// would make it, by binary searches and a shift in place, and drops the
// view (changed): a registration in a service of n instances moves at
// most n pointers, and copies none until someone reads the service.
func (c *Catalog) update(service string, idx uint64, drop string, add *Instance) {
	s := c.services[service]
	if s == nil {
		var list []*Instance
		if add != nil {
			list = []*Instance{add}
		}
		c.rebuild(service, idx, list)
		return
	}
	if drop != "" && !(add != nil && drop == add.ID) {
		if i, ok := slices.BinarySearchFunc(s.list, drop, hasID); ok {
			s.checked -= hasChecks(s.list[i])
			s.list = slices.Delete(s.list, i, i+1)
		}
	}
	if add != nil {
		at, replace := slices.BinarySearchFunc(s.list, add.ID, hasID)
		if replace {
			s.checked += hasChecks(add) - hasChecks(s.list[at])
			s.list[at] = add
		} else {
			s.checked += hasChecks(add)
			s.list = slices.Insert(s.list, at, add)
		}
	}
	c.changed(s, idx)
}

// byID orders instances by ID, the order of a view.
func byID(a, b *Instance) int { return strings.Compare(a.ID, b.ID) }

// hasID compares an instance's ID with id, for binary searches of a view.
func hasID(inst *Instance, id string) int { return strings.Compare(inst.ID, id) }

// Index returns the Raft index of the last applied command.
func (c *Catalog) Index() uint64 { return c.index.Load() }

// Service returns the immutable view of one service, or nil if the service
// has never had an instance.
func (c *Catalog) Service(name string) *ServiceView {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if s := c.services[name]; s != nil {
		return s.viewLocked()
	}
	return nil
}

// Checked reports whether the service has ever had an instance and how
// many of its instances have active checks, without making its view:
// the check runner asks after every change.
func (c *Catalog) Checked(name string) (exists bool, checked int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if s := c.services[name]; s != nil {
		return true, s.checked
	}
	return false, 0
}

// Services returns the views of all services, sorted by name.
func (c *Catalog) Services() []*ServiceView {
	c.mu.RLock()
	out := make([]*ServiceView, 0, len(c.services))
	for _, s := range c.services {
		out = append(out, s.viewLocked())
	}
	c.mu.RUnlock()
	sortViews(out)
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

// InstanceByExternal returns the instance of the enrolment key keyID
// at address whose ExternalID is externalID.
func (c *Catalog) InstanceByExternal(keyID, externalID, address string) (*Instance, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	inst, ok := c.instances[c.external[externalKey(keyID, externalID)][address]]
	return inst, ok
}

// InstancesByExternal returns the instances of the enrolment key keyID
// whose ExternalID is externalID, at every address, sorted by address.
func (c *Catalog) InstancesByExternal(keyID, externalID string) []*Instance {
	c.mu.RLock()
	defer c.mu.RUnlock()
	byAddr := c.external[externalKey(keyID, externalID)]
	out := make([]*Instance, 0, len(byAddr))
	for _, id := range byAddr {
		if inst, ok := c.instances[id]; ok {
			out = append(out, inst)
		}
	}
	slices.SortFunc(out, func(a, b *Instance) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// Held returns how many instances are registered with the enrolment key
// keyID, how many at the host host (of any service and key; see
// Instance.Host), and how many of the key at the host.
func (c *Catalog) Held(keyID, host string) (byKey, byAddress, byKeyAtAddress int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byKey[keyID], c.byHost[host], c.byKeyHost[keyID+"\x00"+host]
}

// Unproved returns how many instances whose Proof is ProofNone are at
// host: they count against its limit apart from the proven ones (Held).
func (c *Catalog) Unproved(host string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.unproved[host]
}

// Keyed reports whether service has had an instance of an ordinary
// enrolment key (see RulesMax, rules 2).
func (c *Catalog) Keyed(service string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.keyed[service]
}

// Bar returns the bar on the endpoint, if an eviction set one (it may
// have ended: compare Until with the time).
func (c *Catalog) Bar(service, address string, port int) (*Bar, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	b, ok := c.bars[addrKey(service, address, port)]
	return b, ok
}

// BarByInstance returns the bar set by the eviction of instance id.
func (c *Catalog) BarByInstance(id string) (*Bar, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	b, ok := c.barsByID[id]
	return b, ok
}

// Bars returns every bar, ended or not, sorted by service, address, port.
func (c *Catalog) Bars() []*Bar {
	c.mu.RLock()
	out := make([]*Bar, 0, len(c.bars))
	for _, b := range c.bars {
		out = append(out, b)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		return addrKey(out[i].Service, out[i].Address, out[i].Port) < addrKey(out[j].Service, out[j].Address, out[j].Port)
	})
	return out
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

// Len returns the number of instances.
func (c *Catalog) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.instances)
}

// Key returns one key, of any role, by ID.
func (c *Catalog) Key(id string) (*Key, bool) {
	c.mu.RLock()
	k, ok := c.keys[id]
	c.mu.RUnlock()
	return k, ok
}

// KeyBySecretHash returns the key whose secret hashes to h, of any role
// and expired or not: the caller judges the role (Key.RoleOrDefault)
// and the expiry (Key.Expired) for what it is asked to do. No two keys
// share a secret, whatever their roles.
func (c *Catalog) KeyBySecretHash(h []byte) (*Key, bool) {
	c.mu.RLock()
	k, ok := c.keysByHash[string(h)]
	c.mu.RUnlock()
	return k, ok
}

// Keys returns every key, of every role, sorted by ID.
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

// KeyCount returns how many keys (tokens of every role) the catalog
// holds.
func (c *Catalog) KeyCount() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.keys)
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
