package seedapi_test

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
)

// seedHarness runs a registry with the tutorial protocol on for the
// services fetch_url, dice_scraper and svc-*; change, if set, adjusts its
// SeedConfig.
func seedHarness(t *testing.T, change func(*registry.SeedConfig)) *testserver.Harness {
	t.Helper()
	return testserver.NewHarness(t, func(c *server.Config) {
		sc := registry.DefaultSeedConfig()
		sc.Services = []string{"fetch_url", "dice_scraper", "svc-*"}
		if change != nil {
			change(&sc)
		}
		c.Registry.Seed = &sc
	})
}

// TestSeedProtocol_TutorialStyleService: a service that, like the
// tutorial's, listens, registers with a blocking request and only then
// serves, advertising url http://localhost, is answered 200 at once,
// verified once it serves, pings, is found by the tutorial's lookup (with
// the url as registered) and by /v1, and expires once it stops pinging.
// Before registrations were verified in the background, its challenge
// waited in the listen backlog until the verify timeout, and it was
// refused.
func TestSeedProtocol_TutorialStyleService(t *testing.T) {
	const interval = 300 * time.Millisecond
	h := seedHarness(t, func(c *registry.SeedConfig) { c.HeartbeatInterval = interval })
	base := h.Srv.URL()
	svc := testutil.StartTutorialService(t, testutil.TutorialOptions{Registry: base, Name: "fetch_url", Interval: interval})

	data, err := testutil.TutorialData(svc.RegisterBody)
	if svc.RegisterStatus != 200 || err != nil || data["status"] != "verifying" || data["url"] != "http://localhost" || data["port"] != float64(svc.Port) {
		t.Fatalf("register: %d %s, want 200 accepted for verification", svc.RegisterStatus, svc.RegisterBody)
	}
	// (It began to serve, and so could be challenged, only after that
	// answer: the challenge waited in its listen backlog until then.)

	// Verified once it serves: found by the tutorial's lookup, with the
	// url as registered, so the tutorial's gateway can build
	// '{url}:{port}/api/v1/fetchurl/'.
	testserver.Eventually(t, 5*time.Second, "the tutorial's lookup to find fetch_url", func() bool {
		status, data, err := testutil.TutorialLookup(t.Context(), base, "fetch_url")
		return err == nil && status == 200 && data["url"] == "http://localhost" && data["port"] == float64(svc.Port)
	})
	if phrase, n := svc.Challenge(); n != 1 || phrase != registry.DefaultSeedConfig().Challenge {
		t.Fatalf("%d challenges, the last %q; want one, the tutorial's phrase", n, phrase)
	}
	res, err := h.Anon.Lookup(t.Context(), "fetch_url")
	if err != nil || len(res.Instances) != 1 {
		t.Fatalf("/v1 lookup: %+v, %v", res, err)
	}
	inst := res.Instances[0]
	if inst.Address != "localhost" || inst.Port != svc.Port || inst.Status != "passing" || inst.Meta["protocol"] != "seed" {
		t.Fatalf("/v1 lookup: %+v", inst)
	}

	// It pings; each ping is answered 200 and keeps it listed past its TTL.
	testserver.Eventually(t, 5*interval+5*time.Second, "pings", func() bool {
		ok, _ := svc.Pings()
		return ok >= 4 // more than the TTL of three intervals
	})
	if ok, failed := svc.Pings(); failed != 0 {
		t.Fatalf("%d pings refused (%d answered)", failed, ok)
	}
	if status, _, _ := testutil.TutorialLookup(t.Context(), base, "fetch_url"); status != 200 {
		t.Fatalf("lookup after pinging past the TTL: %d", status)
	}

	// It stops pinging: once its TTL has passed, neither lookup finds it.
	svc.StopPinging()
	stopped := time.Now()
	testserver.Eventually(t, 3*interval+3*time.Second, "the tutorial's lookup to stop finding fetch_url", func() bool {
		status, _, _ := testutil.TutorialLookup(t.Context(), base, "fetch_url")
		return status == 400
	})
	if d := time.Since(stopped); d < 2*interval {
		t.Fatalf("expired %s after the last ping, before its TTL of %s", d, 3*interval)
	}
	res, err = h.Anon.Lookup(t.Context(), "fetch_url")
	if err != nil || len(res.Instances) != 0 {
		t.Fatalf("/v1 lookup of passing instances after expiry: %+v, %v", res, err)
	}
}

// TestSeedProtocol_SilentService: a service that never answers the
// challenge is answered 200, is never registered, and its verification
// ends at the deadline (--seed-verify-timeout) without holding up another
// service's registration meanwhile.
func TestSeedProtocol_SilentService(t *testing.T) {
	const deadline = 1500 * time.Millisecond
	h := seedHarness(t, func(c *registry.SeedConfig) { c.VerifyTimeout = deadline })
	base := h.Srv.URL()
	silent := testutil.StartTutorialService(t, testutil.TutorialOptions{Registry: base, Name: "dice_scraper", Silent: true})
	if silent.RegisterStatus != 200 {
		t.Fatalf("register: %d %s", silent.RegisterStatus, silent.RegisterBody)
	}

	// Another service registers, and is found, while the silent one's
	// verification is pending.
	svc := testutil.StartTutorialService(t, testutil.TutorialOptions{Registry: base, Name: "fetch_url"})
	testserver.Eventually(t, deadline/2, "fetch_url to be registered while dice_scraper's verification is pending", func() bool {
		status, _, _ := testutil.TutorialLookup(t.Context(), base, "fetch_url")
		return status == 200
	})
	if svc.RegisterStatus != 200 {
		t.Fatalf("register: %d %s", svc.RegisterStatus, svc.RegisterBody)
	}
	if strings.Contains(h.Logs.String(), `msg="seed verification ended" service=dice_scraper`) {
		t.Fatal("the silent service's verification ended before its deadline")
	}

	// The silent one's verification ends at its deadline, refused.
	ended := `msg="seed verification ended" service=dice_scraper`
	testserver.Eventually(t, deadline+3*time.Second, "the silent service's verification to end", func() bool {
		return strings.Contains(h.Logs.String(), ended)
	})
	took := time.Since(silent.Registered)
	if took < deadline-100*time.Millisecond || took > deadline+2*time.Second {
		t.Fatalf("the verification ended %s after the registration; want about %s", took, deadline)
	}
	if line := lastLine(h.Logs.String(), ended); !strings.Contains(line, "outcome=refused") {
		t.Fatalf("verification ended with %q, want refused", line)
	}
	if status, _, _ := testutil.TutorialLookup(t.Context(), base, "dice_scraper"); status != 400 {
		t.Fatalf("the silent service is looked up: %d", status)
	}
	res, err := h.Anon.Lookup(t.Context(), "dice_scraper", client.WithStatus("any"))
	if err == nil && len(res.Instances) != 0 {
		t.Fatalf("the silent service is in the catalog: %+v", res.Instances)
	}
	if phrase, n := svc.Challenge(); n != 1 || phrase == "" {
		t.Fatalf("the answering service was challenged %d times", n)
	}
}

// TestSeedProtocol_PendingBounds: a registration for the name, url and
// port of one awaiting verification is answered 200 again and starts no
// second verification; beyond the bound of pending verifications the
// registration is refused with the tutorial's 400.
func TestSeedProtocol_PendingBounds(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	h := seedHarness(t, func(c *registry.SeedConfig) { c.MaxPending, c.MaxPendingPerCaller = 2, 2 })
	base := h.Srv.URL()
	register := func(name string, port int) (int, []byte) {
		return postForm(t, base+"/api/v1/register/", url.Values{"name": {name}, "url": {"http://localhost"}, "port": {strconv.Itoa(port)}}.Encode())
	}
	// Two services that hold the challenge unanswered.
	a := testutil.StartTutorialService(t, testutil.TutorialOptions{Registry: base, Name: "svc-a", Hold: hold})
	b := testutil.StartTutorialService(t, testutil.TutorialOptions{Registry: base, Name: "svc-b", Hold: hold})
	for _, s := range []*testutil.TutorialService{a, b} {
		if s.RegisterStatus != 200 {
			t.Fatalf("register: %d %s", s.RegisterStatus, s.RegisterBody)
		}
	}
	first, _ := testutil.TutorialData(a.RegisterBody)
	accepted := strings.Count(h.Logs.String(), `msg="seed registration accepted for verification"`)

	for _, tc := range []struct {
		name   string
		svc    string
		port   int
		status int
		code   string
	}{
		{"the same name, url and port again", "svc-a", a.Port, 200, ""},
		{"a third verification", "svc-c", a.Port, 400, api.CodeBusy},
		{"the same url and port under another name", "svc-b", a.Port, 400, api.CodeBusy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := register(tc.svc, tc.port)
			if status != tc.status {
				t.Fatalf("register: %d %s, want %d", status, body, tc.status)
			}
			if tc.code != "" {
				if !strings.Contains(string(body), fmt.Sprintf(`"code":%q`, tc.code)) {
					t.Fatalf("register: %s, want code %s", body, tc.code)
				}
				return
			}
			// The same pending verification: the same ID, and no second
			// callback.
			if data, _ := testutil.TutorialData(body); data["id"] != first["id"] || data["status"] != "verifying" {
				t.Fatalf("register again: %s; want the pending verification %v", body, first["id"])
			}
		})
	}
	if n := strings.Count(h.Logs.String(), `msg="seed registration accepted for verification"`); n != accepted {
		t.Fatalf("%d more verifications started", n-accepted)
	}
	if !strings.Contains(h.Logs.String(), `msg="seed registration already awaiting verification" service=svc-a`) {
		t.Fatal("the repeated registration was not logged")
	}
}
