package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
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
several servers in MUSTER_ADDR, one that answers 200 is enough: each is
asked in turn, and given at most 1 s (less when --timeout would not
leave every server its turn) before the next is asked, so that a server
that accepts connections but never answers (a hung process) does not
hold up the others. The error names every server asked and why it was
not healthy. It needs no curl or wget, so a container's health check
can run it.`, envAddr),
		Args: nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usagef("--timeout must be above 0, not %s", shortDuration(timeout))
			}
			path := "/livez"
			if ready {
				path = "/readyz"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var urls []string
			for _, a := range strings.Split(e.envOr("MUSTER_ADDR", client.DefaultAddr), ",") {
				if a = strings.TrimSpace(a); a != "" {
					urls = append(urls, strings.TrimSuffix(a, "/")+path)
				}
			}
			if len(urls) == 0 {
				return fmt.Errorf("health: MUSTER_ADDR names no server")
			}
			tlsCfg, err := client.TLSFromEnv(e.getenv)
			if err != nil {
				return err
			}
			hc := client.HTTPClient(0, tlsCfg)
			line, err := checkHealth(ctx, hc, urls, min(healthAttemptTimeout, timeout/time.Duration(len(urls))), timeout)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, line)
			return nil
		},
	}
	cmd.Flags().BoolVar(&ready, "ready", false,
		"check /readyz: the server answers default reads (a leader, or a follower caught up with a leader it heard from within its --max-stale), and writes sent to it reach the leader")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "keep asking (each server in turn, every 200 ms) until this long has passed")
	return cmd
}

// healthAttemptTimeout is the longest muster health waits for one
// server's answer before it asks the next.
const healthAttemptTimeout = time.Second

// checkHealth asks each of urls in turn, each within per, until one
// answers 200 or ctx ends (timeout is what ctx was given, for the
// error), and returns the status line of the one that answered, or an
// error that says why each was not healthy at its last attempt.
func checkHealth(ctx context.Context, hc *http.Client, urls []string, per, timeout time.Duration) (string, error) {
	why := make([]string, len(urls)) // why each was not healthy, at its last attempt
	for {
		for i, url := range urls {
			if ctx.Err() != nil {
				break
			}
			actx, cancel := context.WithTimeout(ctx, per)
			line, err := healthOnce(actx, hc, url)
			gaveUp := actx.Err() != nil && ctx.Err() == nil
			cancel()
			switch {
			case err == nil:
				return line, nil
			case gaveUp:
				why[i] = fmt.Sprintf("no answer within %s", per)
			case ctx.Err() != nil:
				if why[i] == "" {
					why[i] = "no answer before --timeout passed"
				}
			default:
				why[i] = err.Error()
			}
		}
		select {
		case <-ctx.Done():
			var parts []string
			for i, url := range urls {
				if why[i] == "" {
					why[i] = "not asked before --timeout passed"
				}
				parts = append(parts, url+": "+why[i])
			}
			if len(urls) == 1 {
				return "", fmt.Errorf("health: %s", parts[0])
			}
			return "", fmt.Errorf("health: no server answered 200 within %s: %s", timeout, strings.Join(parts, "; "))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// healthOnce asks url once and returns the status line to print, or why
// it is not healthy (without url).
func healthOnce(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", err
	}
	defer resp.Body.Close()
	var h api.Health
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h)
	if resp.StatusCode != http.StatusOK {
		msg := "answered " + resp.Status
		if h.Reason != "" {
			msg += ": " + h.Reason
		}
		return "", errors.New(msg)
	}
	line := h.Status
	if h.Degraded != "" {
		line += " (degraded: " + h.Degraded + ")"
	}
	return line, nil
}
