package httpapi

import (
	"encoding/json"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// The one encoder of an instance (api.Instance on the wire). Lookups and
// GET /v1/instances/{id} both write an instance as its static part (the
// fields that cannot change for a stored instance, encoded once) followed
// by the three that change on every read: status, last_seen_ms, quality.

// encodeStatic encodes the fields of an api.Instance that cannot change
// for a stored instance, as an unterminated JSON object ("{...", no
// closing brace) for appendInstance to complete.
func encodeStatic(inst *catalog.Instance) []byte {
	tags := inst.Tags
	if tags == nil {
		tags = []string{}
	}
	meta := inst.Meta
	if meta == nil {
		meta = map[string]string{}
	}
	b, err := json.Marshal(struct {
		ID           string            `json:"id"`
		Service      string            `json:"service"`
		Address      string            `json:"address"`
		Port         int               `json:"port"`
		Scheme       string            `json:"scheme"`
		URL          string            `json:"url"`
		Tags         []string          `json:"tags"`
		Meta         map[string]string `json:"meta"`
		TTLMS        int64             `json:"ttl_ms"`
		Proof        string            `json:"proof"`
		RegisteredAt string            `json:"registered_at"`
	}{inst.ID, inst.Service, inst.Address, inst.Port, inst.Scheme, instanceURL(inst), tags, meta,
		inst.TTL.Milliseconds(), inst.Proof, inst.RegisteredAt.UTC().Format(time.RFC3339Nano)})
	if err != nil { // cannot happen: only strings, ints and a string map
		panic(err)
	}
	return b[:len(b)-1]
}

// instanceURL returns scheme://address:port, with IPv6 addresses in
// brackets.
func instanceURL(inst *catalog.Instance) string {
	return inst.Scheme + "://" + net.JoinHostPort(inst.Address, strconv.Itoa(inst.Port))
}

// appendInstance appends e's instance as the JSON of an api.Instance, its
// static part being static (from encodeStatic).
func appendInstance(b, static []byte, e registry.Entry) []byte {
	return appendDynamic(append(b, static...), e)
}

// maxDynamic is the room a writer that flushes before an instance would
// overflow its buffer leaves for what appendDynamic appends: its keys, a
// status, an int64 and a quality, under 100 bytes in practice (a longer
// quality only lets the buffer grow past its size).
const maxDynamic = 128

// appendDynamic completes an instance's static encoding with the three
// fields that change on every read (fewer than maxDynamic bytes in
// practice).
func appendDynamic(b []byte, e registry.Entry) []byte {
	lastSeen := int64(-1)
	if e.Age >= 0 {
		lastSeen = e.Age.Milliseconds()
	}
	b = append(b, `,"status":"`...)
	b = append(b, e.Status...) // one of a few fixed words
	b = append(b, `","last_seen_ms":`...)
	b = strconv.AppendInt(b, lastSeen, 10)
	b = append(b, `,"quality":`...)
	b = strconv.AppendFloat(b, e.Quality, 'f', -1, 64)
	if len(e.Checks) > 0 {
		b = appendChecks(b, e.Checks)
	}
	return append(b, '}')
}

// appendChecks appends the "checks" field of an instance that declares
// active health checks. Only instances with checks pay for it: the
// output excerpts are free text, so they go through encoding/json.
func appendChecks(b []byte, cs []api.CheckState) []byte {
	enc, err := json.Marshal(cs)
	if err != nil { // cannot happen: strings and ints
		return b
	}
	b = append(b, `,"checks":`...)
	return append(b, enc...)
}

// instanceEncoder caches the static encoding of every instance of a
// service, keyed by the catalog's immutable view of the service: a view is
// never modified, only replaced, so an entry is valid exactly as long as
// its view is the current one. There is one entry per service; when a view
// is replaced, the new entry reuses the encodings of the instances the two
// views share (the same pointers), so a change costs one encoding per
// changed instance, not per instance of the service.
type instanceEncoder struct {
	// byView maps *catalog.ServiceView to *viewEncoding: the lock-free
	// read of the lookup hot path (a pointer key costs no allocation).
	byView sync.Map

	mu     sync.Mutex
	byName map[string]*viewEncoding // the current entry of each service
}

// viewEncoding is the static encoding of each instance of one view,
// aligned with view.Instances.
type viewEncoding struct {
	view   *catalog.ServiceView
	static [][]byte
}

func newInstanceEncoder() *instanceEncoder {
	return &instanceEncoder{byName: map[string]*viewEncoding{}}
}

// forView returns the encodings of v's instances.
func (c *instanceEncoder) forView(v *catalog.ServiceView) *viewEncoding {
	if e, ok := c.byView.Load(v); ok {
		return e.(*viewEncoding)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byView.Load(v); ok {
		return e.(*viewEncoding)
	}
	old := c.byName[v.Name]
	if old != nil && old.view.Index > v.Index {
		// A reader holding an older view than the cached one: encode it
		// without caching, so the newer entry stays.
		return build(v, old)
	}
	e := build(v, old)
	c.byView.Store(v, e)
	if old != nil {
		c.byView.Delete(old.view)
	}
	c.byName[v.Name] = e
	return e
}

// build encodes v's instances, reusing old's encodings of the instances
// both views hold. Both views are sorted by ID.
func build(v *catalog.ServiceView, old *viewEncoding) *viewEncoding {
	e := &viewEncoding{view: v, static: make([][]byte, len(v.Instances))}
	j := 0
	for i, inst := range v.Instances {
		if old != nil {
			for j < len(old.view.Instances) && old.view.Instances[j].ID < inst.ID {
				j++
			}
			if j < len(old.view.Instances) && old.view.Instances[j] == inst {
				e.static[i] = old.static[j]
				continue
			}
		}
		e.static[i] = encodeStatic(inst)
	}
	return e
}
