package checks

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
)

// TestParse_wire decodes the issue's own example.
func TestParse_wire(t *testing.T) {
	const body = `[{"type": "http", "path": "/healthz", "interval": "5s", "timeout": "1s"}, {"type": "tcp", "interval": "10s"}, {"type": "grpc", "interval": "5s"}]`
	var decls []api.CheckDecl
	if err := json.Unmarshal([]byte(body), &decls); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(decls, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Check{
		{Type: "http", Path: "/healthz", Interval: 5 * time.Second, Timeout: time.Second, FailuresBeforeCritical: 3, SuccessesBeforePassing: 2},
		{Type: "tcp", Interval: 10 * time.Second, Timeout: 5 * time.Second, FailuresBeforeCritical: 3, SuccessesBeforePassing: 2},
		{Type: "grpc", Interval: 5 * time.Second, Timeout: 5 * time.Second, FailuresBeforeCritical: 3, SuccessesBeforePassing: 2},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
	}
}

func TestFromDecl(t *testing.T) {
	for _, tc := range []struct {
		name  string
		decl  api.CheckDecl
		want  Check  // when field is ""
		field string // the field the error names
	}{
		{name: "http defaults", decl: api.CheckDecl{Type: "http"},
			want: Check{Type: "http", Path: "/", Interval: 10 * time.Second, Timeout: 5 * time.Second, FailuresBeforeCritical: 3, SuccessesBeforePassing: 2}},
		{name: "short interval shortens the default timeout", decl: api.CheckDecl{Type: "tcp", Interval: "2s"},
			want: Check{Type: "tcp", Interval: 2 * time.Second, Timeout: 2 * time.Second, FailuresBeforeCritical: 3, SuccessesBeforePassing: 2}},
		{name: "everything", decl: api.CheckDecl{Type: "grpc", Port: 9090, Interval: "1m", Timeout: "250ms", GRPCService: "pay.v1.Pay", FailuresBeforeCritical: 10, SuccessesBeforePassing: 1},
			want: Check{Type: "grpc", Port: 9090, Interval: time.Minute, Timeout: 250 * time.Millisecond, GRPCService: "pay.v1.Pay", FailuresBeforeCritical: 10, SuccessesBeforePassing: 1}},
		{name: "query", decl: api.CheckDecl{Type: "http", Path: "/health?deep=1&x=%2F"},
			want: Check{Type: "http", Path: "/health?deep=1&x=%2F", Interval: 10 * time.Second, Timeout: 5 * time.Second, FailuresBeforeCritical: 3, SuccessesBeforePassing: 2}},

		{name: "no type", decl: api.CheckDecl{}, field: "type"},
		{name: "unknown type", decl: api.CheckDecl{Type: "icmp"}, field: "type"},
		{name: "upper-case type", decl: api.CheckDecl{Type: "HTTP"}, field: "type"},
		{name: "relative path", decl: api.CheckDecl{Type: "http", Path: "healthz"}, field: "path"},
		{name: "URL as path", decl: api.CheckDecl{Type: "http", Path: "http://evil/"}, field: "path"},
		{name: "network-path reference", decl: api.CheckDecl{Type: "http", Path: "//evil/x"}, field: "path"},
		{name: "fragment", decl: api.CheckDecl{Type: "http", Path: "/a#b"}, field: "path"},
		{name: "space", decl: api.CheckDecl{Type: "http", Path: "/a b"}, field: "path"},
		{name: "CRLF", decl: api.CheckDecl{Type: "http", Path: "/a\r\nHost: x"}, field: "path"},
		{name: "bad escape", decl: api.CheckDecl{Type: "http", Path: "/a%2"}, field: "path"},
		{name: "long path", decl: api.CheckDecl{Type: "http", Path: "/" + strings.Repeat("a", MaxPathLen)}, field: "path"},
		{name: "path on tcp", decl: api.CheckDecl{Type: "tcp", Path: "/"}, field: "path"},
		{name: "service on http", decl: api.CheckDecl{Type: "http", GRPCService: "a.B"}, field: "grpc_service"},
		{name: "bad service", decl: api.CheckDecl{Type: "grpc", GRPCService: "a B"}, field: "grpc_service"},
		{name: "negative port", decl: api.CheckDecl{Type: "tcp", Port: -1}, field: "port"},
		{name: "big port", decl: api.CheckDecl{Type: "tcp", Port: 65536}, field: "port"},
		{name: "interval not a duration", decl: api.CheckDecl{Type: "tcp", Interval: "5"}, field: "interval"},
		{name: "interval too short", decl: api.CheckDecl{Type: "tcp", Interval: "500ms"}, field: "interval"},
		{name: "interval too long", decl: api.CheckDecl{Type: "tcp", Interval: "2h"}, field: "interval"},
		{name: "timeout not a duration", decl: api.CheckDecl{Type: "tcp", Timeout: "soon"}, field: "timeout"},
		{name: "timeout over the interval", decl: api.CheckDecl{Type: "tcp", Interval: "2s", Timeout: "3s"}, field: "timeout"},
		{name: "timeout too long", decl: api.CheckDecl{Type: "tcp", Interval: "1m", Timeout: "30s"}, field: "timeout"},
		{name: "timeout too short", decl: api.CheckDecl{Type: "tcp", Timeout: "1ms"}, field: "timeout"},
		{name: "zero timeout", decl: api.CheckDecl{Type: "tcp", Timeout: "0s"}, field: "timeout"},
		{name: "failures", decl: api.CheckDecl{Type: "tcp", FailuresBeforeCritical: 11}, field: "failures_before_critical"},
		{name: "negative failures", decl: api.CheckDecl{Type: "tcp", FailuresBeforeCritical: -1}, field: "failures_before_critical"},
		{name: "successes", decl: api.CheckDecl{Type: "tcp", SuccessesBeforePassing: 11}, field: "successes_before_passing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromDecl(tc.decl)
			var fe *FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("FromDecl = %v", err)
			case tc.field == "" && got != tc.want:
				t.Fatalf("FromDecl =\n%+v\nwant\n%+v", got, tc.want)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Fatalf("FromDecl = %+v, %v; want an error on %s", got, err, tc.field)
			}
			if err == nil {
				if back, err := FromDecl(got.Decl()); err != nil || back != got {
					t.Errorf("FromDecl(Decl()) = %+v, %v", back, err)
				}
			}
		})
	}
}

func TestParse(t *testing.T) {
	ok := api.CheckDecl{Type: "tcp"}
	for _, tc := range []struct {
		name   string
		decls  []api.CheckDecl
		scheme string
		field  string
	}{
		{"none", nil, "", ""},
		{"max", slices.Repeat([]api.CheckDecl{ok}, MaxChecks), "http", ""},
		{"too many", slices.Repeat([]api.CheckDecl{ok}, MaxChecks+1), "", "checks"},
		{"second is bad", []api.CheckDecl{ok, {Type: "tcp", Interval: "x"}}, "", "checks[1].interval"},
		{"https http", []api.CheckDecl{ok, {Type: "http"}}, "https", ""},
		{"https grpc", []api.CheckDecl{{Type: "grpc"}}, "https", ""},
		{"https tcp", []api.CheckDecl{ok}, "https", ""},
		{"bad scheme", []api.CheckDecl{ok}, "ftp", "checks[0].type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.decls, tc.scheme)
			var fe *FieldError
			switch {
			case tc.field == "" && (err != nil || len(got) != len(tc.decls)):
				t.Errorf("Parse = %v, %v", got, err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Errorf("Parse = %v, want an error on %s", err, tc.field)
			}
		})
	}
	if got := Decls(nil); got != nil {
		t.Errorf("Decls(nil) = %v", got)
	}
}
