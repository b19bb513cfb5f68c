package server_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
)

// seedGoroutines returns the stacks of goroutines still running a
// tutorial-protocol verification or its callback.
func seedGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n == len(buf) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		var out []string
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "registry.(*Registry).verifySeed") || strings.Contains(g, "verify.(*Verifier).Call") {
				out = append(out, g)
			}
		}
		return out
	}
}

// TestServer_Close_pendingSeedVerifications: a server closed while
// tutorial-protocol verifications are pending (their services hold the
// challenge; the deadline is far) closes promptly, leaves no verification
// goroutine behind, and commits nothing: restarted on the same data dir,
// it holds none of those services, and their pings, with the secret they
// were sent, are refused.
func TestServer_Close_pendingSeedVerifications(t *testing.T) {
	dir := t.TempDir()
	seed := func(c *server.Config) {
		c.DataDir = dir
		sc := registry.DefaultSeedConfig()
		sc.Services = []string{"svc-*"}
		sc.VerifyTimeout = time.Minute
		c.Registry.Seed = &sc
	}
	cfg := testserver.Config(t)
	seed(&cfg)
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			srv.Close()
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := srv.Ready(ctx); err != nil {
		t.Fatal(err)
	}

	hold := make(chan struct{})
	names := []string{"svc-a", "svc-b", "svc-c"}
	var services []*testutil.TutorialService
	for _, name := range names {
		s := testutil.StartTutorialService(t, testutil.TutorialOptions{Registry: srv.URL(), Name: name, Hold: hold})
		if s.RegisterStatus != 200 {
			t.Fatalf("register %s: %d %s", name, s.RegisterStatus, s.RegisterBody)
		}
		services = append(services, s)
	}
	testserver.Eventually(t, 5*time.Second, "the three challenges to arrive, and be held", func() bool {
		for _, s := range services {
			if _, n := s.Challenge(); n != 1 {
				return false
			}
		}
		return true
	})
	if n := len(seedGoroutines()); n != 3 {
		t.Fatalf("%d verification goroutines, want 3", n)
	}

	start := time.Now()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %s with verifications pending", d)
	}
	// A goroutine that has called Done may still be returning: it is
	// given a moment before it counts as left behind.
	left := seedGoroutines()
	for deadline := time.Now().Add(2 * time.Second); len(left) != 0 && time.Now().Before(deadline); left = seedGoroutines() {
		time.Sleep(10 * time.Millisecond)
	}
	if len(left) != 0 {
		t.Fatalf("%d verification goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	close(hold) // the services would answer now: too late

	h := testserver.NewHarness(t, seed)
	if inst := h.Srv.Catalog().Instances(); len(inst) != 0 {
		t.Fatalf("after the restart the catalog holds %+v", inst)
	}
	if _, ok := h.Srv.Catalog().Key(catalog.SeedKeyID); ok {
		t.Fatal("after the restart the catalog holds the tutorial protocol's key, created for no instance")
	}
	for i, name := range names {
		if status, _, _ := testutil.TutorialLookup(t.Context(), h.Srv.URL(), name); status != 400 {
			t.Fatalf("lookup of %s after the restart: %d", name, status)
		}
		// The secret it was sent in the challenge it never answered.
		secret := services[i].Secret()
		if secret == "" {
			t.Fatalf("%s received no secret", name)
		}
		form := url.Values{"name": {name}, "url": {"http://localhost"}, "port": {strconv.Itoa(services[i].Port)}, "secret": {secret}}
		resp, err := http.PostForm(h.Srv.URL()+"/api/v1/ping/", form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("ping of %s after the restart: %d %s", name, resp.StatusCode, body)
		}
	}
}
