package client

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
)

// Sentinel errors. An *Error returned by the client matches the sentinel of
// its wire code with errors.Is.
var (
	// ErrNotFound means the instance, key or route does not exist.
	ErrNotFound = errors.New("client: not found")
	// ErrUnauthorized means a token was missing, unknown or revoked.
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrForbidden means the token is valid but not for this action.
	ErrForbidden = errors.New("client: forbidden")
	// ErrInvalid means the registry refused the request as malformed.
	ErrInvalid = errors.New("client: invalid request")
	// ErrVerificationFailed means the registry's callback did not verify.
	ErrVerificationFailed = errors.New("client: verification failed")
	// ErrAddressNotAllowed means the advertised address is outside the
	// registry's callback allowlist.
	ErrAddressNotAllowed = errors.New("client: address not allowed")
	// ErrUnavailable means the registry cannot serve the request now (no
	// leader, busy, rate limited, or not reachable at all); retrying later
	// may succeed.
	ErrUnavailable = errors.New("client: registry unavailable")
	// ErrQuotaExceeded means a registration would take the enrolment key
	// or the address over its limit of instances, or the key registers
	// faster than its rate; nothing was stored.
	ErrQuotaExceeded = errors.New("client: quota exceeded")
	// ErrRefused means the registry refused a registration for a reason
	// that trying again with the same configuration cannot fix: an
	// unknown or revoked key, a service name outside the key's scope, an
	// address outside the registry's allowlist, an invalid request, a
	// conflict with another key's instance. Registration.Err returns an
	// error that matches it and the registry's own error (ErrUnauthorized,
	// say).
	ErrRefused = errors.New("client: registration refused")
)

var codeSentinels = map[string]error{
	api.CodeNotFound:           ErrNotFound,
	api.CodeConflict:           ErrInvalid,
	api.CodeUnauthorized:       ErrUnauthorized,
	api.CodeForbidden:          ErrForbidden,
	api.CodeInvalidJSON:        ErrInvalid,
	api.CodeUnknownField:       ErrInvalid,
	api.CodeInvalidArgument:    ErrInvalid,
	api.CodeBodyTooLarge:       ErrInvalid,
	api.CodeMethodNotAllowed:   ErrInvalid,
	api.CodeVerificationFailed: ErrVerificationFailed,
	api.CodeAddressNotAllowed:  ErrAddressNotAllowed,
	api.CodeUnavailable:        ErrUnavailable,
	api.CodeBusy:               ErrUnavailable,
	api.CodeRateLimited:        ErrUnavailable,
	api.CodeQuotaExceeded:      ErrQuotaExceeded,
	api.CodeInstanceCritical:   ErrInstanceCritical,
}

// Error is an error answer from the registry.
type Error struct {
	// Op is the client operation, e.g. "lookup".
	Op     string
	Status int
	api.ErrorDetail
	// RetryAfter is the answer's Retry-After header (sent with 503 and
	// 429 answers): how long the registry asks the caller to wait before
	// trying again. Zero when the answer had none.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s (%d %s, field %s)", e.Op, e.Message, e.Status, e.Code, e.Field)
	}
	return fmt.Sprintf("%s: %s (%d %s)", e.Op, e.Message, e.Status, e.Code)
}

// Is makes errors.Is(err, ErrNotFound) and friends work.
func (e *Error) Is(target error) bool {
	return codeSentinels[e.Code] == target
}

// Client-side errors of the resolver and transport.
var (
	// ErrNoInstances means the service has no usable instance.
	ErrNoInstances = errors.New("client: no passing instances")
	// ErrStale means the registry could not be reached and the cached
	// answer is older than the resolver's MaxStale.
	ErrStale = errors.New("client: registry unreachable and cached instances too old")
	// ErrNotServiceName means a Transport was given a request whose host
	// cannot be a service name although it was meant as one (it has upper
	// case letters), or, with Transport.OnlyServices, any host that is not
	// a service name.
	ErrNotServiceName = errors.New("client: not a service name")
)

// permanent reports whether the registry's answer to a registration is a
// refusal that retrying with the same configuration cannot fix. Errors
// other than an *Error (the registry could not be reached) are transient.
func permanent(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case api.CodeUnauthorized, api.CodeForbidden, api.CodeNotFound, api.CodeConflict,
		api.CodeInvalidJSON, api.CodeUnknownField, api.CodeInvalidArgument, api.CodeBodyTooLarge,
		api.CodeMethodNotAllowed, api.CodeAddressNotAllowed:
		return true
	case api.CodeUnavailable, api.CodeBusy, api.CodeRateLimited, api.CodeQuotaExceeded,
		api.CodeVerificationFailed, api.CodeInternal:
		return false
	}
	// A code this SDK does not know (a newer registry's): by its status.
	s := e.Status
	return s >= 400 && s < 500 && s != http.StatusRequestTimeout && s != http.StatusTooManyRequests
}

// retryAfter is the Retry-After an error carries, or zero.
func retryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an
// HTTP-date. Anything else is zero.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// errorf is fmt.Errorf for the package's own errors: the text starts with
// "client: ", and the errors it wraps lose their own leading "client: ",
// so that however the package's errors nest, the text names the package
// once ("client: resolve x: no passing instances", not "client: resolve
// x: client: no passing instances"). %w wraps as with fmt.Errorf.
func errorf(format string, args ...any) error {
	wrapped := fmt.Errorf(format, args...)
	plain := make([]any, len(args))
	for i, a := range args {
		if e, ok := a.(error); ok {
			a = strings.TrimPrefix(e.Error(), "client: ")
		}
		plain[i] = a
	}
	msg := fmt.Sprintf(strings.ReplaceAll(format, "%w", "%v"), plain...)
	return &pkgError{msg: "client: " + msg, wrapped: wrapped}
}

// pkgError is an error made by errorf: its own text, and the errors
// fmt.Errorf would have wrapped.
type pkgError struct {
	msg     string
	wrapped error
}

func (e *pkgError) Error() string { return e.msg }

func (e *pkgError) Unwrap() []error {
	switch u := e.wrapped.(type) {
	case interface{ Unwrap() []error }:
		return u.Unwrap()
	case interface{ Unwrap() error }:
		return []error{u.Unwrap()}
	}
	return nil
}
