package httpapi_test

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/seedapi"
)

// specPath is docs/openapi.json, relative to this package's directory (go
// test runs in the package directory).
const specPath = "../../docs/openapi.json"

// loadSpec reads and parses docs/openapi.json as generic JSON.
func loadSpec(tb testing.TB) map[string]any {
	tb.Helper()
	b, err := os.ReadFile(specPath)
	if err != nil {
		tb.Fatalf("read spec: %v", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		tb.Fatalf("parse %s: %v", specPath, err)
	}
	return spec
}

// object returns v[key] as a JSON object, failing the test if it is not one.
func object(tb testing.TB, v map[string]any, key, where string) map[string]any {
	tb.Helper()
	o, ok := v[key].(map[string]any)
	if !ok {
		tb.Fatalf("%s: %q is missing or not an object", where, key)
	}
	return o
}

// operation is one method of one path in the spec.
type operation struct {
	route string // "METHOD /pattern", as httpapi.Routes spells it
	path  string
	item  map[string]any // the path item, for path-level parameters
	op    map[string]any
}

// specOperations returns every operation under the spec's paths, sorted by
// route.
func specOperations(tb testing.TB, spec map[string]any) []operation {
	tb.Helper()
	// The keys of an OpenAPI path item that hold operations.
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	var ops []operation
	for path, v := range object(tb, spec, "paths", "spec") {
		item, ok := v.(map[string]any)
		if !ok {
			tb.Fatalf("paths[%q] is not an object", path)
		}
		for _, m := range methods {
			raw, ok := item[m]
			if !ok {
				continue
			}
			op, ok := raw.(map[string]any)
			if !ok {
				tb.Fatalf("paths[%q].%s is not an object", path, m)
			}
			ops = append(ops, operation{route: strings.ToUpper(m) + " " + path, path: path, item: item, op: op})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].route < ops[j].route })
	return ops
}

// TestOpenAPI_Routes checks that the spec documents exactly the routes the
// handler serves: a route added on either side without the other fails.
func TestOpenAPI_Routes(t *testing.T) {
	spec := loadSpec(t)

	routes := map[string]bool{}
	// The tutorial protocol's routes are served beside /v1 and documented
	// in the same spec.
	for _, r := range append(httpapi.Routes(), seedapi.Routes()...) {
		method, pattern, ok := strings.Cut(r, " ")
		if !ok || method != strings.ToUpper(method) || !strings.HasPrefix(pattern, "/") {
			t.Errorf("route %q is not \"METHOD /pattern\"", r)
		}
		if routes[r] {
			t.Errorf("route %q is listed twice in routes.go", r)
		}
		routes[r] = true
	}
	if len(routes) == 0 {
		t.Fatal("httpapi.Routes() returned no routes")
	}

	documented := map[string]bool{}
	for _, op := range specOperations(t, spec) {
		documented[op.route] = true
	}

	t.Run("every route is documented", func(t *testing.T) {
		for r := range routes {
			if !documented[r] {
				method, pattern, _ := strings.Cut(r, " ")
				t.Errorf("route %q is not in docs/openapi.json (add paths[%q].%s)", r, pattern, strings.ToLower(method))
			}
		}
	})
	t.Run("every documented operation is a route", func(t *testing.T) {
		for r := range documented {
			if !routes[r] {
				t.Errorf("docs/openapi.json documents %q, which routes.go does not serve", r)
			}
		}
	})
}

// TestOpenAPI_Operations checks each operation: it has at least one
// response, a unique operationId, and a required path parameter for every
// {name} in its path template.
func TestOpenAPI_Operations(t *testing.T) {
	spec := loadSpec(t)
	wildcard := regexp.MustCompile(`\{([^}]+)\}`)
	ids := map[string]string{}
	for _, o := range specOperations(t, spec) {
		t.Run(o.route, func(t *testing.T) {
			responses, _ := o.op["responses"].(map[string]any)
			if len(responses) == 0 {
				t.Error("no documented responses")
			}
			for status, v := range responses {
				resp := resolve(t, spec, v)
				if d, _ := resp["description"].(string); d == "" {
					t.Errorf("response %s has no description", status)
				}
			}

			id, _ := o.op["operationId"].(string)
			if id == "" {
				t.Error("no operationId")
			} else if prev, dup := ids[id]; dup {
				t.Errorf("operationId %q is also used by %s", id, prev)
			}
			ids[id] = o.route

			declared := map[string]bool{}
			for _, list := range []any{o.item["parameters"], o.op["parameters"]} {
				params, _ := list.([]any)
				for _, p := range params {
					param := resolve(t, spec, p)
					if param["in"] == "path" {
						if param["required"] != true {
							t.Errorf("path parameter %v is not required", param["name"])
						}
						name, _ := param["name"].(string)
						declared[name] = true
					}
				}
			}
			for _, m := range wildcard.FindAllStringSubmatch(o.path, -1) {
				if !declared[m[1]] {
					t.Errorf("path parameter {%s} is not declared", m[1])
				}
				delete(declared, m[1])
			}
			for name := range declared {
				t.Errorf("path parameter %q is declared but not in the path", name)
			}
		})
	}
}

// TestOpenAPI_Refs checks that every $ref in the document points into
// components and resolves to an object there.
func TestOpenAPI_Refs(t *testing.T) {
	spec := loadSpec(t)
	var n int
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"]; ok {
				n++
				s, _ := ref.(string)
				if !strings.HasPrefix(s, "#/components/") {
					t.Errorf("%s: $ref %v does not point into #/components/", at, ref)
				} else if _, ok := lookupPointer(spec, s); !ok {
					t.Errorf("%s: $ref %q does not resolve", at, s)
				}
			}
			for k, e := range v {
				walk(e, at+"/"+k)
			}
		case []any:
			for i, e := range v {
				walk(e, at+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(spec, "#")
	if n == 0 {
		t.Error("the spec has no $ref at all; the walk is probably broken")
	}
}

// TestOpenAPI_Schemas checks that each wire type of package api has a
// schema with the same JSON fields, the same required set (fields without
// omitempty are always sent, or always required) and matching types.
func TestOpenAPI_Schemas(t *testing.T) {
	spec := loadSpec(t)
	schemas := object(t, object(t, spec, "components", "spec"), "schemas", "components")
	tests := []struct {
		name string
		typ  reflect.Type
	}{
		{"ErrorBody", reflect.TypeFor[api.ErrorBody]()},
		{"ErrorDetail", reflect.TypeFor[api.ErrorDetail]()},
		{"RegisterRequest", reflect.TypeFor[api.RegisterRequest]()},
		{"RegisterResponse", reflect.TypeFor[api.RegisterResponse]()},
		{"VerifyRequest", reflect.TypeFor[api.VerifyRequest]()},
		{"VerifyResponse", reflect.TypeFor[api.VerifyResponse]()},
		{"HeartbeatResponse", reflect.TypeFor[api.HeartbeatResponse]()},
		{"HeartbeatsRequest", reflect.TypeFor[api.HeartbeatsRequest]()},
		{"Beat", reflect.TypeFor[api.Beat]()},
		{"HeartbeatsResponse", reflect.TypeFor[api.HeartbeatsResponse]()},
		{"BeatResult", reflect.TypeFor[api.BeatResult]()},
		{"Instance", reflect.TypeFor[api.Instance]()},
		{"LookupResponse", reflect.TypeFor[api.LookupResponse]()},
		{"ServiceSummary", reflect.TypeFor[api.ServiceSummary]()},
		{"ServicesResponse", reflect.TypeFor[api.ServicesResponse]()},
		{"CreateKeyRequest", reflect.TypeFor[api.CreateKeyRequest]()},
		{"Key", reflect.TypeFor[api.Key]()},
		{"KeysResponse", reflect.TypeFor[api.KeysResponse]()},
		{"Health", reflect.TypeFor[api.Health]()},
		{"CheckDecl", reflect.TypeFor[api.CheckDecl]()},
		{"CheckState", reflect.TypeFor[api.CheckState]()},
		{"WatchSnapshot", reflect.TypeFor[api.WatchSnapshot]()},
		{"Event", reflect.TypeFor[api.Event]()},
		{"RestoreResponse", reflect.TypeFor[api.RestoreResponse]()},
		{"Member", reflect.TypeFor[api.Member]()},
		{"MembersResponse", reflect.TypeFor[api.MembersResponse]()},
		{"ClusterSelf", reflect.TypeFor[api.ClusterSelf]()},
		{"AuditRecord", reflect.TypeFor[api.AuditRecord]()},
		{"AuditResponse", reflect.TypeFor[api.AuditResponse]()},
		{"CertificateRequest", reflect.TypeFor[api.CertificateRequest]()},
		{"CertificateResponse", reflect.TypeFor[api.CertificateResponse]()},
		{"CAResponse", reflect.TypeFor[api.CAResponse]()},
		{"CAInfo", reflect.TypeFor[api.CAInfo]()},
		{"CARotateResponse", reflect.TypeFor[api.CARotateResponse]()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.typ.Name() != tt.name {
				t.Fatalf("schema %s is paired with api.%s", tt.name, tt.typ.Name())
			}
			s, ok := schemas[tt.name].(map[string]any)
			if !ok {
				t.Fatalf("components.schemas.%s is missing", tt.name)
			}
			if s["type"] != "object" {
				t.Errorf("type is %v, want object", s["type"])
			}
			props, _ := s["properties"].(map[string]any)
			required := map[string]bool{}
			if list, ok := s["required"].([]any); ok {
				for _, r := range list {
					name, _ := r.(string)
					required[name] = true
				}
			}
			fields := map[string]bool{}
			for i := 0; i < tt.typ.NumField(); i++ {
				f := tt.typ.Field(i)
				tag := f.Tag.Get("json")
				name, opts, _ := strings.Cut(tag, ",")
				if !f.IsExported() || name == "-" {
					continue
				}
				if name == "" {
					name = f.Name
				}
				fields[name] = true
				p, ok := props[name].(map[string]any)
				if !ok {
					t.Errorf("field %s (%s) is not a property", name, f.Type)
					continue
				}
				checkType(t, name, f.Type, p)
				omit := strings.Contains(","+opts+",", ",omitempty,")
				if !omit && !required[name] {
					t.Errorf("field %s has no omitempty, so it is always present: list it in required", name)
				}
				if omit && required[name] {
					t.Errorf("field %s is omitempty but listed in required", name)
				}
			}
			for name := range props {
				if !fields[name] {
					t.Errorf("property %s is not a field of api.%s", name, tt.name)
				}
			}
			for name := range required {
				if !fields[name] {
					t.Errorf("required %s is not a field of api.%s", name, tt.name)
				}
			}
		})
	}
}

// checkType reports whether the property schema p describes Go type typ.
func checkType(tb testing.TB, name string, typ reflect.Type, p map[string]any) {
	tb.Helper()
	want := ""
	switch typ.Kind() {
	case reflect.String:
		want = "string"
	case reflect.Bool:
		want = "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "integer"
	case reflect.Float32, reflect.Float64:
		want = "number"
	case reflect.Slice:
		want = "array"
	case reflect.Map:
		want = "object"
	case reflect.Pointer: // an optional object, omitted when nil
		checkType(tb, name, typ.Elem(), p)
		return
	case reflect.Struct:
		ref := "#/components/schemas/" + typ.Name()
		if p["$ref"] != ref {
			tb.Errorf("%s: want $ref %q, got %v", name, ref, p["$ref"])
		}
		return
	default:
		tb.Errorf("%s: Go kind %s has no mapping in this test", name, typ.Kind())
		return
	}
	if p["type"] != want {
		tb.Errorf("%s: type is %v, want %s for Go %s", name, p["type"], want, typ)
		return
	}
	switch typ.Kind() {
	case reflect.Slice:
		items, ok := p["items"].(map[string]any)
		if !ok {
			tb.Errorf("%s: array without items", name)
			return
		}
		checkType(tb, name+"[]", typ.Elem(), items)
	case reflect.Map:
		values, ok := p["additionalProperties"].(map[string]any)
		if !ok {
			tb.Errorf("%s: map without an additionalProperties schema", name)
			return
		}
		checkType(tb, name+"{}", typ.Elem(), values)
	}
}

// resolve follows v's $ref, if it has one, and returns the object.
func resolve(tb testing.TB, spec map[string]any, v any) map[string]any {
	tb.Helper()
	o, ok := v.(map[string]any)
	if !ok {
		tb.Fatalf("%v is not an object", v)
	}
	ref, ok := o["$ref"].(string)
	if !ok {
		return o
	}
	target, ok := lookupPointer(spec, ref)
	if !ok {
		tb.Fatalf("$ref %q does not resolve", ref)
	}
	return target
}

// lookupPointer resolves a local JSON pointer such as
// "#/components/schemas/Instance" to the object it names.
func lookupPointer(spec map[string]any, ref string) (map[string]any, bool) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	cur := spec
	for _, part := range strings.Split(rest, "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		next, ok := cur[part].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}
