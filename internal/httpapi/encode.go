package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/musterhq/muster/api"
)

// decodeJSON reads one JSON value from r's body into v, refusing unknown
// fields, trailing data and bodies over max bytes.
func decodeJSON(w http.ResponseWriter, r *http.Request, max int64, v any) *Error {
	body := http.MaxBytesReader(w, r.Body, max)
	return decodeReader(body, max, v)
}

// DecodeLenient reads r's body, at most max bytes, into v as decodeJSON
// does, but skips fields v does not have: for front ends whose clients
// send fields muster has no use for (Consul's clients send many).
func DecodeLenient(w http.ResponseWriter, r *http.Request, max int64, v any) *Error {
	return decodeBody(http.MaxBytesReader(w, r.Body, max), max, v, false)
}

// decodeReader is decodeJSON without the ResponseWriter, for fuzzing.
func decodeReader(body io.Reader, max int64, v any) *Error {
	return decodeBody(body, max, v, true)
}

// decodeBody reads exactly one JSON value into v; strict refuses fields
// v does not have.
func decodeBody(body io.Reader, max int64, v any, strict bool) *Error {
	dec := json.NewDecoder(body)
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonError(err, max)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jsonError(err, max)
		}
		return Errorf(http.StatusBadRequest, api.CodeInvalidJSON, "", "body must hold exactly one JSON object")
	}
	return nil
}

func jsonError(err error, max int64) *Error {
	var (
		mbe *http.MaxBytesError
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return Errorf(http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, "", "body larger than %d bytes", max)
	case errors.Is(err, io.EOF):
		return Errorf(http.StatusBadRequest, api.CodeInvalidJSON, "", "body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(http.StatusBadRequest, api.CodeInvalidJSON, "", "body is truncated JSON")
	case errors.As(err, &syn):
		return Errorf(http.StatusBadRequest, api.CodeInvalidJSON, "", "malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return Errorf(http.StatusBadRequest, api.CodeInvalidJSON, "", "body must be a JSON object")
	case errors.As(err, &typ):
		field := typ.Field
		return Errorf(http.StatusBadRequest, api.CodeInvalidArgument, field, "field %q must be %s, not %s", field, typ.Type.String(), typ.Value)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
		// Never the socket's addresses, which the network error names.
		return Errorf(http.StatusBadRequest, api.CodeInvalidJSON, "", "body not received in full: the read timed out or the connection failed")
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		field := strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
		return Errorf(http.StatusBadRequest, api.CodeUnknownField, field, "unknown field %q", field)
	}
	return Errorf(http.StatusBadRequest, api.CodeInvalidJSON, "", "malformed JSON: %s", err)
}

// jsonContentType is shared by every answer; net/http never modifies a
// header's value slice, and sharing it saves an allocation per request on
// the hot paths.
var jsonContentType = []string{"application/json"}

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// writeRaw writes an answer already encoded as JSON.
func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(b)
}

// WriteError writes err as {"error": {...}} with the status and headers
// of APIError. Internal errors are logged with their cause, which the
// client never sees.
func WriteError(w http.ResponseWriter, log *slog.Logger, err error) {
	e := APIError(err)
	if e.Status >= 500 && e.Code == api.CodeInternal {
		log.Error("internal error", "err", err)
	}
	setErrorHeaders(w, e, e.Status)
	WriteJSON(w, e.Status, api.ErrorBody{Error: e.ErrorDetail})
}

// WriteErrorAs writes err's body as WriteError does, but with status: for
// a protocol whose clients expect one status for every refusal.
func WriteErrorAs(w http.ResponseWriter, err error, status int) {
	e := APIError(err)
	setErrorHeaders(w, e, status)
	WriteJSON(w, status, api.ErrorBody{Error: e.ErrorDetail})
}

// Bearer returns the bearer token of r, or "".
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(h) > len(p) && strings.EqualFold(h[:len(p)], p) {
		return strings.TrimSpace(h[len(p):])
	}
	return ""
}
