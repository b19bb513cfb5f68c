package client_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// FuzzVerifyHandler feeds arbitrary callback bodies to the SDK's verify
// handler: no registration is pending, so every one must be refused, and
// nothing may panic.
func FuzzVerifyHandler(f *testing.F) {
	for _, s := range []string{
		`{"service":"svc","instance_id":"i","challenge":"c","nonce":"n","token":"t"}`,
		`{"service":"svc","nonce":""}`, `{`, ``, `null`, `[]`, `{"nonce":123}`,
	} {
		f.Add([]byte(s))
	}
	reg, err := client.NewRegistration(client.ServiceConfig{Name: "svc", Address: "127.0.0.1", Port: 1, Key: "k", Registry: "http://127.0.0.1:1"})
	if err != nil {
		f.Fatal(err)
	}
	h := reg.VerifyHandler()
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, api.DefaultVerifyPath, bytes.NewReader(body)))
		if w.Code == http.StatusOK || strings.Contains(w.Body.String(), "proof") {
			t.Fatalf("an unsolicited callback got %d %s", w.Code, w.Body)
		}
	})
}
