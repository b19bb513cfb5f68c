package telemetry

import (
	"sync"
	"time"

	gometrics "github.com/armon/go-metrics"
	gmprom "github.com/armon/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// Raft reports its own measurements (the time to apply and commit a
// command, to apply it to the catalog, to take and restore snapshots, to
// replicate to each follower; elections and state changes) through
// go-metrics, whose sink is one global of the process: hashicorp/raft
// offers no other way. So this file holds the package's one piece of
// process-wide state: the first Metrics of a process installs a go-metrics
// global whose sink is a Prometheus collector, kept to raft's own names
// ("raft."), and every Metrics registers that one collector. A process
// that runs several servers (tests, an embedding program) reports their
// Raft measurements together; each server's own gauges (muster_raft_*)
// are its own.
var (
	raftSinkOnce sync.Once
	raftSinkC    prometheus.Collector
)

// raftSink returns the collector of raft's go-metrics (nil if there is
// none), installing the global on the first call. Its names are raft's, prefixed muster_
// ("muster_raft_commitTime"), times in seconds; a measurement not
// updated for ten minutes is dropped.
func raftSink() prometheus.Collector {
	raftSinkOnce.Do(func() {
		// Registered with a registry of its own, never the process's
		// default one.
		sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{
			Name: "muster_raft_go_metrics", Expiration: 10 * time.Minute, Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			return // a registry of its own refuses nothing; were it to, Raft's measurements go unreported
		}
		cfg := gometrics.DefaultConfig("muster")
		cfg.EnableHostname = false
		cfg.EnableRuntimeMetrics = false // the Go collector reports the runtime
		cfg.EnableServiceLabel = false
		cfg.TimerGranularity = time.Second
		cfg.AllowedPrefixes = []string{"muster.raft"} // keys are prefixed with the service name
		cfg.FilterDefault = false
		_, _ = gometrics.NewGlobal(cfg, sink)
		raftSinkC = sink
	})
	return raftSinkC
}
