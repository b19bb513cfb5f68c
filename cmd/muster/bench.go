package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/internal/bench"
)

func newBenchCmd(e env) *cobra.Command {
	var (
		addr      string
		dnsAddr   string
		serverPID int
		short     bool
		only      []string
		instances int
		duration  time.Duration
		jsonOnly  bool
	)
	cmd := &cobra.Command{
		Use:   "bench [flags]",
		Short: "run the benchmark suite against a fresh server (or --addr) and print its figures",
		Long: withEnv(`Run muster's benchmarks: start a muster server of this binary as a child
process (on a free port of 127.0.0.1, a temporary data dir, the key rate
and quotas lifted), run each workload for a bounded time, and print a
table and one JSON line per workload (with --json, the JSON lines alone).

Workloads, in order (--only takes these names, or a row's own name):
  http-floor    GET /livez at concurrency 16: Go's HTTP stack alone, the
                most any request it answers can do
  lookup        lookups of a 10-instance service at concurrency 16 and 64
  dns           DNS SRV queries of that service over UDP at concurrency 16
                and 64 (with --addr, needs --dns-addr)
  heartbeat     heartbeats, one request each (answered by the lean
                reader); the SDK's fastest channel
  watch-fanout  1,000 event streams, each registration's time to all
  bulk-load     --instances registrations (RSS after, RSS per instance)
  idle-cpu      the server's CPU with that catalog and no requests
  deaths        1, a hundredth and a tenth of --instances stop heartbeating
                among 110% of --instances: time until lookups and streams
                show it, false expirations
  restart       SIGKILL and restart with the catalog: time to ready with
                full reads, false expirations (must be 0)
  register      verified registrations at concurrency 16 and 64 (after the
                deaths' heartbeats have stopped and their instances expired,
                beside the bulk load's catalog), and the in-process callback
                responder's own latency
idle-cpu, deaths and restart need the bulk load, which then runs too.

Each row gives ops, ops/s, the server's CPU seconds (from /proc) and ops
per server CPU-second, which hold up better than ops/s on a shared
machine. With taskset and two CPUs or more, the server runs on CPU 0 and
this process (the load) on the others. A row says when the load
generator, not the server, was the limit. The full run takes about
15 minutes; --short (CI's mode) under a minute.

With --addr the server is one already running (its admin token in
MUSTER_TOKEN); its CPU and RSS come from --server-pid (its own process
ID: $! for one started in the background), else are unknown, and the
restart is not available. --addr writes to that server: enrolment keys
for every name and instances with a TTL of one hour (services bench-*).
Give it a server of its own, never one that serves a fleet.`, envToken),
		Example: `  muster bench
  muster bench --short --json
  muster bench --only lookup,heartbeat --duration 5s
  muster bench --addr http://127.0.0.1:9000 --server-pid 12345`,
		Args: nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := bench.DefaultConfig()
			if short {
				cfg = bench.ShortConfig()
			}
			if cmd.Flags().Changed("instances") {
				cfg.Instances = instances
			}
			if cmd.Flags().Changed("duration") {
				cfg.Duration = duration
			}
			for _, o := range only {
				for _, n := range strings.Split(o, ",") {
					if n = strings.TrimSpace(n); n != "" {
						cfg.Only = append(cfg.Only, n)
					}
				}
			}
			if cmd.Flags().Changed("only") && len(cfg.Only) == 0 {
				// An empty shell variable must not start the whole suite.
				return usageError("--only names no workload")
			}
			cfg.Addr, cfg.DNSAddr, cfg.ServerPID, cfg.Log = addr, dnsAddr, serverPID, e.stderr
			if addr != "" {
				cfg.AdminToken = e.getenv("MUSTER_TOKEN")
				if cfg.AdminToken == "" {
					return usageError("--addr needs the server's admin token in MUSTER_TOKEN")
				}
			} else {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				cfg.Exe = exe
			}
			if err := cfg.Validate(); err != nil {
				return usageError(strings.TrimPrefix(err.Error(), "bench: "))
			}
			if serverPID > 0 && runtime.GOOS == "linux" {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", serverPID))
				if err != nil {
					return usageError(fmt.Sprintf("--server-pid %d: no such process to read (%v)", serverPID, err))
				}
				if args := strings.Split(string(b), "\x00"); !slices.Contains(args, "server") {
					fmt.Fprintf(e.stderr, "muster bench: warning: process %d (%s) does not look like a muster server; its CPU and RSS are reported as the server's\n",
						serverPID, strings.Join(args, " "))
				}
			}
			run := e.bench
			if run == nil {
				run = bench.Run
			}
			rep, err := run(cmd.Context(), cfg)
			if rep != nil {
				if !jsonOnly {
					if werr := bench.WriteTable(e.stdout, rep); werr != nil {
						return werr
					}
				}
				if werr := bench.WriteJSON(e.stdout, rep); werr != nil {
					return werr
				}
			}
			if err != nil && !errors.Is(err, cmd.Context().Err()) {
				return err
			}
			if rep != nil {
				var bad []string
				for _, x := range rep.Results {
					if x.Status == "failed" {
						bad = append(bad, x.Workload)
					}
				}
				if len(bad) > 0 {
					return fmt.Errorf("bench: %d workloads failed: %s (their notes say why)", len(bad), strings.Join(bad, ", "))
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "", "benchmark the server at this URL instead of starting one")
	f.StringVar(&dnsAddr, "dns-addr", "", "with --addr, the server's DNS address (its --dns-addr), for the dns workload")
	f.IntVar(&serverPID, "server-pid", 0, "with --addr, the server's process ID, for its CPU and RSS")
	f.BoolVar(&short, "short", false, "CI's mode: small counts, about a second a workload, under a minute in all")
	f.StringSliceVar(&only, "only", nil, "run only these workloads, comma-separated (see above)")
	f.IntVar(&instances, "instances", bench.DefaultConfig().Instances, "instances of the bulk load (2000 with --short)")
	f.DurationVar(&duration, "duration", bench.DefaultConfig().Duration, "how long each timed workload runs (1.5s with --short)")
	f.BoolVar(&jsonOnly, "json", false, "print only the JSON lines, one per workload")
	return cmd
}
