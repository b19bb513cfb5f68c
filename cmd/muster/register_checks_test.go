package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
)

// sidecarRegistry starts a registry and makes a key for service; it
// returns an admin client and the environment of a sidecar of it.
func sidecarRegistry(t *testing.T, service string) (*client.Client, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	s := testserver.Start(t, func(c *server.Config) { c.DataDir = dir })
	admin, _ := client.New(client.Config{Addr: s.URL(), Token: adminToken(t, dir)})
	k, err := admin.CreateKey(context.Background(), []string{service}, "")
	if err != nil {
		t.Fatal(err)
	}
	return admin, map[string]string{"MUSTER_ADDR": s.URL(), "MUSTER_KEY": k.Secret}
}

// TestCLI_RegisterSidecarChecks: muster register --check-http and
// --check-tcp declare active checks of the process: lookups show them,
// and a failing health endpoint turns the instance critical although the
// sidecar keeps heartbeating.
func TestCLI_RegisterSidecarChecks(t *testing.T) {
	admin, env := sidecarRegistry(t, "db")
	var status atomic.Int32
	status.Store(200)
	proc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer proc.Close()
	port := proc.Listener.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"register", "--service", "db", "--address", "127.0.0.1", "--port", strconv.Itoa(port),
			"--check-http", "/healthz", "--check-tcp", "--check-interval", "1s", "--check-timeout", "500ms", "--ttl", "2s"},
			func(k string) string { return env[k] }, &out, &errOut)
	}()
	var in client.Instance
	testserver.Eventually(t, 10*time.Second, "the sidecar's instance with its checks probed", func() bool {
		res, err := admin.Lookup(context.Background(), "db")
		if err != nil || len(res.Instances) != 1 || len(res.Instances[0].Checks) != 2 {
			return false
		}
		in = res.Instances[0]
		return in.Checks[0].LastRunMS >= 0 && in.Checks[1].LastRunMS >= 0
	})
	if in.Checks[0].Type != "http" || in.Checks[1].Type != "tcp" || in.Checks[0].Status != "passing" {
		t.Fatalf("checks = %+v", in.Checks)
	}
	status.Store(503)
	testserver.Eventually(t, 15*time.Second, "the instance critical by its failing check", func() bool {
		res, err := admin.Lookup(context.Background(), "db", client.WithStatus("critical"))
		return err == nil && len(res.Instances) == 1
	})
	shown, err := cli(t, map[string]string{"MUSTER_ADDR": env["MUSTER_ADDR"]}, "instance", in.ID)
	if err != nil || !strings.Contains(shown, "check http:") || !strings.Contains(shown, "critical") || !strings.Contains(shown, "HTTP 503") {
		t.Fatalf("muster instance shows:\n%s (%v)", shown, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("register returned %v; stderr %s", err, errOut.String())
	}
	if _, err := cli(t, env, "register", "--service", "db", "--address", "127.0.0.1", "--port", "1", "--check-grpc-service", "x"); err == nil {
		t.Fatal("--check-grpc-service without --check-grpc accepted")
	}
	if _, err := cli(t, env, "register", "--service", "db", "--address", "127.0.0.1", "--port", "1", "--ttl", "0s"); err == nil {
		t.Fatal("--ttl 0 without a check accepted")
	}
}

// TestCLI_RegisterSidecarChecksOnly: with --ttl 0 the sidecar registers a
// check-only instance and sends no heartbeat: lookups show a TTL of 0,
// the instance's last_seen is its latest probe, and Ctrl-C still
// deregisters it.
func TestCLI_RegisterSidecarChecksOnly(t *testing.T) {
	admin, env := sidecarRegistry(t, "db")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"register", "--service", "db", "--address", "127.0.0.1", "--port", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port),
			"--check-tcp", "--check-interval", "1s", "--ttl", "0"}, func(k string) string { return env[k] }, &out, &errOut)
	}()
	var in client.Instance
	testserver.Eventually(t, 10*time.Second, "a probed check-only instance", func() bool {
		res, err := admin.Lookup(context.Background(), "db")
		if err != nil || len(res.Instances) != 1 || len(res.Instances[0].Checks) != 1 {
			return false
		}
		in = res.Instances[0]
		return in.Checks[0].LastRunMS >= 0
	})
	if in.TTLMS != 0 || in.Quality != 1 || in.LastSeenMS < 0 {
		t.Fatalf("check-only instance = %+v", in)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("register returned %v; stderr %s", err, errOut.String())
	}
	if _, err := admin.Instance(context.Background(), in.ID); err == nil {
		t.Fatal("after Ctrl-C the check-only instance is still there")
	}
}
