package httpapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/cluster"
	"github.com/musterhq/muster/internal/verify"
)

// Error is an API error with its HTTP status.
type Error struct {
	Status int
	api.ErrorDetail
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, field, format string, args ...any) *Error {
	return &Error{Status: status, ErrorDetail: api.ErrorDetail{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}}
}

func badField(field, format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, api.CodeInvalidArgument, field, format, args...)
}

// toAPIError is the one table from domain errors to status and code.
func toAPIError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ve *verify.Error
	switch {
	case errors.As(err, &ve):
		return &Error{Status: http.StatusUnprocessableEntity, ErrorDetail: api.ErrorDetail{
			Code: api.CodeVerificationFailed, Reason: ve.Reason, Message: ve.Error()}}
	case errors.Is(err, verify.ErrNotAllowed):
		return errorf(http.StatusUnprocessableEntity, api.CodeAddressNotAllowed, "address",
			"%s; the registry only calls back networks in its --verify-allow list", err)
	case errors.Is(err, catalog.ErrNotFound):
		return errorf(http.StatusNotFound, api.CodeNotFound, "", "not found")
	case errors.Is(err, catalog.ErrKeyRevoked):
		return errorf(http.StatusUnauthorized, api.CodeUnauthorized, "", "enrolment key is unknown or revoked")
	case errors.Is(err, catalog.ErrProtocolMix):
		return errorf(http.StatusConflict, api.CodeConflict, "service", "this service is registered through the other protocol (the tutorial's, or /v1); the two never share a service")
	case errors.Is(err, catalog.ErrKeyScope):
		return errorf(http.StatusForbidden, api.CodeForbidden, "service", "enrolment key does not allow this service name")
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrClosed), errors.Is(err, cluster.ErrTimeout):
		return errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "no leader can accept writes right now; retry")
	default:
		return errorf(http.StatusInternalServerError, api.CodeInternal, "", "internal error")
	}
}
