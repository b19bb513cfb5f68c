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
answers 200, 1 otherwise. It needs no curl or wget, so a container's
health check can run it.`, envAddr),
		Args: nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/livez"
			if ready {
				path = "/readyz"
			}
			url := strings.TrimSuffix(e.envOr("MUSTER_ADDR", client.DefaultAddr), "/") + path
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return fmt.Errorf("health: %w", err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("health: %w", err)
			}
			defer resp.Body.Close()
			var h api.Health
			json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h)
			if resp.StatusCode != http.StatusOK {
				msg := fmt.Sprintf("health: %s answered %s", url, resp.Status)
				if h.Reason != "" {
					msg += ": " + h.Reason
				}
				return fmt.Errorf("%s", msg)
			}
			line := h.Status
			if h.Degraded != "" {
				line += " (degraded: " + h.Degraded + ")"
			}
			fmt.Fprintln(e.stdout, line)
			return nil
		},
	}
	cmd.Flags().BoolVar(&ready, "ready", false, "check /readyz: the node is a ready leader, so writes and heartbeats work")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "give up after this long")
	return cmd
}
