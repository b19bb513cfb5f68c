// Package testserver starts a real muster registry for tests: HTTP and
// Raft on 127.0.0.1:0, a temporary data dir, fast timers, logs to the test.
// It is imported only by _test files.
//
//	s := testserver.Start(t, func(c *server.Config) { c.AdminToken = "ma_0123456789abcdef" })
//	c, _ := client.New(client.Config{Addr: s.URL()})
package testserver

import (
	"context"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
)

// Config returns the configuration Start uses before mutate: free ports, a
// fresh temp dir, 50 ms Raft and sweep timers, no expiry grace.
func Config(tb testing.TB) server.Config {
	cfg := server.DefaultConfig()
	cfg.HTTPAddr, cfg.Cluster.RaftAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", tb.TempDir()
	cfg.Cluster.HeartbeatTimeout, cfg.Cluster.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond
	cfg.Sweep.Interval, cfg.Liveness.Grace = 50*time.Millisecond, 0
	cfg.Verify.Timeout = time.Second
	// Refusal tables fail many verifications with one key; the limiter has
	// its own test.
	cfg.Registry.FailureBurst = 1000
	cfg.Logger = testutil.Logger(tb)
	return cfg
}

// Start runs a registry configured by Config and then mutate (if set),
// waits until it is a ready leader holding its certificate authority
// (which the leader proposes once it is ready, so that a test's first
// writes and audit records come after it), and closes it when the test
// ends.
func Start(tb testing.TB, mutate func(*server.Config)) *server.Server {
	tb.Helper()
	cfg := Config(tb)
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		tb.Fatalf("registry not ready: %v", err)
	}
	// A new registry makes its CA as it starts (tests begin after it);
	// one opened on a data dir that holds state makes it when first
	// asked for.
	for len(s.Catalog().CAs()) == 0 && s.Catalog().Index() == 0 {
		if ctx.Err() != nil {
			tb.Fatal("the registry created no certificate authority within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s
}
