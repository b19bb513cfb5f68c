package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/registry"
)

// hostile runs n registrations at a time until stop is closed, each one
// calling back a server that holds the callback until stop: a caller that
// answers correctly, but slowly, to hold the registry's callback slots.
// try makes one attempt.
func hostile(tb testing.TB, n int, try func(ctx context.Context)) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				try(ctx)
				time.Sleep(time.Millisecond) // a refusal is instant: do not spin
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// successRate runs total registrations of good, 4 at a time, and returns
// the share that succeeded.
func successRate(tb testing.TB, total int, register func() error) float64 {
	tb.Helper()
	var ok, busy atomic.Int64
	var wg sync.WaitGroup
	work := make(chan struct{}, total)
	for range total {
		work <- struct{}{}
	}
	close(work)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				err := register()
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, registry.ErrBusy):
					busy.Add(1)
				default:
					tb.Errorf("registration: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	tb.Logf("%d of %d registrations succeeded, %d busy", ok.Load(), total, busy.Load())
	return float64(ok.Load()) / float64(total)
}

// TestRegistry_Register_fairShare: a key whose callbacks answer correctly
// but hold the connection (so that only the callback timeout ends them)
// takes at most its share of the callback slots; another key's
// registrations keep succeeding.
func TestRegistry_Register_fairShare(t *testing.T) {
	r := newRig(t)
	_, evil := r.key(t, "evil")
	_, good := r.key(t, "web")
	slow := newInstance(t, evil)
	held := make(chan struct{})
	setHandler(slow, answering(slow, func() { <-held }))
	var heldOnce sync.Once
	release := func() { heldOnce.Do(func() { close(held) }) }
	t.Cleanup(release)

	adm := r.admit(t, evil, "evil")
	cfg := registry.DefaultConfig()
	stop := hostile(t, cfg.MaxVerifying, func(ctx context.Context) { r.reg.Register(ctx, adm, at(slow)) })
	// Wait until the hostile key holds every slot it can get: half the
	// pool.
	waitFor(t, func() bool { return slow.CallCount() >= cfg.MaxVerifying/2 })

	in := newInstance(t, good)
	rate := successRate(t, 100, func() error {
		_, err := r.reg.Register(t.Context(), r.admit(t, good, "web"), at(in))
		return err
	})
	release()
	stop()
	if rate < 0.95 {
		t.Fatalf("another key's success rate is %.0f%% while one key holds slow callbacks; want at least 95%%", rate*100)
	}
}

// TestRegistry_RegisterSeed_fairShare: callers of the tutorial protocol,
// even from many addresses, hold at most half of the callback slots, and
// one network at most its share; keyed registrations keep succeeding.
// Their verifications run in the background, each holding its slot until
// the callback ends; the protocol's own bound on pending verifications is
// lifted here so that the slots' bound is the one tested.
func TestRegistry_RegisterSeed_fairShare(t *testing.T) {
	r := newRig(t, withSeed(), withConfig(func(c *registry.Config) {
		c.Seed.MaxPending, c.Seed.MaxPendingPerCaller = c.MaxVerifying, c.MaxVerifying
	}))
	held := make(chan struct{})
	var heldOnce sync.Once
	release := func() { heldOnce.Do(func() { close(held) }) }
	var waiting atomic.Int64
	slowSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		waiting.Add(1)
		<-held
		req.ParseForm()
		json.NewEncoder(w).Encode(map[string]string{"reply": registry.DefaultSeedConfig().Response, "secret": req.PostForm.Get("secret")})
	}))
	t.Cleanup(slowSrv.Close)
	t.Cleanup(release)
	addr := registry.SeedAddr{Scheme: "http", Host: "127.0.0.1", Port: slowSrv.Listener.Addr().(*net.TCPAddr).Port}

	var next atomic.Int64
	stop := hostile(t, registry.DefaultConfig().MaxVerifying, func(ctx context.Context) {
		// Callers rotate through 127/8, each a network of its own.
		n := next.Add(1)
		remote := fmt.Sprintf("127.%d.%d.%d:5000", (n>>16)&255, (n>>8)&255, n&255)
		// Each a name of its own: one pending verification per name, url
		// and port.
		adm, err := r.reg.AdmitSeed(remote, fmt.Sprintf("seed-%d", n))
		if err != nil {
			t.Error(err)
			return
		}
		if v, err := r.reg.RegisterSeed(ctx, adm, addr); err == nil {
			v.Wait(ctx) // one pending verification per hostile worker at a time
		}
	})
	// Wait until the tutorial callers hold every slot they can get.
	waitFor(t, func() bool { return waiting.Load() >= int64(registry.DefaultConfig().MaxVerifying/2) })

	_, good := r.key(t, "web")
	in := newInstance(t, good)
	rate := successRate(t, 100, func() error {
		_, err := r.reg.Register(t.Context(), r.admit(t, good, "web"), at(in))
		return err
	})
	if n := waiting.Load(); n > int64(registry.DefaultConfig().MaxVerifying/2) {
		t.Errorf("%d tutorial callbacks held at once; want at most half the slots, %d", n, registry.DefaultConfig().MaxVerifying/2)
	}
	release()
	stop()
	if rate < 0.95 {
		t.Fatalf("keyed registrations succeed %.0f%% of the time while tutorial callers hold slow callbacks; want at least 95%%", rate*100)
	}
}

// waitFor polls cond until it holds.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
