package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// Error is an API error with its HTTP status.
type Error struct {
	Status int
	api.ErrorDetail
	// RetryAfter, when positive, is sent as the Retry-After header, in
	// seconds.
	RetryAfter int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given status, code and field.
func Errorf(status int, code, field, format string, args ...any) *Error {
	return &Error{Status: status, ErrorDetail: api.ErrorDetail{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}}
}

// BadField returns a 400 invalid_argument naming field.
func BadField(field, format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, api.CodeInvalidArgument, field, format, args...)
}

// APIError is the one table from the registry's errors (and the catalog's,
// which the registry passes on) to HTTP status and error code.
func APIError(err error) *Error {
	var (
		e   *Error
		fe  *registry.FieldError
		ve  *registry.VerifyError
		rle *registry.RateLimitError
		qe  *registry.QuotaError
		be  *registry.BarredError
		ee  *registry.EvictedError
		xe  *registry.ExpiredError
		se  *registry.ScopeError
		roe *registry.RoleError
		ce  *registry.CSRError
		cre *registry.CertRateError
	)
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &xe):
		return Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "", "%s; it authorises nothing now: ask an admin for a new one", xe.Error())
	case errors.As(err, &se):
		return Errorf(http.StatusForbidden, api.CodeForbidden, "service", "%s", se.Error())
	case errors.As(err, &roe):
		return Errorf(http.StatusForbidden, api.CodeForbidden, "", "%s", roe.Error())
	case errors.As(err, &fe):
		return BadField(fe.Field, "%s", fe.Message)
	case errors.As(err, &ve):
		return &Error{Status: http.StatusUnprocessableEntity, ErrorDetail: api.ErrorDetail{
			Code: api.CodeVerificationFailed, Reason: ve.Reason, Message: ve.Message}}
	case errors.As(err, &be):
		return Errorf(http.StatusConflict, api.CodeConflict, "port", "%s", be.Error())
	case errors.As(err, &ee):
		return Errorf(http.StatusNotFound, api.CodeNotFound, "", "%s", ee.Error())
	case errors.Is(err, catalog.ErrBarred):
		return Errorf(http.StatusConflict, api.CodeConflict, "port", "this endpoint was evicted by an operator and may not register yet")
	case errors.As(err, &qe):
		e := Errorf(http.StatusTooManyRequests, api.CodeQuotaExceeded, "", "%s", qe.Message)
		if qe.Wait > 0 {
			e.RetryAfter = int((qe.Wait + time.Second - 1) / time.Second)
		}
		return e
	case errors.As(err, &ce):
		return BadField("csr", "%s", ce.Message)
	case errors.As(err, &cre):
		e := Errorf(http.StatusTooManyRequests, api.CodeRateLimited, "", "%s", cre.Error())
		e.RetryAfter = int((cre.Wait+time.Second-1)/time.Second) + 1
		return e
	case errors.Is(err, registry.ErrInstanceCritical):
		return Errorf(http.StatusConflict, api.CodeInstanceCritical, "", "the instance is critical (its TTL ran out, or its checks fail); it gets a certificate once a heartbeat or its checks make it passing again")
	case errors.Is(err, registry.ErrTooManyCAs):
		return Errorf(http.StatusConflict, api.CodeConflict, "", "the registry holds %d CAs already; rotate again once a rotated-out CA has retired (after the certificate TTL)", catalog.MaxCAs)
	case errors.Is(err, registry.ErrNoCA):
		e := Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "the certificate authority is not ready yet: a new cluster's leader creates it once it is ready; a cluster that held state before it had a CA creates it when an instance first asks for a certificate or an admin runs muster ca rotate; retry")
		e.RetryAfter = 1
		return e
	case errors.Is(err, registry.ErrCATrustDomain):
		return Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "the signing CA's name constraints do not permit this server's trust domain; no certificate is issued until an admin rotates the CA: muster ca rotate")
	case errors.Is(err, registry.ErrCAExpired):
		return Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "the signing CA has expired (or expires within a minute); no certificate is issued until an admin rotates it: muster ca rotate")
	case errors.As(err, &rle):
		e := Errorf(http.StatusTooManyRequests, api.CodeRateLimited, "", "%s", rle.Error())
		e.RetryAfter = int(rle.Wait.Seconds()) + 1
		return e
	case errors.Is(err, registry.ErrAddressNotAllowed):
		return Errorf(http.StatusUnprocessableEntity, api.CodeAddressNotAllowed, "address",
			"%s; the registry only calls back networks in its --verify-allow list", err)
	case errors.Is(err, registry.ErrNotReady):
		e := Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "the catalog is still loading; retry")
		e.RetryAfter = 1
		return e
	case errors.Is(err, registry.ErrNoReadIndex):
		e := Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "",
			"no leader confirmed a consistent read within %s (an election, or this server cannot reach the leader, or the leader its majority); retry, or read with ?stale", registry.ReadIndexTimeout)
		e.RetryAfter = 1
		return e
	case errors.Is(err, registry.ErrStale):
		e := Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "",
			"this server has not heard from a leader recently, so its answer may be behind; retry, ask another server, or add ?stale to accept it")
		e.RetryAfter = 1
		return e
	case errors.Is(err, registry.ErrTooManyWaiters):
		e := Errorf(http.StatusServiceUnavailable, api.CodeBusy, "", "too many blocking queries held open; retry, or ask without index and wait")
		e.RetryAfter = 1
		return e
	case errors.Is(err, registry.ErrTooManyStreams):
		e := Errorf(http.StatusServiceUnavailable, api.CodeBusy, "", "too many event streams open (from this address, or in all); retry later")
		e.RetryAfter = 5
		return e
	case errors.Is(err, registry.ErrOverloaded):
		e := Errorf(http.StatusServiceUnavailable, api.CodeBusy, "", "the verification callback timed out while this server was overloaded; retry")
		e.RetryAfter = 1
		return e
	case errors.Is(err, audit.ErrBusy):
		e := Errorf(http.StatusServiceUnavailable, api.CodeBusy, "", "too many reads of the audit trail at once; retry")
		e.RetryAfter = 1
		return e
	case errors.Is(err, audit.ErrCursorBeyond), errors.Is(err, audit.ErrCursorOtherNode):
		return BadField("after", "%s", strings.TrimPrefix(err.Error(), "audit: bad query: "))
	case errors.Is(err, audit.ErrBadQuery):
		return Errorf(http.StatusBadRequest, api.CodeInvalidArgument, "", "%s", strings.TrimPrefix(err.Error(), "audit: "))
	case errors.Is(err, registry.ErrBusy):
		e := Errorf(http.StatusServiceUnavailable, api.CodeBusy, "", "too many registrations in flight; retry")
		e.RetryAfter = 1
		return e
	case errors.Is(err, registry.ErrUnavailable):
		return unavailableError(err)
	case errors.Is(err, registry.ErrInstanceNotFound):
		return Errorf(http.StatusNotFound, api.CodeNotFound, "", "instance not registered")
	case errors.Is(err, registry.ErrNoCredential):
		return Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "", "credential required (Authorization: Bearer ...)")
	case errors.Is(err, registry.ErrWrongToken):
		return Errorf(http.StatusForbidden, api.CodeForbidden, "", "this token may not do this")
	case errors.Is(err, catalog.ErrNotFound):
		return Errorf(http.StatusNotFound, api.CodeNotFound, "", "not found")
	case errors.Is(err, catalog.ErrKeyRevoked):
		return Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "", "enrolment key is unknown or revoked")
	case errors.Is(err, catalog.ErrProtocolMix):
		return Errorf(http.StatusConflict, api.CodeConflict, "service", "this service is registered through the other protocol (the tutorial's, or /v1); the two never share a service")
	case errors.Is(err, catalog.ErrReplaceDenied):
		return Errorf(http.StatusConflict, api.CodeConflict, "port",
			"an instance of another enrolment key is registered at this address and port; replacing it needs the callback on the port itself (no verify_port), or that key")
	case errors.Is(err, catalog.ErrExists):
		// A registration under an external ID (the Consul API) whose ID
		// and address name two different instances.
		return Errorf(http.StatusConflict, api.CodeConflict, "port",
			"this service ID is registered at another address or port, and another instance holds this address and port: "+
				"deregister one of them first, or register at a free port")
	case errors.Is(err, catalog.ErrKeyScope):
		return Errorf(http.StatusForbidden, api.CodeForbidden, "service", "enrolment key does not allow this service name")
	case errors.Is(err, catalog.ErrBadSnapshot):
		// The message says what is wrong with it (from the server that
		// checked it: this one, or the leader).
		return Errorf(http.StatusBadRequest, api.CodeInvalidArgument, "", "%s; nothing was restored", strings.TrimPrefix(err.Error(), "catalog: "))
	case errors.Is(err, catalog.ErrSnapshotTooLarge):
		return Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "", "the snapshot is larger than %d bytes; nothing was restored", catalog.MaxSnapshotSize)
	case errors.Is(err, context.Canceled):
		// The caller hung up before the answer: nothing went wrong here,
		// and no one reads this.
		return Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "the request was cancelled before it finished")
	default:
		return Errorf(http.StatusInternalServerError, api.CodeInternal, "", "internal error")
	}
}

// retryHint is what the replication layer's errors carry through
// registry.ErrUnavailable (package cluster's implement it): why the write
// was refused, in words fit for a client, and how long to wait.
type retryHint interface {
	UnavailableReason() string
	RetryAfter() time.Duration
}

// unavailableError is the 503 of a write no node could take: its message
// names the reason (no leader, a full disk, a failed disk write) and its
// Retry-After how long that reason takes to pass: 1 s for an election, 10
// s for a full disk, which needs its operator. Without a hint it is the
// answer to an election.
func unavailableError(err error) *Error {
	e := Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "", "no leader can accept writes right now; retry")
	e.RetryAfter = 1
	var hint retryHint
	if errors.As(err, &hint) {
		e.Message = hint.UnavailableReason() + "; retry"
		e.RetryAfter = max(1, int((hint.RetryAfter()+time.Second-1)/time.Second))
	}
	return e
}

// authMessages replaces the generic messages of the registry's credential
// and lookup errors with ones that tell the caller of one endpoint what it
// must send. Empty strings keep the generic message.
type authMessages struct {
	missing  string // ErrNoCredential
	wrong    string // ErrWrongToken
	notFound string // ErrInstanceNotFound
}

func (m authMessages) apply(err error) error {
	var ee *registry.EvictedError
	switch {
	case errors.As(err, &ee): // says more than any generic message
		return err
	case m.missing != "" && errors.Is(err, registry.ErrNoCredential):
		return Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "", "%s", m.missing)
	case m.wrong != "" && errors.Is(err, registry.ErrWrongToken):
		return Errorf(http.StatusForbidden, api.CodeForbidden, "", "%s", m.wrong)
	case m.notFound != "" && errors.Is(err, registry.ErrInstanceNotFound):
		return Errorf(http.StatusNotFound, api.CodeNotFound, "", "%s", m.notFound)
	}
	return err
}

// setErrorHeaders sets the headers an error answer with the given status
// carries.
func setErrorHeaders(w http.ResponseWriter, e *Error, status int) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="muster"`)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
}
