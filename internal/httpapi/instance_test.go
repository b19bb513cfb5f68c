package httpapi

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// TestEncodeInstance: the one instance encoder writes every field of
// api.Instance and no other, with the URL bracketing IPv6 addresses and the
// registration time in UTC. (The URL and time strings were derived fields
// of catalog.Instance; they moved here with the encoding.)
func TestEncodeInstance(t *testing.T) {
	v4 := &catalog.Instance{ID: "v4", Service: "web-a", Address: "10.0.0.1", Port: 80, Scheme: "http",
		TTL: 10 * time.Second, Proof: api.ProofAddressPort, RegisteredAt: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)}
	v6 := &catalog.Instance{ID: "v6", Service: "web-b", Address: "fd00::1", Port: 8443, Scheme: "https",
		Tags: []string{"a"}, Meta: map[string]string{"k": "v"}, TTL: 1500 * time.Millisecond, Proof: api.ProofAddress,
		RegisteredAt: time.Date(2025, 6, 1, 2, 0, 0, 5, time.FixedZone("x", 2*3600))}
	checked := &catalog.Instance{ID: "c", Service: "db", Address: "10.0.0.2", Port: 5432, Scheme: "http",
		Proof: api.ProofAddressPort, RegisteredAt: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC),
		Checks: []catalog.Check{{Type: "http"}, {Type: "tcp"}}}
	for _, tc := range []struct {
		inst    *catalog.Instance
		e       registry.Entry
		want    api.Instance
		wantRaw string
	}{
		{v4, registry.Entry{Status: catalog.StatusPassing, Age: -1},
			api.Instance{ID: "v4", Service: "web-a", Address: "10.0.0.1", Port: 80, Scheme: "http", URL: "http://10.0.0.1:80",
				Tags: []string{}, Meta: map[string]string{}, Status: "passing", LastSeenMS: -1, TTLMS: 10000, Quality: 0,
				Proof: "address+port", RegisteredAt: "2025-01-02T03:04:05.000006Z"}, ""},
		{v6, registry.Entry{Status: catalog.StatusDraining, Age: 1234 * time.Millisecond, Quality: 0.875},
			api.Instance{ID: "v6", Service: "web-b", Address: "fd00::1", Port: 8443, Scheme: "https", URL: "https://[fd00::1]:8443",
				Tags: []string{"a"}, Meta: map[string]string{"k": "v"}, Status: "draining", LastSeenMS: 1234, TTLMS: 1500, Quality: 0.875,
				Proof: "address", RegisteredAt: "2025-06-01T00:00:00.000000005Z"}, ""},
		{checked, registry.Entry{Status: catalog.StatusCritical, Age: 20 * time.Millisecond, Quality: 0,
			Checks: []api.CheckState{{Type: "http", Status: "critical", Output: "HTTP 503: \"busy\"\n", LastRunMS: 20}, {Type: "tcp", Status: "passing", LastRunMS: -1}}},
			api.Instance{ID: "c", Service: "db", Address: "10.0.0.2", Port: 5432, Scheme: "http", URL: "http://10.0.0.2:5432",
				Tags: []string{}, Meta: map[string]string{}, Status: "critical", LastSeenMS: 20, TTLMS: 0, Quality: 0,
				Proof: "address+port", RegisteredAt: "2025-01-02T03:04:05.000006Z",
				Checks: []api.CheckState{{Type: "http", Status: "critical", Output: "HTTP 503: \"busy\"\n", LastRunMS: 20}, {Type: "tcp", Status: "passing", LastRunMS: -1}}}, ""},
	} {
		t.Run(tc.inst.ID, func(t *testing.T) {
			b := appendInstance(nil, encodeStatic(tc.inst), tc.e)
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(b, &keys); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			var got []string
			for k := range keys {
				got = append(got, k)
			}
			var want []string
			typ := reflect.TypeOf(api.Instance{})
			for i := range typ.NumField() {
				name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
				if opts == "omitempty" && reflect.ValueOf(tc.want).Field(i).IsZero() {
					continue // absent when empty
				}
				want = append(want, name)
			}
			sort.Strings(got)
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("keys %v, api.Instance has %v", got, want)
			}
			var inst api.Instance
			if err := json.Unmarshal(b, &inst); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(inst, tc.want) {
				t.Errorf("encoded\n %+v\nwant\n %+v", inst, tc.want)
			}
		})
	}
}

// TestInstanceEncoder_forView: one entry per service, valid while its view
// is current; a new view reuses the encodings of the instances it shares
// with the old one (the same bytes, not a new encoding); a reader holding
// an older view gets correct encodings without evicting the newer entry.
func TestInstanceEncoder_forView(t *testing.T) {
	cat := catalog.New()
	idx := uint64(0)
	apply := func(cmd catalog.Command) {
		t.Helper()
		idx++
		if res := cat.Apply(idx, cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	apply(catalog.Command{Op: catalog.OpCreateKey, Key: &catalog.Key{ID: "k", SecretHash: catalog.HashSecret("s"), Services: []string{"*"}}})
	reg := func(id string, port int) {
		apply(catalog.Command{Op: catalog.OpRegister, Instance: &catalog.Instance{ID: id, Service: "web", Address: "10.0.0.1", Port: port,
			Scheme: "http", TTL: time.Second, TokenHash: catalog.HashSecret(id), KeyID: "k", Status: catalog.StatusPassing}})
	}
	reg("a", 1)
	reg("c", 3)
	enc := newInstanceEncoder()
	v1 := cat.Service("web")
	e1 := enc.forView(v1)
	if enc.forView(v1) != e1 {
		t.Fatal("the same view was encoded twice")
	}
	reg("b", 2)
	v2 := cat.Service("web")
	e2 := enc.forView(v2)
	if len(e2.static) != 3 || &e2.static[0][0] != &e1.static[0][0] || &e2.static[2][0] != &e1.static[1][0] {
		t.Fatal("the new view did not reuse the encodings of unchanged instances")
	}
	if string(e2.static[1]) != string(encodeStatic(v2.Instances[1])) {
		t.Fatalf("new instance encoded as %s", e2.static[1])
	}
	if old := enc.forView(v1); len(old.static) != 2 || string(old.static[1]) != string(encodeStatic(v1.Instances[1])) {
		t.Fatal("an older view got wrong encodings")
	}
	if enc.forView(v2) != e2 {
		t.Fatal("reading an older view evicted the current entry")
	}
	if _, ok := enc.byView.Load(v1); ok {
		t.Fatal("the replaced view's entry was kept")
	}
}
