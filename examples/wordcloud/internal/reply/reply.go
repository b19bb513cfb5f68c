// Package reply writes the JSON answers shared by the word-cloud services:
// {"data": ...} on success and muster's {"error": {"code", "message"}} on
// failure.
//
//	reply.JSON(w, http.StatusOK, map[string]string{"data": text})
//	reply.Error(w, http.StatusBadRequest, api.CodeInvalidArgument, "url is required")
package reply

import (
	"encoding/json"
	"net/http"

	"github.com/musterhq/muster/api"
)

// JSON writes v as the JSON answer with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"cannot encode the answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// Error writes {"error": {"code", "message"}} with the given status.
func Error(w http.ResponseWriter, status int, code, msg string) {
	JSON(w, status, api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}
