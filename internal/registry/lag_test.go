package registry_test

import (
	"context"
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

// TestRegistry_Register_callerGoneSpendsNothing: registrations whose
// caller goes away while the callback waits (its request context is
// cancelled) are not verification failures: however many there are, the
// caller's allowance of failures is untouched, and the next registration
// is called back.
func TestRegistry_Register_callerGoneSpendsNothing(t *testing.T) {
	r := newRig(t, withConfig(func(c *registry.Config) { c.FailureBurst, c.FailureEvery = 2, time.Minute }))
	_, secret := r.key(t, "web")
	slow := newInstance(t, secret)
	slow.Mu.Lock()
	slow.Handler = func(w http.ResponseWriter, req *http.Request) { <-req.Context().Done() }
	slow.Mu.Unlock()
	for range 5 {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := r.reg.Register(ctx, r.admit(t, secret, "web"), at(slow))
		checkErr(t, err, is(context.Canceled))
	}
	good := newInstance(t, secret)
	r.register(t, secret, "web", good, at(good))
}
