package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/verify"
)

// FuzzVerify serves arbitrary bytes as the instance's answer to the
// callback. Verify must not panic, must report every failure as a
// *verify.Error, and must succeed exactly when the answer carries the right
// proof (and no foreign nonce).
func FuzzVerify(f *testing.F) {
	const maxBody = 4 << 10
	req := request()
	good := hmacProof(keySecret, req.Challenge)
	for _, s := range []string{
		`{"proof":"` + good + `"}`,
		`{"proof":"` + good + `","nonce":"` + req.Nonce + `"}`,
		`{"proof":"` + good + `","nonce":"other"}`,
		`{"proof":"` + good + `","nonce":""}`,
		`{"PROOF":"` + good + `"}`,
		`{"proof":"wrong","proof":"` + good + `"}`,
		`{"proof":"` + good + `","proof":"wrong"}`,
		`{"proof":"` + good[:len(good)-1] + `"}`,
		`{"proof":"` + good + `"} trailing`,
		`  {"proof":"` + good + `"}` + "\n",
		`{"proof":"\u0041` + good[1:] + `"}`,
		`{"proof":null}`,
		`{"proof":1}`,
		`{"nonce":{}}`,
		`{}`,
		`[]`,
		`null`,
		`""`,
		``,
		"\xff\xfe",
		`{"proof":"` + string(make([]byte, maxBody)) + `"}`,
	} {
		f.Add([]byte(s))
	}

	// Instances serve the inputs in turn; each callback finds its body by
	// the instance ID the verifier sends. Half the targets are pinned, as
	// the registry's are, and their callbacks may use kept connections;
	// every callback to the other half is a new TCP connection that
	// lingers in TIME_WAIT, so a long fuzzing run spreads them over
	// several ports rather than run out of loopback port pairs to one.
	var bodies sync.Map
	handler := func(w http.ResponseWriter, r *http.Request) {
		var got api.VerifyRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&got); err != nil {
			http.Error(w, "bad callback", http.StatusTeapot)
			return
		}
		body, ok := bodies.Load(got.InstanceID)
		if !ok {
			http.Error(w, "unknown instance", http.StatusTeapot)
			return
		}
		w.Write(body.([]byte))
	}
	var targets []verify.Target
	for i := range 16 {
		tgt := target(f, serve(f, handler).srv)
		if i%2 == 1 {
			tgt = pin(tgt)
		}
		targets = append(targets, tgt)
	}
	v := newVerifier(f, func(c *verify.Config) {
		c.MaxBody = maxBody
		c.Timeout = 5 * time.Second
	})
	var seq atomic.Int64

	f.Fuzz(func(t *testing.T, body []byte) {
		n := seq.Add(1)
		tgt := targets[n%int64(len(targets))]
		r := req
		r.InstanceID = strconv.FormatInt(n, 10)
		bodies.Store(r.InstanceID, body)
		defer bodies.Delete(r.InstanceID)

		err := v.Verify(context.Background(), tgt, r, keySecret)

		var vr api.VerifyResponse
		correct := len(body) <= maxBody &&
			json.Unmarshal(body, &vr) == nil &&
			vr.Proof == good &&
			(vr.Nonce == "" || vr.Nonce == r.Nonce)
		if err == nil {
			if !correct {
				t.Fatalf("Verify accepted %q", body)
			}
			return
		}
		var ve *verify.Error
		if !errors.As(err, &ve) {
			t.Fatalf("Verify(%q) = %v (%T), want a *verify.Error", body, err, err)
		}
		switch ve.Reason {
		case api.ReasonBadResponse, api.ReasonBadProof, api.ReasonNonceMismatch:
		default:
			t.Fatalf("Verify(%q) reason %q: the callback itself should have worked", body, ve.Reason)
		}
		if correct {
			t.Fatalf("Verify refused a correct answer %q: %v", body, err)
		}
	})
}
