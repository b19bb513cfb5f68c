package client

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"

	"github.com/musterhq/muster/api"
)

// VerifyHandler answers the registry's verification callback, but only for
// registrations this process started: the callback's nonce must match a
// pending registration. Anything else is refused with 403, so a forged
// callback learns nothing and plants no token.
func (r *Registration) VerifyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var vr api.VerifyRequest
		if err := json.NewDecoder(io.LimitReader(req.Body, 64<<10)).Decode(&vr); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		p, ok := r.pending[vr.Nonce]
		if ok && vr.Nonce != "" && vr.Service == r.cfg.Name && !p.done && vr.Token != "" && vr.InstanceID != "" {
			p.token, p.instanceID, p.done = vr.Token, vr.InstanceID, true
		} else {
			ok = false
		}
		r.mu.Unlock()
		if !ok {
			r.log.Warn("refused a verification callback this process did not ask for", "remote", req.RemoteAddr)
			http.Error(w, "no such pending registration", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.VerifyResponse{Proof: proof(r.cfg.Key, vr.Challenge), Nonce: vr.Nonce})
	})
}

// proof is base64(HMAC-SHA256(secret, challenge)).
func proof(secret, challenge string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(challenge))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
