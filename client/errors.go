package client

import (
	"errors"
	"fmt"

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
	// leader, busy); retrying later may succeed.
	ErrUnavailable = errors.New("client: registry unavailable")
	// ErrQuotaExceeded means a registration would take the enrolment key
	// or the address over its limit of instances, or the key registers
	// faster than its rate; nothing was stored.
	ErrQuotaExceeded = errors.New("client: quota exceeded")
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
}

// Error is an error answer from the registry.
type Error struct {
	// Op is the client operation, e.g. "lookup".
	Op     string
	Status int
	api.ErrorDetail
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s (%d %s)", e.Op, e.Message, e.Status, e.Code)
	if e.Field != "" {
		msg += " field " + e.Field
	}
	return msg
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
)
