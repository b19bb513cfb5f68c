package registry

import (
	"encoding/json"
	"testing"

	"github.com/musterhq/muster/api"
)

// FuzzCheckSeedReply feeds arbitrary verify answers of the tutorial
// protocol to their checker: only the right phrase and secret pass.
func FuzzCheckSeedReply(f *testing.F) {
	const phrase, secret = "That is why I carry an umbrella", "s3cret"
	for _, s := range []string{
		`{"name":"a","url":"http://localhost","port":8888,"reply":"That is why I carry an umbrella","secret":"s3cret"}`,
		`{"reply":"That is why I carry an umbrella","secret":"other"}`,
		`{"reply":"nope","secret":"s3cret"}`, `[]`, `null`, `{`, ``, `{"reply":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := checkSeedReply(data, phrase, secret)
		if err == nil {
			var v struct{ Reply, Secret string }
			if json.Unmarshal(data, &v) != nil || v.Reply != phrase || v.Secret != secret {
				t.Fatalf("accepted %q", data)
			}
		}
	})
}

// FuzzValidateRegister feeds arbitrary registration requests (decoded
// from arbitrary JSON) to the validator: it never panics, every refusal
// names a field, and what it accepts is within every limit.
func FuzzValidateRegister(f *testing.F) {
	for _, s := range []string{
		`{"address":"127.0.0.1","port":8888,"scheme":"http","tags":["v2"],"meta":{"site":"dice.com"},"ttl":"10s","verify_path":"/.well-known/muster/verify","nonce":"n"}`,
		`{"address":"localhost","port":1,"ttl":"1h","deregister_after":"2h"}`,
		`{"address":"::1","port":65535,"scheme":"https"}`,
		`{"meta":{"":""}}`, `{"ttl":"-1s","address":"a","port":2}`,
		"{\"address\":\"\xff\",\"port\":2}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req api.RegisterRequest
		if json.Unmarshal(body, &req) != nil {
			return
		}
		reg, err := validateRegister(req)
		if err != nil {
			if err.Field == "" || err.Message == "" {
				t.Fatalf("refusal without field or message: %+v", err)
			}
			return
		}
		if reg.ttl < MinTTL || reg.ttl > MaxTTL || reg.deregisterAfter < reg.ttl || reg.Port < 1 || reg.Port > 65535 {
			t.Fatalf("validator accepted %+v", reg)
		}
		if reg.Scheme != "http" && reg.Scheme != "https" {
			t.Fatalf("validator accepted scheme %q", reg.Scheme)
		}
		if h, ok := CanonicalHost(reg.Address); !ok || h != reg.Address {
			t.Fatalf("validator accepted address %q, not canonical", reg.Address)
		}
	})
}
