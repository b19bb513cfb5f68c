package api

// Error codes carried in ErrorBody.Code. Clients switch on the code, never on
// the message.
const (
	CodeInvalidJSON        = "invalid_json"
	CodeUnknownField       = "unknown_field"
	CodeInvalidArgument    = "invalid_argument"
	CodeBodyTooLarge       = "body_too_large"
	CodeUnauthorized       = "unauthorized"
	CodeForbidden          = "forbidden"
	CodeNotFound           = "not_found"
	CodeConflict           = "conflict"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeVerificationFailed = "verification_failed"
	CodeAddressNotAllowed  = "address_not_allowed"
	CodeUnavailable        = "unavailable"
	CodeInternal           = "internal"
)

// Verification failure reasons carried in ErrorBody.Reason with
// CodeVerificationFailed.
const (
	ReasonUnreachable   = "unreachable"
	ReasonTimeout       = "timeout"
	ReasonBadStatus     = "bad_status"
	ReasonRedirect      = "redirect"
	ReasonBadResponse   = "bad_response"
	ReasonBadProof      = "bad_proof"
	ReasonNonceMismatch = "nonce_mismatch"
	// ReasonBadCertificate: an https callback reached a server whose
	// certificate the registry does not trust (--verify-ca).
	ReasonBadCertificate = "bad_certificate"
)

// ErrorBody is the body of every error answer: {"error": {...}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes one error. Field names the offending request field
// when there is one; Reason refines CodeVerificationFailed.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Other codes.
const (
	// CodeBusy means the server is at its limit of concurrent registrations.
	CodeBusy = "busy"
	// CodeRateLimited means an enrolment key has caused too many failed
	// verifications lately; retry after the Retry-After header.
	CodeRateLimited = "rate_limited"
	// CodeQuotaExceeded means a registration would take an enrolment key
	// or an address over its limit of instances, or a key registers
	// faster than its rate (then with a Retry-After header). Nothing was
	// stored, and the instance was not called back.
	CodeQuotaExceeded = "quota_exceeded"
)
