package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/verify"
)

func runServer(ctx context.Context, e env, args []string) error {
	def := server.DefaultConfig()
	fs := flag.NewFlagSet("muster server", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	httpAddr := fs.String("http-addr", e.envOr("MUSTER_HTTP_ADDR", def.HTTPAddr), "HTTP API address; port 0 picks a free port (env MUSTER_HTTP_ADDR)")
	dataDir := fs.String("data-dir", e.envOr("MUSTER_DATA_DIR", def.DataDir), "data directory (env MUSTER_DATA_DIR)")
	raftAddr := fs.String("raft-addr", e.envOr("MUSTER_RAFT_ADDR", def.Cluster.RaftAddr), "Raft listener address, used only with --cluster-secret-file; without a secret this node is a single voter with no Raft listener (env MUSTER_RAFT_ADDR)")
	secretFile := fs.String("cluster-secret-file", e.envOr("MUSTER_CLUSTER_SECRET_FILE", ""), "file holding the cluster secret, readable by its owner only (chmod 600), at least 32 bytes (openssl rand -hex 32); with it Raft listens on --raft-addr and accepts only peers that hold the same secret (env MUSTER_CLUSTER_SECRET_FILE)")
	forceNew := fs.Bool("force-new-cluster", false, "start although raft.db lost the Raft state this data dir held (see <data-dir>/cluster-id), or after a damaged raft.db was moved aside: the catalog comes back from the latest snapshot in <data-dir>/snapshots, or empty")
	tokenFile := fs.String("admin-token-file", e.envOr("MUSTER_ADMIN_TOKEN_FILE", ""), "read the admin token from this file instead of <data-dir>/admin-token")
	allow := fs.String("verify-allow", e.envOr("MUSTER_VERIFY_ALLOW", defaultAllowString()), "comma-separated networks registration callbacks may reach")
	verifyTimeout := fs.Duration("verify-timeout", def.Verify.Timeout, "timeout of a registration callback")
	grace := fs.Duration("expiry-grace", def.Liveness.Grace, "after becoming leader, no instance expires before its TTL plus this grace")
	seedDef := registry.DefaultSeedConfig()
	seedCompat := fs.Bool("seed-compat", false, "also serve the tutorial's form-encoded protocol under /api/v1/ (register, verify, ping, lookup)")
	seedChallenge := fs.String("seed-challenge", seedDef.Challenge, "challenge phrase of the tutorial protocol")
	seedResponse := fs.String("seed-response", seedDef.Response, "response phrase the tutorial protocol expects")
	seedServices := fs.String("seed-services", "", "comma-separated service names (or patterns) the tutorial protocol may register; required with --seed-compat")
	perKey := fs.Int("max-instances-per-key", def.Registry.MaxInstancesPerKey, "instances one enrolment key may hold at once, unless the key sets its own max_instances")
	perAddr := fs.Int("max-instances-per-address", def.Registry.MaxInstancesPerAddress, "instances one address may hold at once, of any key")
	regRate := fs.Float64("register-rate", float64(time.Second)/float64(def.Registry.RegisterEvery), "registrations per second one enrolment key may make, after a burst of ten seconds' worth")
	seedInterval := fs.Duration("seed-heartbeat-interval", seedDef.HeartbeatInterval, "ping interval of tutorial-protocol services; their TTL is three intervals")
	diskReserve := fs.Int64("disk-reserve-mib", def.Cluster.DiskReserve>>20, "free space (MiB) the data dir's filesystem must keep: below it writes are refused with 503 while reads go on, so the Raft log never meets a full disk; 0 turns the guard off")
	logLevel := fs.String("log-level", e.envOr("MUSTER_LOG_LEVEL", "info"), "debug, info, warn or error")
	logFormat := fs.String("log-format", e.envOr("MUSTER_LOG_FORMAT", "text"), "text or json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("server takes no arguments, got %q: %w", pos, errUsage)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", errUsage)
	}
	var h slog.Handler
	switch *logFormat {
	case "text":
		h = slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})
	case "json":
		h = slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level})
	default:
		return fmt.Errorf("--log-format must be text or json: %w", errUsage)
	}
	prefixes, err := verify.ParseAllow(strings.Split(*allow, ","))
	if err != nil {
		return fmt.Errorf("--verify-allow: %w", err)
	}
	cfg := def
	cfg.HTTPAddr, cfg.DataDir, cfg.Cluster.RaftAddr = *httpAddr, *dataDir, *raftAddr
	cfg.Cluster.SecretFile, cfg.Cluster.ForceNewCluster = *secretFile, *forceNew
	cfg.AdminToken = e.getenv("MUSTER_ADMIN_TOKEN")
	cfg.AdminTokenFile = *tokenFile
	cfg.Verify.Allow = prefixes
	cfg.Verify.Timeout = *verifyTimeout
	cfg.Liveness.Grace = *grace
	if *regRate <= 0 || *regRate > 1e6 {
		return fmt.Errorf("--register-rate must be between 0 and 1000000 a second: %w", errUsage)
	}
	switch {
	case *diskReserve < 0:
		return fmt.Errorf("--disk-reserve-mib must not be negative: %w", errUsage)
	case *diskReserve == 0:
		cfg.Cluster.DiskReserve = -1 // off
	default:
		cfg.Cluster.DiskReserve = *diskReserve << 20
	}
	cfg.Registry.MaxInstancesPerKey, cfg.Registry.MaxInstancesPerAddress = *perKey, *perAddr
	cfg.Registry.RegisterEvery = time.Duration(float64(time.Second) / *regRate)
	cfg.Registry.RegisterBurst = max(1, int(10**regRate))
	cfg.Logger = slog.New(h)
	if *secretFile == "" && (given(fs, "raft-addr") || e.getenv("MUSTER_RAFT_ADDR") != "") {
		cfg.Logger.Warn("--raft-addr has no effect without --cluster-secret-file: this node is a single voter with no Raft listener", "raft_addr", *raftAddr)
	}
	if *seedCompat {
		var pats []string
		for _, p := range strings.Split(*seedServices, ",") {
			if p = strings.TrimSpace(p); p != "" {
				pats = append(pats, p)
			}
		}
		cfg.Registry.Seed = &registry.SeedConfig{Challenge: *seedChallenge, Response: *seedResponse, HeartbeatInterval: *seedInterval, Services: pats}
		if err := cfg.Registry.Seed.Validate(); err != nil {
			return fmt.Errorf("--seed-compat: %w", err)
		}
		cfg.Logger.Warn("the tutorial protocol is on: it registers without an enrolment key, for these name patterns", "seed_services", pats)
	}
	s, err := server.New(cfg)
	if err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	var stopped error
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
	case <-s.Done():
		// The log holds a command this version cannot apply; the node
		// logged which. Stop with an error so that a supervisor notices.
		stopped = fmt.Errorf("stopped: %w", s.Err())
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if stopped != nil {
			return stopped
		}
		return err
	case <-time.After(15 * time.Second):
		return fmt.Errorf("shutdown took longer than 15s")
	}
}

func defaultAllowString() string {
	var parts []string
	for _, p := range verify.DefaultAllow() {
		parts = append(parts, p.String())
	}
	return strings.Join(parts, ",")
}
