package catalog

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"
)

// snapshotVersion guards the snapshot format.
const snapshotVersion = 1

// state is the serialised form of the catalog (version 1; see codec.go).
type state struct {
	Version   int               `json:"version"`
	Index     uint64            `json:"index"`
	Instances []*instanceV1     `json:"instances"`
	Keys      []*keyV1          `json:"keys"`
	Services  map[string]uint64 `json:"services"`
	// Keyed are the services the tutorial protocol may never take (see
	// Catalog.Keyed), sorted; absent in snapshots written before rules 2.
	Keyed []string `json:"keyed,omitempty"`
	// Bars are the evictions' bars on endpoints, ended or not; absent in
	// snapshots written before evictions.
	Bars []*barV1 `json:"bars,omitempty"`
}

// barV1 is a Bar in snapshots.
type barV1 struct {
	Service  string    `json:"service"`
	Address  string    `json:"address"`
	Port     int       `json:"port"`
	Instance string    `json:"instance"`
	Reason   string    `json:"reason,omitempty"`
	Until    time.Time `json:"until"`
	Index    uint64    `json:"index"`
}

// Snapshot is a point-in-time copy of the catalog that can be written out
// while Apply goes on.
type Snapshot struct {
	index     uint64
	instances []*Instance
	keys      []*Key
	services  map[string]uint64
	keyed     []string
	bars      []*Bar
}

// Snapshot captures the catalog. The returned value shares only immutable
// instances and keys with the catalog.
func (c *Catalog) Snapshot() *Snapshot {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := &Snapshot{
		index:     c.index.Load(),
		instances: make([]*Instance, 0, len(c.instances)),
		keys:      make([]*Key, 0, len(c.keys)),
		services:  make(map[string]uint64, len(c.services)),
	}
	for _, inst := range c.instances {
		s.instances = append(s.instances, inst)
	}
	for _, k := range c.keys {
		s.keys = append(s.keys, k)
	}
	for name, v := range c.services {
		s.services[name] = v.Index
	}
	for name := range c.keyed {
		s.keyed = append(s.keyed, name)
	}
	sort.Strings(s.keyed)
	for _, b := range c.bars {
		s.bars = append(s.bars, b)
	}
	return s
}

// Index is the Raft index of the last command the snapshot holds.
func (s *Snapshot) Index() uint64 { return s.index }

// WriteTo writes the snapshot as JSON, instances and keys sorted by ID.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	st := state{
		Version:   snapshotVersion,
		Index:     s.index,
		Instances: make([]*instanceV1, 0, len(s.instances)),
		Keys:      make([]*keyV1, 0, len(s.keys)),
		Services:  s.services,
		Keyed:     s.keyed,
	}
	for _, b := range s.bars {
		st.Bars = append(st.Bars, &barV1{Service: b.Service, Address: b.Address, Port: b.Port, Instance: b.Instance,
			Reason: b.Reason, Until: b.Until, Index: b.Index})
	}
	sort.Slice(st.Bars, func(i, j int) bool { return st.Bars[i].Instance < st.Bars[j].Instance })
	for _, inst := range s.instances {
		st.Instances = append(st.Instances, instanceToV1(inst))
	}
	for _, k := range s.keys {
		st.Keys = append(st.Keys, keyToV1(k))
	}
	sort.Slice(st.Instances, func(i, j int) bool { return st.Instances[i].ID < st.Instances[j].ID })
	sort.Slice(st.Keys, func(i, j int) bool { return st.Keys[i].ID < st.Keys[j].ID })
	cw := &countWriter{w: w}
	err := json.NewEncoder(cw).Encode(&st)
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore replaces the catalog's whole state with a snapshot written by
// WriteTo. The snapshot is checked in full before anything changes: on
// error the catalog is unchanged.
func (c *Catalog) Restore(r io.Reader) error {
	var st state
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return fmt.Errorf("catalog: restore: %w", err)
	}
	if st.Version != snapshotVersion {
		return fmt.Errorf("catalog: restore: snapshot version %d, want %d", st.Version, snapshotVersion)
	}
	if err := st.check(); err != nil {
		return fmt.Errorf("catalog: restore: %w", err)
	}
	c.mu.Lock()
	c.reset()
	c.index.Store(st.Index)
	for _, r := range st.Keys {
		k := r.toKey()
		c.keys[k.ID] = k
		c.keysByHash[string(k.SecretHash)] = k
	}
	for _, r := range st.Instances {
		inst := r.toInstance()
		if inst.Status == StatusDraining { // written before draining became a flag
			inst.Status, inst.Draining = StatusPassing, true
		}
		c.putInstance(inst)
	}
	for name := range c.byService {
		if _, ok := st.Services[name]; !ok {
			st.Services[name] = st.Index
		}
	}
	for _, r := range st.Bars {
		c.addBar(&Bar{Service: r.Service, Address: r.Address, Port: r.Port, Instance: r.Instance, Reason: r.Reason, Until: r.Until, Index: r.Index})
	}
	for name, idx := range st.Services {
		c.rebuild(name, idx)
	}
	for _, name := range st.Keyed {
		c.keyed[name] = true
	}
	c.events.reset(st.Index)
	c.mu.Unlock()
	c.subs.notify(st.Index, nil, true)
	c.watch.wake(nil, true)
	c.events.wake()
	return nil
}

// check validates a decoded snapshot: every entry present and complete,
// no duplicate IDs.
func (st *state) check() error {
	for i, b := range st.Bars {
		if b == nil || b.Instance == "" || !ValidServiceName(b.Service) || b.Until.IsZero() {
			return fmt.Errorf("bar %d is missing or incomplete", i)
		}
	}
	keys := map[string]bool{}
	hashes := map[string]bool{}
	for i, k := range st.Keys {
		if k == nil || k.ID == "" || len(k.SecretHash) != sha256.Size || keys[k.ID] || hashes[string(k.SecretHash)] {
			return fmt.Errorf("key %d is missing, incomplete or duplicated", i)
		}
		keys[k.ID], hashes[string(k.SecretHash)] = true, true
	}
	ids := map[string]bool{}
	for i, inst := range st.Instances {
		if inst == nil || inst.ID == "" || !ValidServiceName(inst.Service) || len(inst.TokenHash) != sha256.Size ||
			!(validStatus(Status(inst.Status)) || Status(inst.Status) == StatusDraining) || ids[inst.ID] {
			return fmt.Errorf("instance %d is missing, incomplete or duplicated", i)
		}
		ids[inst.ID] = true
	}
	for name := range st.Services {
		if !ValidServiceName(name) {
			return fmt.Errorf("service name %q is invalid", name)
		}
	}
	if st.Services == nil {
		st.Services = map[string]uint64{}
	}
	return nil
}
