package consulapi

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/musterhq/muster/internal/httpapi"
)

// FuzzParseFilter: any filter expression is either one of the two forms
// served, whose parts are sound (a meta key of the allowed characters, a
// non-empty tag), or an error; it never panics.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`ServiceMeta.zone == "a"`, `ServiceMeta["zone"] == "a"`, `"blue" in ServiceTags`,
		`Service matches "x"`, `ServiceMeta.k == a`, `"" in ServiceTags`, `ServiceMeta[] == ""`, `==`, ` in `,
		`Service.Meta.zone == "a"`, `"v2" in Service.Tags`} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, health bool) {
		kind, key, val, err := parseFilter(s, health)
		switch {
		case err != nil:
			if !strings.Contains(err.Error(), "is not served") {
				t.Fatalf("parseFilter(%q): error %v does not say what is served", s, err)
			}
		case kind == "tag":
			if val == "" || key != "" {
				t.Fatalf("parseFilter(%q) = tag %q, key %q", s, val, key)
			}
		case kind == "meta":
			if key == "" {
				t.Fatalf("parseFilter(%q) = meta with no key", s)
			}
		default:
			t.Fatalf("parseFilter(%q) = kind %q", s, kind)
		}
	})
}

// FuzzParseWait: a wait is within 0 and the longest blocking query, or an
// error.
func FuzzParseWait(f *testing.F) {
	for _, s := range []string{"30s", "5m", "10", "11m", "-1s", "forever", "99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseWait(s)
		if err == nil && (d < 0 || d > 10*60*1e9) {
			t.Fatalf("parseWait(%q) = %v", s, d)
		}
	})
}

// FuzzTranslate: any registration body either reads as a muster
// registration whose parts are sound (a service ID, a port, a heartbeat
// or at least one probe of the instance's own host, a TTL of 0 only with
// probes) or is refused with a 400 naming a field; it never panics.
func FuzzTranslate(f *testing.F) {
	for _, s := range []string{
		`{"ID":"web-1","Name":"web","Address":"127.0.0.1","Port":8080,"Check":{"TTL":"10s"}}`,
		`{"Name":"web","Port":80,"Checks":[{"TTL":"5s","Status":"passing"},{"HTTP":"http://localhost:80/h","Interval":"1s"}]}`,
		`{"Name":"db","Address":"10.0.0.7","Port":5432,"Check":{"TCP":"10.0.0.7:5432","Interval":"10s","DeregisterCriticalServiceAfter":"1m"}}`,
		`{"Name":"g","Port":9,"Check":{"GRPC":"127.0.0.1:9/svc.v1","Interval":"2s"}}`,
		`{"Name":"web","Port":80,"Meta":{"muster_verify_port":"8600","muster_verify_scheme":"http"},"Check":{"TTL":"1s"}}`,
		`{"Name":"web","Port":80,"Check":{"CheckID":"service:web:1","TTL":"1s"}}`,
		`{"Name":"web","Port":80,"Kind":"connect-proxy"}`, `{"Name":"web","Port":80,"Check":{"Args":["x"]}}`, `{}`, `[]`, `null`,
	} {
		f.Add([]byte(s), "192.0.2.1")
	}
	f.Fuzz(func(t *testing.T, body []byte, caller string) {
		var b serviceRegistration
		if json.Unmarshal(body, &b) != nil {
			return
		}
		req, id, _, err := translate(b, caller)
		if err != nil {
			var he *httpapi.Error
			if !errors.As(err, &he) || he.Status != 400 || he.Field == "" {
				t.Fatalf("translate(%s): %v is not a 400 naming a field", body, err)
			}
			return
		}
		switch {
		case id == "" || (b.ID != "" && id != b.ID) || (b.ID == "" && id != b.Name):
			t.Fatalf("translate(%s): ID %q", body, id)
		case req.Port == 0:
			t.Fatalf("translate(%s): port %d", body, req.Port)
		case req.TTL == "0s" && len(req.Checks) == 0, req.TTL == "" && len(req.Checks) == 0:
			t.Fatalf("translate(%s): neither a heartbeat nor a probe", body)
		case b.Address == "" && req.Address != caller:
			t.Fatalf("translate(%s): address %q, not the caller's", body, req.Address)
		}
		for k := range req.Meta {
			if strings.HasPrefix(k, "muster_") {
				t.Fatalf("translate(%s): kept meta %q", body, k)
			}
		}
		for _, c := range req.Checks {
			if c.Port < 1 || c.Port > 65535 || (c.Type != "http" && c.Type != "tcp" && c.Type != "grpc") {
				t.Fatalf("translate(%s): check %+v", body, c)
			}
		}
	})
}

// FuzzCheckIDs: a check ID names one or two instances: the whole of
// what follows service:, and, when that ends in :<n> (n above 0), the
// part before it as the instance whose n-th check it is; anything else
// names none.
func FuzzCheckIDs(f *testing.F) {
	for _, s := range []string{"service:web-1", "service:redis:6379", "service:web:1", "service:", "web", "service::1", "service:a:0", "_service_maintenance:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		refs, ok := checkIDs(s)
		if !ok {
			if strings.HasPrefix(s, "service:") && len(s) > len("service:") {
				t.Fatalf("checkIDs(%q) names nothing", s)
			}
			return
		}
		rest := strings.TrimPrefix(s, "service:")
		if len(refs) == 0 || len(refs) > 2 || refs[0].ID != rest || refs[0].Check != 0 {
			t.Fatalf("checkIDs(%q) = %+v", s, refs)
		}
		if len(refs) == 2 && (refs[1].ID == "" || refs[1].Check < 1 || rest != refs[1].ID+":"+strconv.Itoa(refs[1].Check) && !strings.HasPrefix(rest, refs[1].ID+":")) {
			t.Fatalf("checkIDs(%q) = %+v", s, refs)
		}
	})
}
