package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/musterhq/muster/internal/server"
)

// startRegistry runs a registry in this process over dir, on free ports so
// that it never collides with one on 9000, and returns it once it is ready,
// with its admin token. The caller closes it. Its own warnings (its first
// election, say) are noise in the demo, so only errors reach stderr unless
// verbose.
func startRegistry(ctx context.Context, dir string, stderr io.Writer, verbose bool) (*server.Server, string, error) {
	cfg := server.DefaultConfig()
	cfg.HTTPAddr, cfg.Cluster.RaftAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
	// A fresh random token each run; crypto/rand.Text never fails.
	cfg.AdminToken = "ma_" + rand.Text()
	cfg.Liveness.Grace = 2 * time.Second
	level := slog.LevelError
	if verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("component", "registry")
	reg, err := server.New(cfg)
	if err != nil {
		return nil, "", err
	}
	if err := reg.Start(ctx); err != nil {
		return nil, "", err
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := reg.Ready(rctx); err != nil {
		reg.Close()
		return nil, "", fmt.Errorf("registry not ready: %w", err)
	}
	return reg, cfg.AdminToken, nil
}
