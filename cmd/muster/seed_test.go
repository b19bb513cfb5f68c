package main

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
)

// TestServerConfig_SeedVerifyTimeout: --seed-verify-timeout sets the
// tutorial protocol's patience with the callback (20 s by default, the
// tutorial's), from the command line, MUSTER_SEED_VERIFY_TIMEOUT or the
// config file, in that order; a value out of range is a usage error.
func TestServerConfig_SeedVerifyTimeout(t *testing.T) {
	file := writeFile(t, "seed-verify-timeout = \"45s\"\n")
	seed := []string{"--seed-compat", "--seed-services", "fetch_url"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want time.Duration
		err  string
	}{
		{"default", nil, nil, registry.DefaultSeedConfig().VerifyTimeout, ""},
		{"flag", nil, []string{"--seed-verify-timeout", "5s"}, 5 * time.Second, ""},
		{"env", map[string]string{"MUSTER_SEED_VERIFY_TIMEOUT": "7s"}, nil, 7 * time.Second, ""},
		{"file", nil, []string{"--config", file}, 45 * time.Second, ""},
		{"env over file", map[string]string{"MUSTER_SEED_VERIFY_TIMEOUT": "7s"}, []string{"--config", file}, 7 * time.Second, ""},
		{"flag over env", map[string]string{"MUSTER_SEED_VERIFY_TIMEOUT": "7s"}, []string{"--seed-verify-timeout", "5s"}, 5 * time.Second, ""},
		{"too short", nil, []string{"--seed-verify-timeout", "10ms"}, 0, "verify timeout"},
		{"too long", nil, []string{"--seed-verify-timeout", "1h"}, 0, "verify timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := serverConfigOf(t, tc.env, append(seed, tc.args...)...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !isUsage(err) {
					t.Fatalf("error %v, want a usage error naming %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Registry.Seed.VerifyTimeout; got != tc.want {
				t.Fatalf("verify timeout %s, want %s", got, tc.want)
			}
			// The other settings keep their defaults.
			def := registry.DefaultSeedConfig()
			if s := cfg.Registry.Seed; s.MaxPending != def.MaxPending || s.MaxPendingPerCaller != def.MaxPendingPerCaller {
				t.Fatalf("pending bounds %d, %d; want the defaults", s.MaxPending, s.MaxPendingPerCaller)
			}
		})
	}
}

// isUsage reports whether err is a usage error (exit code 2).
func isUsage(err error) bool { return exitCode(err) == 2 }

// TestServerProcess_SeedCompatTutorialService: `muster server
// --seed-compat` registers a service written as the tutorial's are
// (listen, a blocking registration, then serve) advertising
// http://localhost: it is found by the tutorial's lookup and by /v1, and
// its pings are answered. A SIGTERM while another service's verification
// is pending (its deadline, from MUSTER_SEED_VERIFY_TIMEOUT, far off) ends
// the server at once, cancelling it, and nothing of it is there after a
// restart.
func TestServerProcess_SeedCompatTutorialService(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	dir := t.TempDir()
	args := []string{"server", "--http-addr", "127.0.0.1:0", "--data-dir", dir, "--log-format", "json",
		"--seed-compat", "--seed-services", "fetch_url,dice_scraper", "--seed-heartbeat-interval", "300ms"}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cmd.Environ(), "MUSTER_SEED_VERIFY_TIMEOUT=1m")
	p := startProcCmd(t, cmd)

	svc := testutil.StartTutorialService(t, testutil.TutorialOptions{Registry: p.url, Name: "fetch_url", Interval: 300 * time.Millisecond})
	if svc.RegisterStatus != 200 {
		t.Fatalf("register: %d %s", svc.RegisterStatus, svc.RegisterBody)
	}
	testserver.Eventually(t, 5*time.Second, "fetch_url to be registered and pinging", func() bool {
		status, data, err := testutil.TutorialLookup(t.Context(), p.url, "fetch_url")
		ok, _ := svc.Pings()
		return err == nil && status == 200 && data["url"] == "http://localhost" && ok >= 1
	})
	anon, _ := client.New(client.Config{Addr: p.url})
	if res, err := anon.Lookup(context.Background(), "fetch_url"); err != nil || len(res.Instances) != 1 || res.Instances[0].Port != svc.Port {
		t.Fatalf("/v1 lookup: %+v, %v", res, err)
	}

	// A service that holds its challenge: its verification is pending.
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	held := testutil.StartTutorialService(t, testutil.TutorialOptions{Registry: p.url, Name: "dice_scraper", Hold: hold})
	if held.RegisterStatus != 200 {
		t.Fatalf("register: %d %s", held.RegisterStatus, held.RegisterBody)
	}
	testserver.Eventually(t, 5*time.Second, "dice_scraper's challenge", func() bool {
		_, n := held.Challenge()
		return n == 1
	})
	svc.StopPinging()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("server exited with %v after SIGTERM; log:\n%s", err, p.log.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server still running 15s after SIGTERM")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("shutdown took %s with a verification pending", d)
	}
	ended := false
	for _, line := range strings.Split(p.log.String(), "\n") {
		if strings.Contains(line, `"msg":"seed verification ended"`) && strings.Contains(line, `"service":"dice_scraper"`) &&
			strings.Contains(line, `"outcome":"cancelled"`) {
			ended = true
		}
	}
	if !ended {
		t.Fatalf("the pending verification's cancellation is not logged:\n%s", p.log.String())
	}
	if strings.Contains(p.log.String(), held.Secret()) || strings.Contains(p.log.String(), svc.Secret()) {
		t.Fatal("a session secret is in the log")
	}

	p2 := startProc(t, dir, "--seed-compat", "--seed-services", "fetch_url,dice_scraper")
	anon2, _ := client.New(client.Config{Addr: p2.url})
	res, err := anon2.Lookup(context.Background(), "dice_scraper", client.WithStatus("any"))
	if err == nil && len(res.Instances) != 0 {
		t.Fatalf("dice_scraper after the restart: %+v", res.Instances)
	}
	res, err = anon2.Lookup(context.Background(), "fetch_url", client.WithStatus("any"))
	if err != nil || len(res.Instances) != 1 || res.Instances[0].Port != svc.Port {
		t.Fatalf("fetch_url after the restart: %+v, %v", res, err)
	}
}
