package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
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
	f := a.Tracker.Freshness(inst.ID, inst.TTL, now)
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
		Tags: tags, Meta: meta, Status: a.Tracker.Status(inst, floor, now),
		LastSeenMS: lastSeen, TTLMS: inst.TTL.Milliseconds(), Quality: f.Quality,
		Proof: inst.Proof, RegisteredAt: inst.RegisteredAtString(),
	}
}

// lookup handles GET /v1/services/{service}, served from memory.
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
	resp := api.LookupResponse{Service: service, Instances: []api.Instance{}}
	if view := a.Catalog.Service(service); view != nil {
		resp.Index = view.Index
		now := a.Now()
		resp.Instances = make([]api.Instance, 0, len(view.Instances))
		for _, inst := range view.Instances {
			if !inst.HasTags(lq.tags) || !inst.HasMeta(lq.meta) {
				continue
			}
			ai := a.toAPI(inst, floor, now)
			if lq.status != "any" && ai.Status != lq.status {
				continue
			}
			resp.Instances = append(resp.Instances, ai)
		}
	}
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(resp.Index, 10))
	writeJSON(w, http.StatusOK, resp)
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
