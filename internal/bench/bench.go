package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// Config configures a benchmark run.
type Config struct {
	// Exe is the muster binary Run starts as the server (os.Executable()
	// for `muster bench`). Unused with Addr.
	Exe string
	// Addr targets a running server instead of starting one. Its admin
	// token is AdminToken. The restart workload is then not available,
	// and the server's limits are whatever it was started with.
	Addr       string
	AdminToken string
	// DNSAddr, with Addr, is the target's DNS address (host:port), for
	// the dns workload; without it that workload is not available. A
	// server Run starts answers DNS on a free port of its own.
	DNSAddr string
	// ServerPID, with Addr, is the target's process ID, for its CPU time
	// and RSS from /proc; 0 reports them as unknown.
	ServerPID int
	// Short is CI's mode: small counts, each workload a second or so.
	Short bool
	// Only names the workloads to run (names or groups, see Workloads);
	// empty runs them all. idle-cpu, deaths and restart need the bulk
	// load's catalog, so selecting one runs bulk-load too.
	Only []string
	// Instances is the catalog size of the bulk load (100,000); the
	// deaths add a tenth more, which die 1, a hundredth and a tenth of
	// Instances at a time.
	Instances int
	// Duration bounds each timed workload.
	Duration time.Duration
	// Log receives progress lines (stderr for the command); nil: none.
	Log io.Writer
}

// DefaultConfig is the full run: 100,000 instances, 10 s per timed
// workload.
func DefaultConfig() Config {
	return Config{Instances: 100_000, Duration: 10 * time.Second}
}

// ShortConfig is CI's run: 2,000 instances, about 1.5 s per timed
// workload, under a minute in all.
func ShortConfig() Config {
	return Config{Short: true, Instances: 2_000, Duration: 1500 * time.Millisecond}
}

// Workloads are the groups --only takes, in the order they run. A group
// is one row or several (lookup-c16 and lookup-c64 are "lookup").
var Workloads = []string{"http-floor", "lookup", "dns", "heartbeat", "watch-fanout", "bulk-load", "idle-cpu", "deaths", "restart", "register"}

// Validate reports a configuration Run cannot use.
func (c Config) Validate() error {
	switch {
	case c.Instances < 100 || c.Instances > 1_000_000:
		return errors.New("bench: instances must be between 100 and 1,000,000")
	case c.Duration <= 0 || c.Duration > time.Hour:
		return errors.New("bench: duration must be above 0 and at most 1h")
	case c.Addr == "" && c.Exe == "":
		return errors.New("bench: no muster binary to start, and no address to target")
	case c.Addr != "" && c.AdminToken == "":
		return errors.New("bench: targeting a running server needs its admin token")
	case c.Addr == "" && c.ServerPID != 0:
		return errors.New("bench: a server PID is for a server given by address")
	case c.Addr == "" && c.DNSAddr != "":
		return errors.New("bench: a DNS address is for a server given by address")
	}
	for _, o := range c.Only {
		if !slices.Contains(Workloads, groupOf(o)) {
			return fmt.Errorf("bench: unknown workload %q (have %s)", o, strings.Join(Workloads, ", "))
		}
	}
	return nil
}

// groupOf maps a row's name (lookup-c64, deaths-1000) to its group.
func groupOf(name string) string {
	for _, g := range Workloads {
		if name == g || strings.HasPrefix(name, g+"-") {
			return g
		}
	}
	return name
}

// Result is one workload's row. Figures that could not be measured are
// nil (JSON null): the server's CPU and RSS when it was given by address
// without a PID, latencies of a workload that has none.
type Result struct {
	Workload string `json:"workload"`
	// Status is ok, partial (its deadline cut it short; the figures are
	// for what was done), not available (Notes says why) or failed.
	Status  string  `json:"status"`
	Ops     int64   `json:"ops"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
	OpsPerS float64 `json:"ops_per_s"`
	// ServerCPUS is the server's user and system CPU over the workload.
	ServerCPUS       *float64 `json:"server_cpu_s"`
	OpsPerServerCPUS *float64 `json:"ops_per_server_cpu_s"`
	// ServerCores and LoadCores are the cores the server and the load
	// generator kept busy on average (CPU seconds per second).
	ServerCores *float64 `json:"server_cores"`
	LoadCores   float64  `json:"load_cores"`
	P50MS       *float64 `json:"p50_ms"`
	P99MS       *float64 `json:"p99_ms"`
	RSSBytes    *int64   `json:"rss_bytes"`
	Pinned      bool     `json:"pinned"`
	// GeneratorBound says the load generator, not the server, was the
	// limit: it kept its cores busy while the server's was not.
	GeneratorBound bool `json:"generator_bound"`
	// Extra holds a workload's own figures (responder latency, RSS per
	// instance, false expirations...), named with their unit.
	Extra map[string]float64 `json:"extra,omitempty"`
	Notes string             `json:"notes"`
}

// Report is everything Run measured.
type Report struct {
	Results []Result
	Pinned  bool
	Env     string // where it ran: CPUs, pinning, the server's flags
}

// Run runs the selected workloads and returns their results, one per
// row, in order. A workload that fails is reported failed and the run
// goes on; Run returns an error only when it cannot start at all.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, log: cfg.Log}
	if r.log == nil {
		r.log = io.Discard
	}
	defer r.close()
	if err := r.setUp(ctx); err != nil {
		return nil, err
	}
	rep := &Report{Pinned: r.pin.pinned, Env: r.env}
	want := func(g string) bool {
		if len(cfg.Only) == 0 {
			return true
		}
		for _, o := range cfg.Only {
			if o == g || groupOf(o) == g {
				return true
			}
		}
		return false
	}
	emit := func(res ...Result) {
		for _, x := range res {
			x.Pinned = r.pin.pinned
			if x.Status == "" {
				x.Status = "ok"
			}
			rep.Results = append(rep.Results, x)
			fmt.Fprintf(r.log, "bench: %s: %s, %d ops in %.1fs %s\n", x.Workload, x.Status, x.Ops, x.Seconds, x.Notes)
		}
	}
	needFleet := want("bulk-load") || want("idle-cpu") || want("deaths") || want("restart")
	steps := []struct {
		group string
		run   func(context.Context) []Result
	}{
		{"http-floor", r.floor},
		{"lookup", r.lookups},
		{"dns", r.dnsQueries},
		{"heartbeat", r.heartbeats},
		{"watch-fanout", r.fanout},
		// The bulk load and what needs its catalog come before the
		// registrations, whose instances (TTL 1 h) would otherwise add
		// most of a bulk load's worth to the catalog those rows measure:
		// they are of --instances, as their aims are.
		{"bulk-load", r.bulkLoad},
		{"idle-cpu", r.idle},
		{"deaths", r.deaths},
		{"restart", r.restart},
		{"register", func(ctx context.Context) []Result {
			r.stopMortality(ctx)
			return r.registrations(ctx)
		}},
	}
	for _, s := range steps {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		if !want(s.group) && !(s.group == "bulk-load" && needFleet) {
			continue
		}
		fmt.Fprintf(r.log, "bench: running %s\n", s.group)
		emit(s.run(ctx)...)
	}
	return rep, nil
}

// runner is one run's state; Run's goroutine owns it, and the workloads'
// goroutines end before each workload returns (the deaths' heartbeat
// keeper and event watcher run until close).
type runner struct {
	cfg    Config
	log    io.Writer
	pin    pinning
	srv    *serverProc // nil with Addr
	url    string
	dns    string // the server's DNS address, or ""
	token  string
	admin  *client.Client
	keys   []string // enrolment key secrets, each for every service
	keyIDs []string // their IDs, revoked when a run on --addr ends
	// portBase is the first port of the instances' endpoints: 10000 on
	// the bench's own server; on one given by --addr, a base drawn per
	// run, so that a second run does not find its endpoints held by the
	// first run's instances (another key's: a conflict).
	portBase int
	resp     *responder
	env      string
	tmp      string
	fleet    []*member // the bulk load's instances
	// tls is the configuration of an https:// server's clients
	// ($MUSTER_CACERT and the client certificate, as the SDK reads them);
	// nil for http://.
	tls    *tls.Config
	mortal *mortality
}

func (r *runner) serverPID() int {
	if r.srv != nil {
		return r.srv.pid()
	}
	return r.cfg.ServerPID
}

func (r *runner) setUp(ctx context.Context) error {
	r.url, r.token, r.dns = strings.TrimRight(r.cfg.Addr, "/"), r.cfg.AdminToken, r.cfg.DNSAddr
	var extra []string
	if r.cfg.Short {
		// The restart's window for false expirations is the grace plus
		// the TTL; CI's run keeps it short.
		extra = []string{"--expiry-grace", "1s"}
	}
	r.portBase = 10000
	if r.url == "" {
		r.pin = pin()
		dir, err := os.MkdirTemp("", "muster-bench")
		if err != nil {
			return err
		}
		r.tmp = dir
		r.token = "ma_bench_" + nonce()
		srv, err := startServer(ctx, r.cfg.Exe, r.pin.wrap, dir, r.token, extra...)
		if err != nil {
			return err
		}
		r.srv, r.url, r.dns = srv, srv.url, srv.dnsAddr
		r.env = fmt.Sprintf("server: a child `muster server` (%s %s)", strings.Join(serverFlags, " "), strings.Join(extra, " "))
	} else {
		r.pin = pinning{serverCPU: 1, loadCPU: max(1, numCPU()), why: "server given by --addr"}
		r.portBase = 10000 + 1000*mathrand.IntN(40)
		r.env = "server: given by --addr, with its own flags (its limits may be what is measured)"
	}
	if r.pin.pinned {
		r.env += "; pinned: server on CPU 0, load on the others (taskset)"
	} else {
		r.env += "; not pinned (" + r.pin.why + "): server and load share the CPUs"
	}
	var err error
	if strings.HasPrefix(r.url, "https://") {
		if r.tls, err = client.TLSFromEnv(os.Getenv); err != nil {
			return err
		}
	}
	r.admin, err = client.New(client.Config{Addr: r.url, Token: r.token, TLS: r.tls})
	if err != nil {
		return err
	}
	// Two keys: one key may hold at most half the registry's 128
	// callback slots, and c64 is meant to use 64.
	for i := range 2 {
		k, err := r.admin.NewKey(ctx, api.CreateKeyRequest{Services: []string{"*"}, Description: fmt.Sprintf("muster bench %d", i),
			MaxInstances: 1_000_000})
		if err != nil {
			if r.srv == nil && errors.Is(err, client.ErrUnavailable) {
				// Not %w: the CLI's hint for an unreachable registry names
				// MUSTER_ADDR, and here the address is --addr's.
				return fmt.Errorf("bench: no registry answered at %s (--addr): %v", r.url, err)
			}
			return fmt.Errorf("bench: create an enrolment key: %w", err)
		}
		r.keys, r.keyIDs = append(r.keys, k.Secret), append(r.keyIDs, k.ID)
	}
	r.resp, err = newResponder(8)
	return err
}

func (r *runner) close() {
	if r.mortal != nil {
		r.mortal.stop()
	}
	if r.srv == nil && r.admin != nil {
		// A server given by --addr keeps running: its keys for the bench
		// go with the run (its instances expire with their TTL).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for _, id := range r.keyIDs {
			if err := r.admin.RevokeKey(ctx, id); err != nil {
				fmt.Fprintf(r.log, "bench: could not revoke the enrolment key %s: %v\n", id, err)
			}
		}
		cancel()
	}
	if r.resp != nil {
		r.resp.close()
	}
	if r.srv != nil {
		r.srv.kill()
	}
	if r.tmp != "" {
		os.RemoveAll(r.tmp)
	}
}
