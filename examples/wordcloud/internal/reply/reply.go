// Package reply writes the JSON answers shared by the word-cloud services:
// {"data": ...} on success and muster's {"error": {"code", "message"}} on
// failure.
//
//	reply.JSON(w, http.StatusOK, map[string]string{"data": text})
//	reply.Error(w, http.StatusBadRequest, api.CodeInvalidArgument, "url is required")
package reply

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

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

// Form reads a POST form (url-encoded or multipart) of at most max bytes
// into r.PostForm. On failure (another method, too large, malformed) it has
// answered with the error and returns false; usage tells the caller how to
// call the endpoint.
func Form(w http.ResponseWriter, r *http.Request, max int64, usage string) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		Error(w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, usage)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, max)
	var err error
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		err = r.ParseMultipartForm(max)
	} else {
		err = r.ParseForm()
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			Error(w, http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, fmt.Sprintf("the form is larger than %d bytes", max))
			return false
		}
		Error(w, http.StatusBadRequest, api.CodeInvalidArgument, "cannot read the form: "+err.Error())
		return false
	}
	return true
}
