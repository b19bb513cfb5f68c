package client

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/pattern"
)

// AnswerCallbacks returns a handler that answers the registry's
// verification callback for every registration with the enrolment key
// key whose service matches one of services ("*" matches any run of
// characters; none given: every service). It is for processes that
// register through the Consul-compatible API and cannot answer the
// callback themselves: run it on their host (muster answer does), and
// name its port in the registration's meta, muster_verify_port. The
// registry then proves the host, not the port (proof "address").
//
// Unlike Registration.VerifyHandler it answers callbacks it did not ask
// for. That gives a caller who is not the registry nothing: the answer
// is an HMAC of the caller's challenge under the key, which reveals
// nothing of the key, and a registration still needs the key itself.
// The session token a callback carries is dropped: instances registered
// through the Consul-compatible API call again with the key.
func AnswerCallbacks(key string, log *slog.Logger, services ...string) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.DefaultVerifyPath {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var vr api.VerifyRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&vr); err != nil || vr.Challenge == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if !matchesAny(services, vr.Service) {
			log.Warn("refused a verification callback for a service not answered for", "service", vr.Service, "remote", r.RemoteAddr)
			http.Error(w, "service not answered for here", http.StatusForbidden)
			return
		}
		log.Info("answered a verification callback", "service", vr.Service, "instance", vr.InstanceID, "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.VerifyResponse{Proof: proof(key, vr.Challenge), Nonce: vr.Nonce})
	})
}

// matchesAny reports whether name matches one of patterns, or patterns
// is empty.
func matchesAny(patterns []string, name string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if pattern.Match(p, name) {
			return true
		}
	}
	return false
}
