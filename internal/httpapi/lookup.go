package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/health"
)

// lookupQuery is a parsed GET /v1/services/{service} query.
type lookupQuery struct {
	tags   []string
	meta   []string
	status string // passing, critical, draining or any
}

func parseLookupQuery(q map[string][]string) (lookupQuery, *Error) {
	lq := lookupQuery{status: catalog.StatusPassing}
	for k, vs := range q {
		switch k {
		case "tag":
			for _, v := range vs {
				if v == "" {
					return lq, badField("tag", "tag filter must not be empty")
				}
			}
			lq.tags = vs
		case "meta":
			for _, v := range vs {
				if k, _, ok := strings.Cut(v, ":"); !ok || k == "" {
					return lq, badField("meta", "meta filter %q must be key:value", v)
				}
			}
			lq.meta = vs
		case "status":
			switch s := vs[len(vs)-1]; s {
			case "passing", "critical", "draining", "any":
				lq.status = s
			default:
				return lq, badField("status", "status must be passing, critical, draining or any")
			}
		default:
			return lq, badField(k, "unknown query parameter %q", k)
		}
	}
	return lq, nil
}

func (a *apiServer) toAPI(inst *catalog.Instance, floor, now time.Time) api.Instance {
	status, f := a.Tracker.View(inst, floor, now)
	lastSeen := int64(-1)
	if f.Age >= 0 {
		lastSeen = f.Age.Milliseconds()
	}
	tags := inst.Tags
	if tags == nil {
		tags = []string{}
	}
	meta := inst.Meta
	if meta == nil {
		meta = map[string]string{}
	}
	return api.Instance{
		ID: inst.ID, Service: inst.Service, Address: inst.Address, Port: inst.Port, Scheme: inst.Scheme,
		URL:  inst.URL(),
		Tags: tags, Meta: meta, Status: status,
		LastSeenMS: lastSeen, TTLMS: inst.TTL.Milliseconds(), Quality: f.Quality,
		Proof: inst.Proof, RegisteredAt: inst.RegisteredAtString(),
	}
}

// lookup handles GET /v1/services/{service}, served from memory. It is
// the hot path: the answer is assembled in a pooled buffer from each
// instance's cached encoding of its immutable fields plus the three that
// change (status, last_seen_ms, quality), with no reflection per request.
func (a *apiServer) lookup(w http.ResponseWriter, r *http.Request) {
	service := r.PathValue("service")
	if !catalog.ValidServiceName(service) {
		writeError(w, a.Logger, badField("service", "service name must be 1 to 63 of a-z 0-9 - _"))
		return
	}
	lq, qerr := parseLookupQuery(r.URL.Query())
	if qerr != nil {
		writeError(w, a.Logger, qerr)
		return
	}
	floor, ok := a.readyFloor(w)
	if !ok {
		return
	}
	bp := a.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	var index uint64
	view := a.Catalog.Service(service)
	if view != nil {
		index = view.Index
	}
	// Service names are [a-z0-9_-]: safe in JSON without escaping.
	b = append(b, `{"service":"`...)
	b = append(b, service...)
	b = append(b, `","index":`...)
	b = strconv.AppendUint(b, index, 10)
	b = append(b, `,"instances":[`...)
	if view != nil {
		now := a.Now()
		first := true
		for _, inst := range view.Instances {
			if !inst.HasTags(lq.tags) || !inst.HasMeta(lq.meta) {
				continue
			}
			status, f := a.Tracker.View(inst, floor, now)
			if lq.status != "any" && status != lq.status {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendInstance(b, inst, status, f)
		}
	}
	b = append(b, "]}\n"...)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h.Set(api.HeaderIndex, strconv.FormatUint(index, 10))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	if cap(b) <= 1<<20 { // do not keep huge buffers around
		*bp = b
		a.bufs.Put(bp)
	}
}

// appendInstance appends inst as the JSON of an api.Instance.
func appendInstance(b []byte, inst *catalog.Instance, status string, f health.Freshness) []byte {
	lastSeen := int64(-1)
	if f.Age >= 0 {
		lastSeen = f.Age.Milliseconds()
	}
	b = append(b, inst.Wire(encodeStatic)...)
	b = append(b, `,"status":"`...)
	b = append(b, status...) // one of a few fixed words
	b = append(b, `","last_seen_ms":`...)
	b = strconv.AppendInt(b, lastSeen, 10)
	b = append(b, `,"quality":`...)
	b = strconv.AppendFloat(b, f.Quality, 'f', -1, 64)
	return append(b, '}')
}

// encodeStatic encodes the fields of an api.Instance that cannot change for
// a stored instance, as an unterminated JSON object ("{...", no closing
// brace) for appendInstance to complete.
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
	}{inst.ID, inst.Service, inst.Address, inst.Port, inst.Scheme, inst.URL(), tags, meta,
		inst.TTL.Milliseconds(), inst.Proof, inst.RegisteredAtString()})
	if err != nil { // cannot happen: only strings, ints and a string map
		panic(err)
	}
	return b[:len(b)-1]
}

// listServices handles GET /v1/services: services with instances, and
// counts by status.
func (a *apiServer) listServices(w http.ResponseWriter, r *http.Request) {
	floor, ok := a.readyFloor(w)
	if !ok {
		return
	}
	now := a.Now()
	resp := api.ServicesResponse{Index: a.Catalog.Index(), Services: []api.ServiceSummary{}}
	for _, v := range a.Catalog.Services() {
		if len(v.Instances) == 0 {
			continue
		}
		s := api.ServiceSummary{Name: v.Name, Index: v.Index, Instances: len(v.Instances)}
		for _, inst := range v.Instances {
			switch a.Tracker.Status(inst, floor, now) {
			case catalog.StatusPassing:
				s.Passing++
			case catalog.StatusCritical:
				s.Critical++
			case catalog.StatusDraining:
				s.Draining++
			}
		}
		resp.Services = append(resp.Services, s)
	}
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(resp.Index, 10))
	writeJSON(w, http.StatusOK, resp)
}
