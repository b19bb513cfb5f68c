package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

func newHealthCmd(e env) *cobra.Command {
	var (
		ready   bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "health [flags]",
		Short: "check that the registry at MUSTER_ADDR is up (for health checks)",
		Long: withEnv(`Ask the registry for /livez (with --ready, /readyz) and exit 0 if it
answers 200, 1 otherwise, asking again until --timeout passes. With
several servers in MUSTER_ADDR, one that answers 200 is enough. It needs
no curl or wget, so a container's health check can run it.`, envAddr),
		Args: nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/livez"
			if ready {
				path = "/readyz"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			// With several servers, the first that answers 200 will do;
			// until --timeout passes, each is asked again every 200 ms.
			var addrs []string
			for _, a := range strings.Split(e.envOr("MUSTER_ADDR", client.DefaultAddr), ",") {
				addrs = append(addrs, strings.TrimSuffix(strings.TrimSpace(a), "/")+path)
			}
			var last error
			for {
				for _, url := range addrs {
					line, err := healthOnce(ctx, url)
					if err == nil {
						fmt.Fprintln(e.stdout, line)
						return nil
					}
					last = err
				}
				select {
				case <-ctx.Done():
					return last
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().BoolVar(&ready, "ready", false, "check /readyz: the node is a ready leader, so writes and heartbeats work")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "keep asking (every 200 ms) until this long has passed")
	return cmd
}

// healthOnce asks url once and returns the status line to print, or why
// it is not healthy.
func healthOnce(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	var h api.Health
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h)
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("health: %s answered %s", url, resp.Status)
		if h.Reason != "" {
			msg += ": " + h.Reason
		}
		return "", fmt.Errorf("%s", msg)
	}
	line := h.Status
	if h.Degraded != "" {
		line += " (degraded: " + h.Degraded + ")"
	}
	return line, nil
}
