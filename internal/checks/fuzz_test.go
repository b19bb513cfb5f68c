package checks

import (
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"testing"

	"github.com/musterhq/muster/api"
)

// FuzzParse decodes check declarations as a registration's body carries
// them and validates them. Whatever the input: no panic; an error is a
// *FieldError naming "checks" or one check's wire field; accepted checks
// are within every limit, and their wire form parses back to themselves.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`[{"type": "http", "path": "/healthz", "interval": "5s", "timeout": "1s"}, {"type": "tcp", "interval": "10s"}, {"type": "grpc", "interval": "5s"}]`,
		`[{"type": "grpc", "grpc_service": "pay.v1.Pay", "port": 9090, "failures_before_critical": 1, "successes_before_passing": 10}]`,
		`[{"type": "http", "path": "/a?b=%2F&c", "interval": "1h", "timeout": "10s"}]`,
		`[{"type": "http", "path": "//x"}]`,
		`[{"type": "tcp", "interval": "-1s"}]`,
		`[{"type": "tcp", "timeout": "9223372036854775807ns"}]`,
		`[{}, {}, {}, {}, {}, {}, {}, {}, {}]`,
		`[{"type": "http", "port": 70000}]`,
		`null`,
	} {
		f.Add([]byte(s), "http")
	}
	f.Add([]byte(`[{"type": "tcp"}]`), "https")
	f.Add([]byte(`[{"type": "http"}]`), "https")
	f.Add([]byte(`[{"type": "grpc"}]`), "https")
	f.Add([]byte(`[{"type": "tcp"}]`), "ftp")
	field := regexp.MustCompile(`^checks(\[[0-7]\]\.(type|path|port|interval|timeout|grpc_service|failures_before_critical|successes_before_passing))?$`)
	f.Fuzz(func(t *testing.T, body []byte, scheme string) {
		var decls []api.CheckDecl
		if json.Unmarshal(body, &decls) != nil {
			return
		}
		checks, err := Parse(decls, scheme)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !field.MatchString(fe.Field) || fe.Message == "" {
				t.Fatalf("Parse error %#v", err)
			}
			return
		}
		if len(checks) != len(decls) || len(checks) > MaxChecks {
			t.Fatalf("%d checks from %d declarations", len(checks), len(decls))
		}
		for _, c := range checks {
			if err := c.Validate(); err != nil {
				t.Fatalf("accepted %+v, which Validate refuses: %v", c, err)
			}
			if c.Timeout > c.Interval || c.Interval < MinInterval || c.Timeout > MaxTimeout {
				t.Fatalf("accepted %+v", c)
			}
		}
		wire, err := json.Marshal(Decls(checks))
		if err != nil {
			t.Fatal(err)
		}
		var again []api.CheckDecl
		if err := json.Unmarshal(wire, &again); err != nil {
			t.Fatal(err)
		}
		back, err := Parse(again, scheme)
		if err != nil || !slices.Equal(back, checks) {
			t.Fatalf("round trip of %s: %+v, %v; want %+v", wire, back, err, checks)
		}
	})
}
