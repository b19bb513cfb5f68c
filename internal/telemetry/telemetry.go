package telemetry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Source is what the gauges read at each scrape. The server assembly
// implements it over the registry and the Raft node. Its methods must be
// safe for concurrent use; each is called once a scrape.
type Source interface {
	// Catalog returns the instances by status and the number of services
	// with instances; ok is false while the node cannot answer reads.
	Catalog() (c CatalogStats, ok bool)
	// Raft returns this node's Raft state.
	Raft() RaftStats
	// Push returns the event streams and blocking queries open now and
	// the streams' counters.
	Push() PushStats
	// HTTP returns the API listener's counters.
	HTTP() HTTPStats
}

// HTTPStats are the API listener's counters: requests answered by the
// lean heartbeat reader, and connections it gave to net/http (both 0
// when it is off).
type HTTPStats struct {
	LeanAnswered, LeanHandedOff uint64
}

// CatalogStats are the catalog's gauges.
type CatalogStats struct {
	Passing, Critical, Draining int
	Services                    int
	// Protection is whether mass-expiry protection holds expiries now.
	Protection bool
}

// RaftStats are the Raft gauges.
type RaftStats struct {
	Leader                                         bool
	Term, CommitIndex, AppliedIndex, SnapshotIndex uint64
	// LastContact is the time since a follower last heard from its
	// leader: 0 on the leader, negative when never.
	LastContact time.Duration
}

// PushStats are the push gauges and counters.
type PushStats struct {
	Streams, BlockingQueries int
	Resyncs, Dropped, Sent   int64
	// AuditDropped, AuditWriteErrors and AuditDamaged are the audit
	// trail's counters: records lost to a full queue, failed writes (each
	// retried), and damaged lines its reads passed.
	AuditDropped, AuditWriteErrors, AuditDamaged uint64
}

// Metrics holds muster's Prometheus registry and its instruments. It is
// safe for concurrent use. Every label's values are bounded: routes come
// from the route table, results from the API's error codes and the
// verification reasons, DNS types and codes from the protocol's; no label
// holds a service, an instance or a key.
type Metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestSeconds  *prometheus.HistogramVec
	registrations   *prometheus.CounterVec
	callbackSeconds *prometheus.HistogramVec
	heartbeats      prometheus.Counter
	heartbeatAuth   prometheus.Counter
	expiries        *prometheus.CounterVec
	dnsQueries      *prometheus.CounterVec
}

// latencyBuckets span a loopback answer (0.1 ms) to a callback's 2 s
// deadline and beyond, in seconds.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// New returns the metrics of one server, reading its gauges from src.
// Raft's own metrics (go-metrics, process-wide: see raft.go) are
// registered too.
func New(src Source) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "muster_http_requests_total",
		Help: "HTTP requests answered, by route (method and pattern) and status class.",
	}, []string{"route", "code"})
	m.requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "muster_http_request_duration_seconds",
		Help:    "Time from a request's arrival to its handler's return, by route; event streams and blocking queries count their whole wait.",
		Buckets: latencyBuckets,
	}, []string{"route"})
	m.registrations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "muster_registrations_total",
		Help: "Registrations answered, by result: ok, or the API error code of the refusal.",
	}, []string{"result"})
	m.callbackSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "muster_verification_callback_duration_seconds",
		Help:    "Time of a registration's verification callback (connect, request, answer), by result: ok, or the verification reason it failed for.",
		Buckets: latencyBuckets,
	}, []string{"result"})
	m.heartbeats = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "muster_heartbeats_total",
		Help: "Heartbeats received (each beat of a batch counts), whatever their fate.",
	})
	m.heartbeatAuth = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "muster_heartbeat_auth_failures_total",
		Help: "Heartbeats refused for their session token (wrong, or for another instance).",
	})
	m.expiries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "muster_expiries_total",
		Help: "Expiries this node committed as leader, by kind: ttl (passing to critical) and deregister_after (critical instances removed).",
	}, []string{"kind"})
	m.dnsQueries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "muster_dns_queries_total",
		Help: "DNS queries answered, by query type and response code.",
	}, []string{"qtype", "rcode"})
	for _, kind := range []string{"ttl", "deregister_after"} {
		m.expiries.WithLabelValues(kind)
	}
	m.registrations.WithLabelValues("ok")
	m.reg.MustRegister(m.requests, m.requestSeconds, m.registrations, m.callbackSeconds, m.heartbeats,
		m.heartbeatAuth, m.expiries, m.dnsQueries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newStateCollector(src))
	if c := raftSink(); c != nil {
		m.reg.MustRegister(c)
	}
	return m
}

// Registry returns the Prometheus registry, for tests and for the
// handler.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Route is the instruments of one route, resolved once so that a request
// costs no lookup of labels.
type Route struct {
	route   string
	vec     *prometheus.CounterVec
	codes   [6]prometheus.Counter // by status class, 2xx, 4xx and 5xx resolved; the rest on first use
	seconds prometheus.Observer
}

// Route returns the instruments of route ("METHOD pattern").
func (m *Metrics) Route(route string) *Route {
	r := &Route{route: route, vec: m.requests, seconds: m.requestSeconds.WithLabelValues(route)}
	for _, i := range []int{2, 4, 5} {
		r.codes[i] = m.requests.WithLabelValues(route, strconv.Itoa(i)+"xx")
	}
	return r
}

// Done records a request of the route answered with status after d.
func (r *Route) Done(status int, d time.Duration) {
	i := status / 100
	if i < 1 || i > 5 {
		i = 0
	}
	if c := r.codes[i]; c != nil {
		c.Inc()
	} else {
		class := strconv.Itoa(i) + "xx"
		if i == 0 {
			class = "other"
		}
		r.vec.WithLabelValues(r.route, class).Inc() // a class the API does not answer with: rare
	}
	r.seconds.Observe(d.Seconds())
}

// Registration records a registration's result: "ok", or the error code
// of its refusal.
func (m *Metrics) Registration(result string) {
	m.registrations.WithLabelValues(result).Inc()
}

// Callback records a verification callback that took d, with result
// "ok" or the reason it failed for.
func (m *Metrics) Callback(d time.Duration, result string) {
	m.callbackSeconds.WithLabelValues(result).Observe(d.Seconds())
}

// Beats records heartbeats received, of which unauthorized were refused
// for their token.
func (m *Metrics) Beats(received, unauthorized int) {
	m.heartbeats.Add(float64(received))
	if unauthorized > 0 {
		m.heartbeatAuth.Add(float64(unauthorized))
	}
}

// Expired records expiries committed: kind is "ttl" or
// "deregister_after".
func (m *Metrics) Expired(kind string, n int) {
	m.expiries.WithLabelValues(kind).Add(float64(n))
}

// DNSQuery records a DNS query of type qtype answered with rcode (the
// protocol's mnemonics: "SRV", "NXDOMAIN").
func (m *Metrics) DNSQuery(qtype, rcode string) {
	m.dnsQueries.WithLabelValues(qtype, rcode).Inc()
}

// stateCollector emits the gauges read from a Source at each scrape.
type stateCollector struct {
	src Source

	instances, services, protection                      *prometheus.Desc
	leader, term, commit, applied, snapshot, lastContact *prometheus.Desc
	streams, blocking, resyncs, dropped                  *prometheus.Desc
	auditDropped, auditErrors, auditDamaged, sent        *prometheus.Desc
	leanAnswered, leanHandedOff                          *prometheus.Desc
}

func newStateCollector(src Source) *stateCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateCollector{
		src:           src,
		instances:     d("muster_instances", "Instances in the catalog, by status as lookups report it (passing, critical, draining).", "status"),
		services:      d("muster_services", "Services with at least one instance."),
		protection:    d("muster_mass_expiry_protection_active", "1 while mass-expiry protection holds expiries, else 0."),
		leader:        d("muster_raft_leader", "1 while this node leads its Raft cluster, else 0."),
		term:          d("muster_raft_term", "This node's current Raft term."),
		commit:        d("muster_raft_commit_index", "The highest Raft index this node knows committed."),
		applied:       d("muster_raft_applied_index", "The highest Raft index this node applied to its catalog."),
		snapshot:      d("muster_raft_last_snapshot_index", "The Raft index of this node's last snapshot."),
		lastContact:   d("muster_raft_last_contact_seconds", "Seconds since this follower last heard from its leader; 0 on the leader; absent when never."),
		streams:       d("muster_event_streams_open", "Event streams (GET /v1/watch) open now."),
		blocking:      d("muster_blocking_queries_open", "Blocking queries waiting now."),
		resyncs:       d("muster_event_stream_resyncs_total", "Event streams that fell behind the recent history and were sent a fresh snapshot."),
		dropped:       d("muster_event_streams_dropped_total", "Event streams closed because their reader did not keep up."),
		sent:          d("muster_events_sent_total", "Events handed to event streams, each stream's copy counted."),
		auditDropped:  d("muster_audit_records_dropped_total", "Audit records lost because the audit trail's queue was full."),
		auditErrors:   d("muster_audit_write_errors_total", "Failed writes or fsyncs of the audit trail's journals (each retried)."),
		auditDamaged:  d("muster_audit_damaged_lines_total", "Lines of the audit trail's journals that are not records (damage, an edit), passed and skipped by reads."),
		leanAnswered:  d("muster_http_lean_requests_total", "Requests (plain heartbeats) answered by the API listener's lean HTTP/1.1 reader rather than net/http; they count in muster_http_requests_total too."),
		leanHandedOff: d("muster_http_lean_handoffs_total", "Connections the lean reader gave to net/http, at their first request of another shape."),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.instances, c.services, c.protection, c.leader, c.term, c.commit, c.applied,
		c.snapshot, c.lastContact, c.streams, c.blocking, c.resyncs, c.dropped, c.auditDropped, c.auditErrors, c.auditDamaged, c.sent,
		c.leanAnswered, c.leanHandedOff} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if s, ok := c.src.Catalog(); ok {
		g(c.instances, float64(s.Passing), "passing")
		g(c.instances, float64(s.Critical), "critical")
		g(c.instances, float64(s.Draining), "draining")
		g(c.services, float64(s.Services))
		g(c.protection, b2f(s.Protection))
	}
	r := c.src.Raft()
	g(c.leader, b2f(r.Leader))
	g(c.term, float64(r.Term))
	g(c.commit, float64(r.CommitIndex))
	g(c.applied, float64(r.AppliedIndex))
	g(c.snapshot, float64(r.SnapshotIndex))
	if r.LastContact >= 0 {
		g(c.lastContact, r.LastContact.Seconds())
	}
	p := c.src.Push()
	g(c.streams, float64(p.Streams))
	g(c.blocking, float64(p.BlockingQueries))
	ch <- prometheus.MustNewConstMetric(c.resyncs, prometheus.CounterValue, float64(p.Resyncs))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(p.Dropped))
	ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(p.Sent))
	ch <- prometheus.MustNewConstMetric(c.auditDropped, prometheus.CounterValue, float64(p.AuditDropped))
	ch <- prometheus.MustNewConstMetric(c.auditErrors, prometheus.CounterValue, float64(p.AuditWriteErrors))
	ch <- prometheus.MustNewConstMetric(c.auditDamaged, prometheus.CounterValue, float64(p.AuditDamaged))
	h := c.src.HTTP()
	ch <- prometheus.MustNewConstMetric(c.leanAnswered, prometheus.CounterValue, float64(h.LeanAnswered))
	ch <- prometheus.MustNewConstMetric(c.leanHandedOff, prometheus.CounterValue, float64(h.LeanHandedOff))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Handler serves the metrics in Prometheus' exposition format, at most
// four scrapes at once (more are answered 503) and each within 10 s. Who
// may scrape is the front end's rule (httpapi).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second, ErrorHandling: promhttp.ContinueOnError, EnableOpenMetrics: true})
}
