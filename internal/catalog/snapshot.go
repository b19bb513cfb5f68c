package catalog

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Snapshots come in two formats (see codec.go for the rules of change):
//
//	version 1: one JSON value (state), instances and keys sorted by ID.
//	           Backups are written in it (WriteTo, GET /v1/snapshot, muster
//	           snapshot save), and Raft snapshots were until version 2.
//	           Written when no key is a token (OpCreateToken's fields).
//	version 4: JSON, as version 1 with keys' role, expires_at and
//	           callback_tls (absent: an enrolment key, no expiry, callbacks
//	           verify). Written only when a key has one of them: a muster
//	           that predates tokens refuses it (it reads version 1 only),
//	           rather than read a read or admin token as an enrolment key.
//	version 2: binary (WriteBinary; its layout is below), written for
//	           Raft's snapshot store: about a quarter of the bytes, written
//	           two to three times as fast and restored three to four times
//	           as fast (BenchmarkSnapshot), so that a restart of a large
//	           catalog is quick and snapshots can be taken often. Written
//	           when no key is a token; its keys are enrolment keys that
//	           never expire, their callbacks verifying.
//	version 3: binary, as version 2 with each key's role, expiry and
//	           callback TLS mode after its other fields.
//	version 5: binary, as version 3 with the CAs (ca.go) after the
//	           bars. Written only when the catalog holds a CA: a muster
//	           that predates CAs refuses it (and halts at the ca_add
//	           entry) rather than lose the CA that its cluster signs
//	           with. There is no JSON version with CAs: JSON is the
//	           format of backups, which never hold a CA's private key
//	           (a backup restored into a running registry keeps its CA,
//	           one restored into a new data dir gets a fresh one).
//	version 6: JSON, as version 4 with keys' consul_verify and
//	           instances' external_id (rules 5). Written only when one
//	           of them is set: a muster that predates them refuses it
//	           rather than drop them.
//	version 7: binary, as version 5 (a count of CAs, 0 when there is
//	           none) with each key's consul_verify after its callback
//	           TLS mode and each instance's external ID after its host
//	           IP. Written only when one of them is set.
//
// Each writer writes the oldest version that holds the state: a catalog
// without tokens is written as it was before tokens (JSON version 1,
// binary version 2), so that a cluster being upgraded one server at a
// time keeps sending its older followers snapshots they can install
// until a token is created; then an older muster refuses the snapshot
// (and halts at the create_token entry) rather than misread it.
//
// Restore reads them all, telling them apart by the first byte: version 1
// is JSON text and starts with '{' (or white space), the binary versions
// with a zero byte, and their version after the magic.
const (
	// snapshotVersion is the JSON format's version (version 1), the one
	// backups carry.
	snapshotVersion = 1
	// snapshotVersion2 is the first binary format's version, read only.
	snapshotVersion2 = 2
	// snapshotVersion4 is the JSON format's version with tokens' fields.
	snapshotVersion4 = 4
	// snapshotVersion3 is the binary format's version with tokens' fields:
	// version 2 and the keys' fields of tokens.
	snapshotVersion3 = 3
	// snapshotVersion5 is the binary format's version with CAs: version 3
	// and the CAs.
	snapshotVersion5 = 5
	// snapshotVersion6 is the JSON format's version with rules 5's
	// fields.
	snapshotVersion6 = 6
	// snapshotVersion7 is the binary format's version with rules 5's
	// fields: version 5 and those fields.
	snapshotVersion7 = 7
)

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
	// cas are the CAs, oldest first; only WriteBinary writes them.
	cas []*CA

	// sortOnce sorts the slices above before the first write, so that
	// writers (which may run concurrently) only read them.
	sortOnce sync.Once
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
	for name, sv := range c.services {
		s.services[name] = sv.index
	}
	for name := range c.keyed {
		s.keyed = append(s.keyed, name)
	}
	sort.Strings(s.keyed)
	for _, b := range c.bars {
		s.bars = append(s.bars, b)
	}
	s.cas = slices.Clone(c.cas)
	return s
}

// Index is the Raft index of the last command the snapshot holds.
func (s *Snapshot) Index() uint64 { return s.index }

// sorted sorts the snapshot's instances, keys (by ID) and bars (by
// instance), once, so that a snapshot of a state is always the same
// bytes. The slices are the snapshot's own; sorting them outside
// Catalog.Snapshot keeps the catalog's lock short.
func (s *Snapshot) sorted() {
	s.sortOnce.Do(s.sort)
}

func (s *Snapshot) sort() {
	sortByID(s.instances)
	slices.SortFunc(s.keys, func(a, b *Key) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(s.bars, func(a, b *Bar) int { return strings.Compare(a.Instance, b.Instance) })
}

// sortByID sorts instances by ID. It compares the first eight bytes of
// each ID as one number held beside the pointer, and the IDs themselves
// only when those are equal: comparing through the pointers, each to an
// instance elsewhere in memory, was most of a snapshot's cost.
func sortByID(instances []*Instance) {
	type entry struct {
		prefix uint64 // the ID's first 8 bytes, big-endian, padded with zeros
		in     *Instance
	}
	es := make([]entry, len(instances))
	for i, in := range instances {
		var b [8]byte
		copy(b[:], in.ID)
		es[i] = entry{binary.BigEndian.Uint64(b[:]), in}
	}
	slices.SortFunc(es, func(a, b entry) int {
		if c := cmp.Compare(a.prefix, b.prefix); c != 0 {
			return c
		}
		return strings.Compare(a.in.ID, b.in.ID)
	})
	for i, e := range es {
		instances[i] = e.in
	}
}

// WriteTo writes the snapshot as JSON (the format of backups: version 1,
// 4 when a key is a token, 6 when a key or instance has a field of rules
// 5), instances and keys sorted by ID. It never writes the CAs: a backup
// holds no CA private key.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	s.sorted()
	version := snapshotVersion
	if s.hasTokens() {
		version = snapshotVersion4
	}
	if s.hasExternal() {
		version = snapshotVersion6
	}
	st := state{
		Version:   version,
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
	for _, inst := range s.instances {
		st.Instances = append(st.Instances, instanceToV1(inst))
	}
	for _, k := range s.keys {
		st.Keys = append(st.Keys, keyToV1(k))
	}
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

// restored is a decoded snapshot, of either version, checked and ready to
// become the catalog's state.
type restored struct {
	index     uint64
	instances []*Instance
	keys      []*Key
	services  map[string]uint64
	keyed     []string
	bars      []*Bar
	cas       []*CA
}

// Restore replaces the catalog's whole state with a snapshot written by
// WriteTo (version 1 or 4) or WriteBinary (version 2 or 3). The snapshot is
// checked in full before anything changes: on error the catalog is
// unchanged.
func (c *Catalog) Restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		rs  *restored
		err error
	)
	if first, perr := br.Peek(1); perr == nil && first[0] == 0 {
		rs, err = readSnapshotBinary(br)
	} else {
		rs, err = readSnapshotV1(br)
	}
	if err != nil {
		return fmt.Errorf("catalog: restore: %w", err)
	}
	c.install(rs)
	return nil
}

// readSnapshotV1 decodes and checks a JSON snapshot.
func readSnapshotV1(r io.Reader) (*restored, error) {
	var st state
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return nil, err
	}
	if st.Version != snapshotVersion && st.Version != snapshotVersion4 && st.Version != snapshotVersion6 {
		return nil, fmt.Errorf("snapshot version %d, want %d, %d or %d (JSON), or %d, %d, %d or %d (binary)", st.Version,
			snapshotVersion, snapshotVersion4, snapshotVersion6, snapshotVersion2, snapshotVersion3, snapshotVersion5, snapshotVersion7)
	}
	if err := st.checkVersion(); err != nil {
		return nil, err
	}
	if err := st.check(); err != nil {
		return nil, err
	}
	rs := &restored{index: st.Index, services: st.Services, keyed: st.Keyed,
		instances: make([]*Instance, len(st.Instances)), keys: make([]*Key, len(st.Keys)), bars: make([]*Bar, len(st.Bars))}
	for i, r := range st.Instances {
		rs.instances[i] = r.toInstance()
	}
	for i, r := range st.Keys {
		rs.keys[i] = r.toKey()
	}
	for i, r := range st.Bars {
		rs.bars[i] = &Bar{Service: r.Service, Address: r.Address, Port: r.Port, Instance: r.Instance, Reason: r.Reason, Until: r.Until, Index: r.Index}
	}
	return rs, nil
}

// install makes rs, checked, the catalog's whole state, and tells every
// subscriber, watch and stream that everything changed.
func (c *Catalog) install(rs *restored) {
	c.mu.Lock()
	c.reset()
	// Sized at once: growing maps of 100,000 entries step by step was a
	// good part of a restore's time.
	n := len(rs.instances)
	c.instances = make(map[string]*Instance, n)
	c.addrs = make(map[string]string, n)
	c.services = make(map[string]*svc, len(rs.services))
	sizes := make(map[string]int, len(rs.services))
	for _, inst := range rs.instances {
		sizes[inst.Service]++
	}
	lists := make(map[string][]*Instance, len(sizes))
	for name, size := range sizes {
		lists[name] = make([]*Instance, 0, size)
	}
	c.index.Store(rs.index)
	for _, k := range rs.keys {
		c.keys[k.ID] = k
		c.keysByHash[string(k.SecretHash)] = k
	}
	for _, inst := range rs.instances {
		if inst.Status == StatusDraining { // written before draining became a flag
			inst.Status, inst.Draining = StatusPassing, true
		}
		c.putInstance(inst)
	}
	for _, inst := range c.instances { // a later instance of an ID replaced an earlier one
		lists[inst.Service] = append(lists[inst.Service], inst)
	}
	for name := range lists {
		if _, ok := rs.services[name]; !ok {
			rs.services[name] = rs.index
		}
	}
	for _, b := range rs.bars {
		c.addBar(b)
	}
	for name, idx := range rs.services {
		c.rebuild(name, idx, lists[name])
	}
	for _, name := range rs.keyed {
		c.keyed[name] = true
	}
	c.cas = rs.cas
	c.events.reset(rs.index)
	c.mu.Unlock()
	c.subs.notify(rs.index, nil, true)
	c.watch.wake(nil, true)
	c.events.wake()
}

// The rules every snapshot's entries meet, whatever its version: what
// Apply could have produced.

func badBar(service, instance string, until time.Time) bool {
	return instance == "" || !ValidServiceName(service) || until.IsZero()
}

func badKey(id string, secretHash []byte) bool {
	return id == "" || len(secretHash) != sha256.Size
}

// keyProblem says what is wrong with the role, expiry or callback TLS
// mode of a snapshot's key i (tokenProblem's rules, which Apply keeps),
// or returns nil.
func keyProblem(i int, k *Key) error {
	if field, problem := tokenProblem(k); problem != "" {
		return fmt.Errorf("key %d (%s): %s: %s", i, k.ID, field, problem)
	}
	return nil
}

func badInstance(id, service string, tokenHash []byte, status Status) bool {
	return id == "" || !ValidServiceName(service) || len(tokenHash) != sha256.Size ||
		!(validStatus(status) || status == StatusDraining)
}

// check validates a decoded snapshot: every entry present and complete,
// no duplicate IDs.
func (st *state) check() error {
	for i, b := range st.Bars {
		if b == nil || badBar(b.Service, b.Instance, b.Until) {
			return fmt.Errorf("bar %d is missing or incomplete", i)
		}
	}
	keys := map[string]bool{}
	hashes := map[string]bool{}
	for i, k := range st.Keys {
		if k == nil || badKey(k.ID, k.SecretHash) || keys[k.ID] || hashes[string(k.SecretHash)] {
			return fmt.Errorf("key %d is missing, incomplete or duplicated", i)
		}
		if err := keyProblem(i, k.toKey()); err != nil {
			return err
		}
		keys[k.ID], hashes[string(k.SecretHash)] = true, true
	}
	ids := make(map[string]bool, len(st.Instances))
	for i, inst := range st.Instances {
		if inst == nil || badInstance(inst.ID, inst.Service, inst.TokenHash, Status(inst.Status)) || ids[inst.ID] {
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

// Versions 2 and 3, the binary snapshot. Integers are varints (encoding/binary):
// unsigned for counts, lengths and indexes, zig-zag signed for the int
// fields, durations (nanoseconds) and times. In order:
//
//	magic      "\x00muster-snapshot" (16 bytes), then the version, 2 or
//	           3, as one byte
//	index      the catalog's index
//	keys       a count, then each key, sorted by ID
//	instances  a count, then each instance, sorted by ID
//	services   a count, then each service's name (shared) and index,
//	           sorted by name
//	keyed      a count, then each name (shared), sorted
//	bars       a count, then each bar, sorted by instance ID
//	cas        version 5 only: a count, then each CA, oldest first
//	checksum   the CRC-32C (Castagnoli) of every byte before it, 4 bytes
//	           big-endian
//
// A string is its length and its bytes, and so is a byte string. A shared
// string (marked * below: names, addresses, schemes, tags, meta, key IDs,
// proofs, statuses: the values many instances have in common) is written
// once: a reference 0 followed by the string, which becomes the next
// entry of a table of shared strings, or a reference i > 0, entry i-1 of
// that table. A time is its Unix seconds, its nanoseconds (unsigned) and
// its zone's offset in seconds (0 is read as UTC). A bool is one byte, 0
// or 1.
//
//	key       id, secret hash (bytes), services (count, each *),
//	          description, max instances, created at, create index; and in
//	          version 3: role* (empty for a key of create_key), expires
//	          at (the zero time: never), callback TLS mode*
//	instance  id, service*, address*, port, scheme*, tags (count, each
//	          *), meta (count, then key* and value*, sorted by key), ttl,
//	          deregister after, token hash (bytes), key ID*, proof*, host
//	          IP*, checks (count, then each: type*, path*, port, interval,
//	          timeout, gRPC service*, failures before critical, successes
//	          before passing), status*, draining, registered at, create
//	          index, modify index
//	bar       service*, address*, port, instance, reason*, until, index
//	ca        id, certificate (bytes), private key (bytes), added at,
//	          create index
//
// It holds exactly the fields of version 1, and restores to the same
// catalog (TestSnapshot_WriteBinary); version 2 holds them but for the
// keys' fields of tokens, which it predates.
const snapshotMagic = "\x00muster-snapshot"

// snapshotHeaderLen is the magic and the version byte.
const snapshotHeaderLen = len(snapshotMagic) + 1

// WriteBinary writes the snapshot in the binary format Raft's snapshots
// are kept in (see Restore): version 2, 3 when a key is a token, or 5
// when the catalog holds a CA (whose private key it writes). Like
// WriteTo, it writes the same bytes for the same state, and may run
// while Apply goes on.
func (s *Snapshot) WriteBinary(w io.Writer) (int64, error) {
	s.sorted()
	e := &snapWriter{w: w, buf: make([]byte, 0, 128<<10), table: crc32.MakeTable(crc32.Castagnoli), strs: map[string]uint64{}}
	e.buf = append(e.buf, snapshotMagic...)
	version := byte(snapshotVersion2)
	if s.hasTokens() {
		version = snapshotVersion3
	}
	if len(s.cas) > 0 {
		version = snapshotVersion5
	}
	if s.hasExternal() {
		version = snapshotVersion7
	}
	e.buf = append(e.buf, version)
	e.uvarint(s.index)
	e.uvarint(uint64(len(s.keys)))
	for _, k := range s.keys {
		e.str(k.ID)
		e.bytes(k.SecretHash)
		e.uvarint(uint64(len(k.Services)))
		for _, p := range k.Services {
			e.shared(p)
		}
		e.str(k.Description)
		e.varint(int64(k.MaxInstances))
		e.time(k.CreatedAt)
		e.uvarint(k.CreateIndex)
		if version >= snapshotVersion3 {
			e.shared(string(k.Role))
			e.time(k.ExpiresAt)
			e.shared(string(k.CallbackTLS))
		}
		if version >= snapshotVersion7 {
			e.shared(string(k.ConsulVerify))
		}
	}
	e.uvarint(uint64(len(s.instances)))
	var metaKeys []string
	for _, in := range s.instances {
		e.str(in.ID)
		e.shared(in.Service)
		e.shared(in.Address)
		e.varint(int64(in.Port))
		e.shared(in.Scheme)
		e.uvarint(uint64(len(in.Tags)))
		for _, t := range in.Tags {
			e.shared(t)
		}
		metaKeys = metaKeys[:0]
		for k := range in.Meta {
			metaKeys = append(metaKeys, k)
		}
		sort.Strings(metaKeys)
		e.uvarint(uint64(len(metaKeys)))
		for _, k := range metaKeys {
			e.shared(k)
			e.shared(in.Meta[k])
		}
		e.varint(int64(in.TTL))
		e.varint(int64(in.DeregisterAfter))
		e.bytes(in.TokenHash)
		e.shared(in.KeyID)
		e.shared(in.Proof)
		e.shared(in.HostIP)
		if version >= snapshotVersion7 {
			e.str(in.ExternalID)
		}
		e.uvarint(uint64(len(in.Checks)))
		for _, c := range in.Checks {
			e.shared(c.Type)
			e.shared(c.Path)
			e.varint(int64(c.Port))
			e.varint(int64(c.Interval))
			e.varint(int64(c.Timeout))
			e.shared(c.GRPCService)
			e.varint(int64(c.FailuresBeforeCritical))
			e.varint(int64(c.SuccessesBeforePassing))
		}
		e.shared(string(in.Status))
		e.bool(in.Draining)
		e.time(in.RegisteredAt)
		e.uvarint(in.CreateIndex)
		e.uvarint(in.ModifyIndex)
		e.flushFull()
	}
	names := make([]string, 0, len(s.services))
	for name := range s.services {
		names = append(names, name)
	}
	sort.Strings(names)
	e.uvarint(uint64(len(names)))
	for _, name := range names {
		e.shared(name)
		e.uvarint(s.services[name])
	}
	e.uvarint(uint64(len(s.keyed)))
	for _, name := range s.keyed {
		e.shared(name)
	}
	e.uvarint(uint64(len(s.bars)))
	for _, b := range s.bars {
		e.shared(b.Service)
		e.shared(b.Address)
		e.varint(int64(b.Port))
		e.str(b.Instance)
		e.shared(b.Reason)
		e.time(b.Until)
		e.uvarint(b.Index)
	}
	if version >= snapshotVersion5 {
		e.uvarint(uint64(len(s.cas)))
		for _, ca := range s.cas {
			e.str(ca.ID)
			e.bytes(ca.CertDER)
			e.bytes(ca.KeyDER)
			e.time(ca.AddedAt)
			e.uvarint(ca.CreateIndex)
		}
	}
	e.flush()
	if e.err == nil {
		e.buf = binary.BigEndian.AppendUint32(e.buf, e.crc)
		e.write()
	}
	return e.n, e.err
}

// hasExternal reports whether a key or an instance of the snapshot has
// a field of rules 5 (ConsulVerify, ExternalID), which the older
// versions cannot hold.
func (s *Snapshot) hasExternal() bool {
	for _, k := range s.keys {
		if k.ConsulVerify != "" {
			return true
		}
	}
	for _, in := range s.instances {
		if in.ExternalID != "" {
			return true
		}
	}
	return false
}

// checkVersion refuses rules 5's fields in a JSON snapshot of an older
// version, which no muster writes.
func (st *state) checkVersion() error {
	if st.Version >= snapshotVersion6 {
		return nil
	}
	for i, k := range st.Keys {
		if k != nil && k.ConsulVerify != "" {
			return fmt.Errorf("key %d has consul_verify, which snapshot version %d predates", i, st.Version)
		}
	}
	for i, in := range st.Instances {
		if in != nil && in.ExternalID != "" {
			return fmt.Errorf("instance %d has external_id, which snapshot version %d predates", i, st.Version)
		}
	}
	return nil
}

// hasTokens reports whether a key of the snapshot has a field only
// OpCreateToken sets, which the older versions cannot hold.
func (s *Snapshot) hasTokens() bool {
	for _, k := range s.keys {
		if k.tokenOnly() {
			return true
		}
	}
	return false
}

// snapWriter encodes the binary format into a buffer that it writes out when it
// fills, keeping the checksum of what it wrote.
type snapWriter struct {
	w     io.Writer
	buf   []byte
	n     int64
	err   error
	table *crc32.Table
	crc   uint32
	// strs numbers the shared strings written so far, from 1.
	strs map[string]uint64
}

func (e *snapWriter) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *snapWriter) varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }

func (e *snapWriter) str(s string) {
	e.uvarint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *snapWriter) bytes(b []byte) {
	e.uvarint(uint64(len(b)))
	e.buf = append(e.buf, b...)
}

func (e *snapWriter) shared(s string) {
	if ref, ok := e.strs[s]; ok {
		e.uvarint(ref)
		return
	}
	e.uvarint(0)
	e.str(s)
	e.strs[s] = uint64(len(e.strs) + 1)
}

func (e *snapWriter) bool(b bool) {
	if b {
		e.buf = append(e.buf, 1)
	} else {
		e.buf = append(e.buf, 0)
	}
}

func (e *snapWriter) time(t time.Time) {
	_, off := t.Zone()
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
	e.varint(int64(off))
}

// flushFull writes the buffer out once it is nearly full.
func (e *snapWriter) flushFull() {
	if len(e.buf) >= cap(e.buf)-4<<10 {
		e.flush()
	}
}

// flush adds the buffer to the checksum and writes it out.
func (e *snapWriter) flush() {
	e.crc = crc32.Update(e.crc, e.table, e.buf)
	e.write()
}

func (e *snapWriter) write() {
	if e.err == nil {
		var n int
		n, e.err = e.w.Write(e.buf)
		e.n += int64(n)
	}
	e.buf = e.buf[:0]
}

// readSnapshotBinary reads a binary snapshot (version 2 or 3) to its
// end, decoding it as it reads (a restart's time goes largely to memory
// it touches for the first time, so the snapshot is never held whole),
// checks its checksum and then its entries.
func readSnapshotBinary(r io.Reader) (*restored, error) {
	d := &snapReader{r: r, buf: make([]byte, 64<<10), table: crc32.MakeTable(crc32.Castagnoli)}
	if !d.ensure(snapshotHeaderLen) || string(d.buf[:len(snapshotMagic)]) != snapshotMagic {
		if d.rerr != nil {
			return nil, d.rerr
		}
		return nil, errors.New("not a snapshot: it does not start as a muster snapshot")
	}
	d.version = d.buf[len(snapshotMagic)]
	if d.version != snapshotVersion2 && d.version != snapshotVersion3 && d.version != snapshotVersion5 && d.version != snapshotVersion7 {
		return nil, fmt.Errorf("snapshot version %d, want %d, %d or %d (JSON), or %d, %d, %d or %d (binary): a newer muster wrote it, or it is damaged",
			d.version, snapshotVersion, snapshotVersion4, snapshotVersion6, snapshotVersion2, snapshotVersion3, snapshotVersion5, snapshotVersion7)
	}
	d.off = snapshotHeaderLen
	rs := d.decode()
	d.trailer()
	switch {
	case d.rerr != nil: // the reader's fault, not the snapshot's
		return nil, d.rerr
	case d.err != nil:
		return nil, fmt.Errorf("version-%d snapshot, at byte %d: %w", d.version, d.pos(), d.err)
	}
	if err := rs.check(); err != nil {
		return nil, err
	}
	return rs, nil
}

// maxSnapshotString bounds a string or byte string of a snapshot: none
// the catalog holds comes near it (a request's body is at most 64 KiB),
// so a longer one is damage, and is not allocated.
const maxSnapshotString = 1 << 20

// snapReader decodes the binary format from a window of its input,
// keeping the checksum of what it consumed. The first error stops it:
// every read after it returns a zero value.
type snapReader struct {
	r     io.Reader
	buf   []byte
	off   int // buf[off:end] is read from r and not yet consumed
	end   int
	eof   bool
	base  int64 // bytes of the input before buf[0]
	table *crc32.Table
	crc   uint32 // of the input before buf[0]
	err   error  // what is wrong with the snapshot
	rerr  error  // r's own error, other than io.EOF
	// strs is the table of shared strings read so far.
	strs []string
	// version is the snapshot's, from its header.
	version byte
}

func (d *snapReader) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

// pos is the offset in the input of the next byte to consume.
func (d *snapReader) pos() int64 { return d.base + int64(d.off) }

// ensure makes n bytes readable at buf[off:], unless the input ends
// first, and reports whether they are.
func (d *snapReader) ensure(n int) bool {
	if d.end-d.off >= n {
		return true
	}
	if d.err != nil || d.rerr != nil {
		return false
	}
	d.crc = crc32.Update(d.crc, d.table, d.buf[:d.off])
	d.base += int64(d.off)
	d.end = copy(d.buf, d.buf[d.off:d.end])
	d.off = 0
	if n > len(d.buf) {
		d.buf = append(d.buf, make([]byte, n-len(d.buf))...)
	}
	for d.end < n && !d.eof {
		m, err := d.r.Read(d.buf[d.end:])
		d.end += m
		switch {
		case errors.Is(err, io.EOF):
			d.eof = true
		case err != nil:
			d.rerr = err
			return false
		}
	}
	return d.end >= n
}

// trailer checks the checksum after the last entry, and that the input
// ends there.
func (d *snapReader) trailer() {
	if d.err != nil || d.rerr != nil {
		return
	}
	if !d.ensure(4) {
		d.fail("cut short: the checksum is missing")
		return
	}
	sum := crc32.Update(d.crc, d.table, d.buf[:d.off])
	if stored := binary.BigEndian.Uint32(d.buf[d.off:]); stored != sum {
		d.fail("checksum mismatch (stored %08x, computed %08x)", stored, sum)
		return
	}
	d.off += 4
	if d.ensure(1) {
		d.fail("data follows the checksum")
	}
}

func (d *snapReader) decode() *restored {
	rs := &restored{index: d.uvarint()}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		k := &Key{ID: d.str(), SecretHash: d.bytes()}
		if n := d.count(); n > 0 {
			k.Services = make([]string, 0, min(n, 64))
			for ; n > 0 && d.err == nil; n-- {
				k.Services = append(k.Services, d.shared())
			}
		}
		k.Description = d.str()
		k.MaxInstances = d.int()
		k.CreatedAt = d.time()
		k.CreateIndex = d.uvarint()
		if d.version >= snapshotVersion3 {
			k.Role = Role(d.shared())
			k.ExpiresAt = d.time()
			k.CallbackTLS = CallbackTLS(d.shared())
		}
		if d.version >= snapshotVersion7 {
			k.ConsulVerify = ConsulVerify(d.shared())
		}
		rs.keys = append(rs.keys, k)
	}
	n := d.count()
	// A count is not checked against the input's length (it is not
	// known): what is allocated ahead is bounded, and grows with what
	// is read.
	rs.instances = make([]*Instance, 0, min(n, 1<<20))
	for ; n > 0 && d.err == nil; n-- {
		in := &Instance{ID: d.str(), Service: d.shared(), Address: d.shared(), Port: d.int(), Scheme: d.shared()}
		if n := d.count(); n > 0 {
			in.Tags = make([]string, 0, min(n, 64))
			for ; n > 0 && d.err == nil; n-- {
				in.Tags = append(in.Tags, d.shared())
			}
		}
		if n := d.count(); n > 0 {
			in.Meta = make(map[string]string, min(n, 64))
			for ; n > 0 && d.err == nil; n-- {
				k := d.shared()
				in.Meta[k] = d.shared()
			}
		}
		in.TTL = time.Duration(d.varint())
		in.DeregisterAfter = time.Duration(d.varint())
		in.TokenHash = d.bytes()
		in.KeyID = d.shared()
		in.Proof = d.shared()
		in.HostIP = d.shared()
		if d.version >= snapshotVersion7 {
			in.ExternalID = d.str()
		}
		if n := d.count(); n > 0 {
			in.Checks = make([]Check, 0, min(n, 64))
			for ; n > 0 && d.err == nil; n-- {
				in.Checks = append(in.Checks, Check{Type: d.shared(), Path: d.shared(), Port: d.int(), Interval: time.Duration(d.varint()),
					Timeout: time.Duration(d.varint()), GRPCService: d.shared(), FailuresBeforeCritical: d.int(), SuccessesBeforePassing: d.int()})
			}
		}
		in.Status = Status(d.shared())
		in.Draining = d.bool()
		in.RegisteredAt = d.time()
		in.CreateIndex = d.uvarint()
		in.ModifyIndex = d.uvarint()
		rs.instances = append(rs.instances, in)
	}
	n = d.count()
	rs.services = make(map[string]uint64, min(n, 1<<16))
	for ; n > 0 && d.err == nil; n-- {
		name := d.shared()
		rs.services[name] = d.uvarint()
	}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		rs.keyed = append(rs.keyed, d.shared())
	}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		rs.bars = append(rs.bars, &Bar{Service: d.shared(), Address: d.shared(), Port: d.int(), Instance: d.str(), Reason: d.shared(),
			Until: d.time(), Index: d.uvarint()})
	}
	if d.version >= snapshotVersion5 {
		for n := d.count(); n > 0 && d.err == nil; n-- {
			rs.cas = append(rs.cas, &CA{ID: d.str(), CertDER: d.bytes(), KeyDER: d.bytes(), AddedAt: d.time(), CreateIndex: d.uvarint()})
		}
	}
	return rs
}

func (d *snapReader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	d.ensure(binary.MaxVarintLen64)
	v, n := binary.Uvarint(d.buf[d.off:d.end])
	if n <= 0 {
		d.fail("a number is cut short or too large")
		return 0
	}
	d.off += n
	return v
}

// varint reads a signed varint: binary.PutVarint's zig-zag encoding of
// a uvarint.
func (d *snapReader) varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *snapReader) int() int {
	v := d.varint()
	if int64(int(v)) != v {
		d.fail("the number %d is out of range", v)
		return 0
	}
	return int(v)
}

// count reads a count, of entries or of bytes.
func (d *snapReader) count() int {
	v := d.uvarint()
	if v > 1<<40 {
		d.fail("a count of %d", v)
		return 0
	}
	return int(v)
}

// raw returns the next string's bytes, valid until the next read.
func (d *snapReader) raw() []byte {
	n := d.count()
	if n > maxSnapshotString {
		d.fail("a string of %d bytes, longer than any the catalog holds", n)
	}
	if d.err != nil {
		return nil
	}
	if !d.ensure(n) {
		d.fail("cut short")
		return nil
	}
	b := d.buf[d.off : d.off+n]
	d.off += n
	return b
}

func (d *snapReader) str() string { return string(d.raw()) }

func (d *snapReader) bytes() []byte {
	b := d.raw()
	if len(b) == 0 {
		return nil
	}
	return slices.Clone(b)
}

func (d *snapReader) shared() string {
	ref := d.uvarint()
	if ref == 0 {
		s := d.str()
		if d.err == nil {
			d.strs = append(d.strs, s)
		}
		return s
	}
	if ref > uint64(len(d.strs)) {
		d.fail("a reference to shared string %d of %d", ref, len(d.strs))
		return ""
	}
	return d.strs[ref-1]
}

func (d *snapReader) bool() bool {
	if d.err != nil {
		return false
	}
	if !d.ensure(1) {
		d.fail("cut short")
		return false
	}
	b := d.buf[d.off]
	d.off++
	if b > 1 {
		d.fail("a bool of %d", b)
	}
	return b == 1
}

func (d *snapReader) time() time.Time {
	sec, nsec, off := d.varint(), d.uvarint(), d.varint()
	if nsec >= 1e9 || off <= -1<<31 || off >= 1<<31 {
		d.fail("a time with %d nanoseconds and an offset of %d seconds", nsec, off)
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if off == 0 {
		return t.UTC()
	}
	return t.In(time.FixedZone("", int(off)))
}

// check validates a decoded binary snapshot by the rules version 1's
// check applies.
func (rs *restored) check() error {
	for i, b := range rs.bars {
		if badBar(b.Service, b.Instance, b.Until) {
			return fmt.Errorf("bar %d is incomplete", i)
		}
	}
	keys := make(map[string]bool, len(rs.keys))
	hashes := make(map[string]bool, len(rs.keys))
	for i, k := range rs.keys {
		if badKey(k.ID, k.SecretHash) || keys[k.ID] || hashes[string(k.SecretHash)] {
			return fmt.Errorf("key %d is incomplete or duplicated", i)
		}
		if err := keyProblem(i, k); err != nil {
			return err
		}
		keys[k.ID], hashes[string(k.SecretHash)] = true, true
	}
	ids := make(map[string]bool, len(rs.instances))
	for i, in := range rs.instances {
		if badInstance(in.ID, in.Service, in.TokenHash, in.Status) || ids[in.ID] {
			return fmt.Errorf("instance %d is incomplete or duplicated", i)
		}
		ids[in.ID] = true
	}
	for name := range rs.services {
		if !ValidServiceName(name) {
			return fmt.Errorf("service name %q is invalid", name)
		}
	}
	if len(rs.cas) > MaxCAs {
		return fmt.Errorf("%d CAs, at most %d", len(rs.cas), MaxCAs)
	}
	cas := map[string]bool{}
	for i, ca := range rs.cas {
		if err := validateCA(ca); err != nil || cas[ca.ID] {
			return fmt.Errorf("CA %d is incomplete or duplicated", i)
		}
		cas[ca.ID] = true
	}
	return nil
}
