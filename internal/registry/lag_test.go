package registry_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/verify"
)

// TestRegistry_Register_timeoutWhileOverloaded: a callback that times out
// while the registry could not keep time (a tick of its lag monitor came
// late by more than a tenth of the wait) is refused as ErrOverloaded, to
// be retried, and spends nothing of the caller's allowance of failures:
// many such timeouts never turn into a rate limit. The same timeouts
// while the registry keeps time are the instance's failures, and spend.
func TestRegistry_Register_timeoutWhileOverloaded(t *testing.T) {
	const timeout = 200 * time.Millisecond
	limits := withConfig(func(c *registry.Config) { c.FailureBurst, c.FailureEvery = 2, time.Minute })
	short := withVerify(func(c *verify.Config) { c.Timeout = timeout })
	for _, overloaded := range []bool{true, false} {
		r := newRig(t, limits, short)
		_, secret := r.key(t, "web")
		slow := newInstance(t, secret)
		slow.Mu.Lock()
		slow.Handler = func(w http.ResponseWriter, req *http.Request) {
			if overloaded {
				// The registry stalls while it waits: its monitor sees
				// a tick half the wait late.
				registry.InjectLag(r.reg, time.Now(), timeout/2)
			}
			<-req.Context().Done()
		}
		slow.Mu.Unlock()
		for i := range 4 {
			_, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), at(slow))
			switch {
			case overloaded:
				checkErr(t, err, is(registry.ErrOverloaded))
			case i < 2:
				checkErr(t, err, verifyErr("unreachable"))
			default:
				checkErr(t, err, rateLimited("enrolment key and address", time.Minute))
			}
		}
	}
}
