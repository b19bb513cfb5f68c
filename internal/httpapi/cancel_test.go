package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/musterhq/muster/api"
)

// TestWriteError_ClientHungUp: a request cancelled because its caller
// hung up (a registration whose client gave up during the callback) is
// not an internal error: no ERROR line, and a 503 that says what
// happened; any other unknown error still is one, logged with its cause.
func TestWriteError_ClientHungUp(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
		logged bool
	}{
		{fmt.Errorf("register: verify: %w", context.Canceled), http.StatusServiceUnavailable, api.CodeUnavailable, false},
		{fmt.Errorf("something broke"), http.StatusInternalServerError, api.CodeInternal, true},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))
		w := httptest.NewRecorder()
		WriteError(w, log, tc.err)
		var body api.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if w.Code != tc.status || body.Error.Code != tc.code {
			t.Errorf("%v: %d %s, want %d %s", tc.err, w.Code, body.Error.Code, tc.status, tc.code)
		}
		if got := logs.Len() > 0; got != tc.logged {
			t.Errorf("%v: logged at ERROR %v, want %v: %s", tc.err, got, tc.logged, logs.String())
		}
	}
}
