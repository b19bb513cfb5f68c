package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// parseLookupQuery parses a GET /v1/services/{service} query.
func parseLookupQuery(q map[string][]string) (registry.Filter, *Error) {
	f := registry.Filter{Status: catalog.StatusPassing}
	for k, vs := range q {
		switch k {
		case "tag":
			for _, v := range vs {
				if v == "" {
					return f, BadField("tag", "tag filter must not be empty")
				}
			}
			f.Tags = vs
		case "meta":
			for _, v := range vs {
				if k, _, ok := strings.Cut(v, ":"); !ok || k == "" {
					return f, BadField("meta", "meta filter %q must be key:value", v)
				}
			}
			f.Meta = vs
		case "status":
			switch s := catalog.Status(vs[len(vs)-1]); s {
			case catalog.StatusPassing, catalog.StatusCritical, catalog.StatusDraining, registry.StatusAny:
				f.Status = s
			default:
				return f, BadField("status", "status must be passing, critical, draining or any")
			}
		default:
			return f, BadField(k, "unknown query parameter %q", k)
		}
	}
	return f, nil
}

// lookup handles GET /v1/services/{service}, served from memory. It is
// the hot path: the answer is assembled in a pooled buffer from each
// instance's cached static encoding plus the three fields that change,
// with no reflection per request.
func (a *apiServer) lookup(w http.ResponseWriter, r *http.Request) error {
	service := r.PathValue("service")
	if err := registry.CheckServiceName(service); err != nil {
		return err
	}
	f, qerr := parseLookupQuery(r.URL.Query())
	if qerr != nil {
		return qerr
	}
	rd, err := a.reg.Service(service)
	if err != nil {
		return err
	}
	bp := a.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	index := rd.Index()
	// Service names are [a-z0-9_-]: safe in JSON without escaping.
	b = append(b, `{"service":"`...)
	b = append(b, service...)
	b = append(b, `","index":`...)
	b = strconv.AppendUint(b, index, 10)
	b = append(b, `,"instances":[`...)
	if rd.View != nil {
		enc := a.enc.forView(rd.View)
		first := true
		rd.Each(f, func(i int, e registry.Entry) bool {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendInstance(b, enc.static[i], e)
			return true
		})
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
	return nil
}

// listServices handles GET /v1/services: services with instances, and
// counts by status.
func (a *apiServer) listServices(w http.ResponseWriter, r *http.Request) error {
	sums, index, err := a.reg.Services()
	if err != nil {
		return err
	}
	resp := api.ServicesResponse{Index: index, Services: make([]api.ServiceSummary, 0, len(sums))}
	for _, s := range sums {
		resp.Services = append(resp.Services, api.ServiceSummary{Name: s.Name, Index: s.Index, Instances: s.Instances,
			Passing: s.Passing, Critical: s.Critical, Draining: s.Draining})
	}
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(resp.Index, 10))
	WriteJSON(w, http.StatusOK, resp)
	return nil
}
