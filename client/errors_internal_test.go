package client

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
)

func TestPermanent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		refuse bool
	}{
		{"unauthorized", &Error{Status: 401, ErrorDetail: api.ErrorDetail{Code: api.CodeUnauthorized}}, true},
		{"forbidden", &Error{Status: 403, ErrorDetail: api.ErrorDetail{Code: api.CodeForbidden}}, true},
		{"invalid argument", &Error{Status: 400, ErrorDetail: api.ErrorDetail{Code: api.CodeInvalidArgument}}, true},
		{"unknown field", &Error{Status: 400, ErrorDetail: api.ErrorDetail{Code: api.CodeUnknownField}}, true},
		{"conflict", &Error{Status: 409, ErrorDetail: api.ErrorDetail{Code: api.CodeConflict}}, true},
		{"address not allowed", &Error{Status: 422, ErrorDetail: api.ErrorDetail{Code: api.CodeAddressNotAllowed}}, true},
		{"verification failed", &Error{Status: 422, ErrorDetail: api.ErrorDetail{Code: api.CodeVerificationFailed}}, false},
		{"quota exceeded", &Error{Status: 429, ErrorDetail: api.ErrorDetail{Code: api.CodeQuotaExceeded}}, false},
		{"rate limited", &Error{Status: 429, ErrorDetail: api.ErrorDetail{Code: api.CodeRateLimited}}, false},
		{"unavailable", &Error{Status: 503, ErrorDetail: api.ErrorDetail{Code: api.CodeUnavailable}}, false},
		{"busy", &Error{Status: 503, ErrorDetail: api.ErrorDetail{Code: api.CodeBusy}}, false},
		{"internal", &Error{Status: 500, ErrorDetail: api.ErrorDetail{Code: api.CodeInternal}}, false},
		{"unknown 4xx code", &Error{Status: 418, ErrorDetail: api.ErrorDetail{Code: "teapot"}}, true},
		{"unknown 408 code", &Error{Status: 408, ErrorDetail: api.ErrorDetail{Code: "slow"}}, false},
		{"unknown 5xx code", &Error{Status: 502, ErrorDetail: api.ErrorDetail{Code: "gateway"}}, false},
		{"wrapped", errorf("register: %w", &Error{Status: 401, ErrorDetail: api.ErrorDetail{Code: api.CodeUnauthorized}}), true},
		{"unreachable", errorf("register: %w: %w", ErrUnavailable, errors.New("connection refused")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := permanent(tc.err); got != tc.refuse {
				t.Fatalf("permanent(%v) = %v, want %v", tc.err, got, tc.refuse)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"1", time.Second},
		{" 10 ", 10 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{"99999999999", 24 * time.Hour},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := parseRetryAfter(tc.in, now); got != tc.want {
				t.Fatalf("parseRetryAfter(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestErrorf(t *testing.T) {
	inner := errorf("lookup: %w: %w", ErrUnavailable, errors.New("dial tcp: refused"))
	err := errorf("resolve %s: %w", "svc", inner)
	if want := "client: resolve svc: lookup: registry unavailable: dial tcp: refused"; err.Error() != want {
		t.Fatalf("text %q, want %q", err, want)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatal("the sentinel is lost")
	}
	var e *Error
	wrapped := errorf("%w: %w", ErrRefused, &Error{Op: "register", Status: 401, ErrorDetail: api.ErrorDetail{Code: api.CodeUnauthorized, Message: "no"}})
	if !errors.As(wrapped, &e) || !errors.Is(wrapped, ErrUnauthorized) || !errors.Is(wrapped, ErrRefused) {
		t.Fatalf("%v does not unwrap to its parts", wrapped)
	}
	if strings.Count(wrapped.Error(), "client:") != 1 {
		t.Fatalf("stutter: %q", wrapped)
	}
	if plain := errorf("no wrapping %d", 1); plain.Error() != "client: no wrapping 1" || errors.Unwrap(plain) != nil {
		t.Fatalf("plain: %q", plain)
	}
}

func TestValidVerifyPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{api.DefaultVerifyPath, true},
		{"/.well-known/muster/v2/", true},
		{"/.well-known/muster/a~b.c_d-e", true},
		{"/.well-known/muster/...", true},
		{"", false},
		{"verify", false},
		{"/verify", false},
		{"/", false},
		{"/.well-known/muster/{x}", false},
		{"/.well-known/muster/{", false},
		{"/.well-known/muster/a b", false},
		{"GET /.well-known/muster/x", false},
		{"/.well-known/muster/../x", false},
		{"/.well-known/muster//x", false},
		{"/.well-known/muster/%41", false},
		{"/.well-known/muster/" + strings.Repeat("a", 300), false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := validVerifyPath(tc.path); got != tc.ok {
				t.Fatalf("validVerifyPath(%q) = %v, want %v", tc.path, got, tc.ok)
			}
			if tc.ok {
				// Every path the rule accepts is a pattern ServeMux takes
				// beside "/" without panicking.
				mux := http.NewServeMux()
				mux.Handle("/", http.NotFoundHandler())
				mux.Handle(tc.path, http.NotFoundHandler())
			}
		})
	}
}

// FuzzParseRetryAfter: whatever a registry or proxy sends, the delay is
// between zero and a day, and nothing panics.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "1", "120", "-1", "1.5", "Fri, 02 Jan 2026 03:04:35 GMT", "Mon, 02 Jan 2006 15:04:05 MST", "9223372036854775807"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, now); d < 0 || d > 24*time.Hour {
			t.Fatalf("parseRetryAfter(%q) = %s", v, d)
		}
	})
}

// FuzzValidVerifyPath: a verify path that ServiceConfig.Validate accepts
// never makes Serve's ServeMux panic.
func FuzzValidVerifyPath(f *testing.F) {
	for _, s := range []string{api.DefaultVerifyPath, "/.well-known/muster/", "/.well-known/muster/{x}", "/.well-known/muster/a/...", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !validVerifyPath(p) {
			return
		}
		mux := http.NewServeMux()
		mux.Handle("/", http.NotFoundHandler())
		mux.Handle(p, http.NotFoundHandler()) // panics on a bad pattern
	})
}
