package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/checks"
	"github.com/musterhq/muster/internal/cluster"
	"github.com/musterhq/muster/internal/console"
	"github.com/musterhq/muster/internal/consulapi"
	"github.com/musterhq/muster/internal/dnsapi"
	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/leanhttp"
	"github.com/musterhq/muster/internal/random"
	"github.com/musterhq/muster/internal/redact"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/seedapi"
	"github.com/musterhq/muster/internal/telemetry"
	"github.com/musterhq/muster/internal/tlsfiles"
	"github.com/musterhq/muster/internal/verify"
)

// Config configures a server. Each component's settings are its own
// Config, with its defaults and validation in its own package; this one
// adds only what the assembly owns (addresses, the data dir, the admin
// token) and checks them all.
type Config struct {
	HTTPAddr string
	// HTTPTLS serves the API over TLS (off by default: plain HTTP, for
	// the loopback quickstart).
	HTTPTLS HTTPTLS
	// VerifyCAFile, when set, is the CA bundle (PEM) an https
	// verification callback's server certificate must chain to, instead
	// of the system's roots; read again when it changes.
	VerifyCAFile string
	// DataDir holds the Raft state and the admin token. It overrides
	// Cluster.DataDir.
	DataDir string
	// AdminToken, when set, is the admin token. Otherwise AdminTokenFile is
	// read, and failing that DataDir/admin-token is read or created (0600).
	AdminToken     string
	AdminTokenFile string

	// Cluster configures Raft (its address, timeouts, snapshots).
	Cluster cluster.Config
	// Verify configures registration callbacks (allowlist, timeout).
	Verify verify.Config
	// Liveness holds the expiry grace after an election or a pause, and
	// mass-expiry protection (Liveness.Protection: on by default).
	Liveness health.LivenessConfig
	// Sweep configures the leader's expiry sweep.
	Sweep health.SweepConfig
	// Registry configures the workflows: callback slots, failure limits,
	// and the tutorial protocol (Registry.Seed). Its AdminTokenHash is
	// set from the admin token.
	Registry registry.Config
	// Lookups bounds lookups with large answers: how many are written at
	// once, how long one waits for its turn, and how long one may take.
	Lookups httpapi.LookupConfig
	// Watch tunes the event stream: its heartbeat, write timeout and
	// batch.
	Watch httpapi.WatchConfig
	// Checks tunes the active health checks: how many probes run at once.
	Checks checks.Config
	// CACertFile and CAKeyFile, when set (both), are an operator's CA
	// for instances' certificates, PEM (the key file owner-only): the
	// leader proposes it instead of generating a CA when the catalog
	// holds none (registry.ImportCA checks them).
	CACertFile, CAKeyFile string
	// DNS configures the DNS front end: off unless DNS.Addr is set, so
	// that two servers on one host differ only in their HTTP address and
	// data dir.
	DNS dnsapi.Config
	// Consul configures the Consul-compatible API (off unless Addr is
	// set): its own listener, with the API's TLS and the same rules for
	// reads.
	Consul consulapi.Config
	// NoConsole turns off the web console, served at /ui/ on the API's
	// address unless set.
	NoConsole bool
	// NoLeanHeartbeats serves the heartbeat route through net/http, as
	// every other request. Unless set, on a listener without TLS,
	// connections that send heartbeats in their plain form are answered
	// by the lean HTTP/1.1 reader of package leanhttp, through the same
	// handler (leanBeats).
	NoLeanHeartbeats bool
	// Audit bounds the audit trail's journals (file size, files kept) and
	// reads. Its Dir is DataDir/audit unless set.
	Audit audit.Config
	// EventHistory is how many recent changes the catalog keeps for event
	// streams to resume from (catalog.DefaultEventHistory when zero).
	EventHistory int
	// MetricsToken, when set, is required from scrapers of /metrics
	// (the admin token is accepted too); when empty, /metrics answers
	// loopback callers only.
	MetricsToken string
	// Pprof serves the runtime's profiles at /debug/pprof/ on the API
	// port, to the admin token.
	Pprof bool
	// LeaveOnClose makes Close remove this server from its cluster first
	// (muster server --leave-on-terminate): a server that leaves for good
	// does not stay a voter that the cluster counts on.
	LeaveOnClose bool

	// Logger receives every component's log lines; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the settings of `muster server` with no flags.
func DefaultConfig() Config {
	return Config{
		HTTPAddr: "127.0.0.1:9000",
		DataDir:  "muster-data",
		Cluster:  cluster.DefaultConfig(),
		Verify:   verify.DefaultConfig(),
		Liveness: health.DefaultLivenessConfig(),
		Sweep:    health.DefaultSweepConfig(),
		Registry: registry.DefaultConfig(),
		Lookups:  httpapi.DefaultLookupConfig(),
		Watch:    httpapi.DefaultWatchConfig(),
		Checks:   checks.DefaultConfig(),
		DNS:      dnsapi.DefaultConfig(),
		Audit:    audit.DefaultConfig(),
	}
}

// MinAdminTokenLen is the shortest admin token accepted: the token
// authorises every write, and one that could be guessed would open them
// all.
const MinAdminTokenLen = 16

// Validate reports every configuration error at once.
func (c Config) Validate() error {
	var errs []error
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("http address is required"))
	}
	if c.AdminToken != "" && len(c.AdminToken) < MinAdminTokenLen {
		errs = append(errs, fmt.Errorf("the admin token must be at least %d characters (openssl rand -hex 24 makes one)", MinAdminTokenLen))
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < MinAdminTokenLen {
		errs = append(errs, fmt.Errorf("the metrics token must be at least %d characters (openssl rand -hex 24 makes one)", MinAdminTokenLen))
	}
	if err := c.HTTPTLS.validate(); err != nil {
		errs = append(errs, err)
	}
	if (c.CACertFile == "") != (c.CAKeyFile == "") {
		errs = append(errs, errors.New("the CA certificate and key files go together (--ca-cert and --ca-key)"))
	}
	if c.EventHistory < 0 {
		errs = append(errs, errors.New("the event history must not be negative"))
	}
	cc := c.Cluster
	cc.DataDir = c.DataDir // the cluster's check reports it missing
	ac := c.auditConfig()
	for _, err := range []error{cc.Validate(), c.Verify.Validate(), c.Liveness.Validate(), c.Sweep.Validate(), c.Registry.Validate(), c.Lookups.Validate(), c.Watch.Validate(), c.Checks.Validate(), ac.Validate(), c.DNS.Validate(), c.Consul.Validate()} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.Registry.PrivateReads && c.Registry.Seed != nil {
		errs = append(errs, errors.New("server: reads need a token (--anonymous-reads=false), but the tutorial protocol (--seed-compat) has none: its clients could not look anything up, and its open registration would tell strangers which services exist; use one or the other"))
	}
	if c.Registry.PrivateReads && c.DNS.Enabled() && len(c.DNS.Services) == 0 {
		errs = append(errs, errors.New("server: reads need a token (--anonymous-reads=false), but DNS cannot ask its clients for one: name the services anyone may resolve with --dns-services (\"*\" for all), or turn DNS off"))
	}
	return errors.Join(errs...)
}

// auditConfig is Audit with its directory: DataDir/audit unless set.
func (c Config) auditConfig() audit.Config {
	ac := c.Audit
	if ac.Dir == "" && c.DataDir != "" {
		ac.Dir = filepath.Join(c.DataDir, "audit")
	}
	return ac
}

// Server is a running muster node.
type Server struct {
	cfg Config
	log *slog.Logger
	// scrub withholds secrets from the log (package redact); it learns
	// the server's own at Start.
	scrub    *redact.Handler
	cat      *catalog.Catalog
	node     *cluster.Node
	audit    *audit.Log
	live     *health.Liveness
	reg      *registry.Registry
	listener net.Listener
	http     *http.Server
	// dns answers DNS queries on dnsUDP and dnsTCP (nil when DNS is off).
	dns    *dnsapi.Server
	dnsUDP *net.UDPConn
	dnsTCP net.Listener
	// consul serves the Consul-compatible API on consulLn (nil when off).
	consulLn net.Listener
	consul   *http.Server
	handler  http.Handler
	cancel   context.CancelFunc
	// closeLong ends the handlers that may run for minutes (streams,
	// blocking queries) when Close begins.
	closeLong context.CancelFunc
	wg        sync.WaitGroup
	once      sync.Once
	// AdminTokenPath is where the admin token was read or written; empty
	// when it came from Config.AdminToken.
	adminTokenPath string
	// lean reads the API's connections first and answers their plain
	// heartbeats (nil with TLS, or with Config.NoLeanHeartbeats).
	lean *leanhttp.Listener
	// fresh holds connections that have sent no request yet, with the
	// time they were accepted (see Close).
	fresh sync.Map
	// relay carries heartbeats between the members (nil on a single
	// node).
	relay *relay
	// metrics are this server's Prometheus metrics (GET /metrics).
	metrics *telemetry.Metrics
}

// trackNew records connections that have not sent a request yet.
func (s *Server) trackNew(c net.Conn, st http.ConnState) {
	if st == http.StateNew {
		s.fresh.Store(c, time.Now())
	} else {
		s.fresh.Delete(c)
	}
}

// New checks cfg and returns an unstarted server.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	// Per-instance lines are sampled (logsample.go), and what may be a
	// secret is withheld from every line (the server's own secrets by
	// value, once Start has read them); cfg.Logger itself is left as
	// given.
	scrub := redact.NewHandler(cfg.Logger.Handler())
	return &Server{cfg: cfg, scrub: scrub, log: slog.New(newSampleHandler(scrub))}, nil
}

// Start binds the HTTP listener, opens storage, starts Raft and serves.
// It returns once the listener is bound; use Ready or /readyz to wait for
// the catalog to be loaded. A start that fails on the address, the
// cluster secret file or the TLS files writes nothing to the data dir.
func (s *Server) Start(ctx context.Context) (err error) {
	// What can be checked without writing is checked first, so that a
	// start that fails (a port in use, a bad secret file) leaves a new
	// data dir unwritten.
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return listenError("HTTP", "--http-addr", s.cfg.HTTPAddr, err)
	}
	defer func() {
		if err != nil {
			ln.Close()
		}
	}()
	if s.cfg.DNS.Enabled() {
		udp, tcp, err := dnsapi.Listen(s.cfg.DNS.Addr)
		if err != nil {
			return listenError("DNS", "--dns-addr", s.cfg.DNS.Addr, err)
		}
		s.dnsUDP, s.dnsTCP = udp, tcp
		defer func() {
			if err != nil {
				udp.Close()
				tcp.Close()
				s.dnsUDP, s.dnsTCP = nil, nil
			}
		}()
	}
	if s.cfg.Consul.Enabled() {
		cl, err := net.Listen("tcp", s.cfg.Consul.Addr)
		if err != nil {
			return listenError("Consul-compatible API", "--consul-addr", s.cfg.Consul.Addr, err)
		}
		s.consulLn = cl
		defer func() {
			if err != nil {
				cl.Close()
				s.consulLn = nil
			}
		}()
	}
	ncfg := s.cfg.Cluster
	if ncfg.NodeID != "" {
		// cluster.Open checks it too; here it is checked before
		// anything is written.
		if err := cluster.CheckNodeID(s.cfg.DataDir, ncfg.NodeID); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	if ncfg.SecretFile != "" {
		secret, err := cluster.ReadSecretFile(ncfg.SecretFile)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		ncfg.Secret, ncfg.SecretFile = secret, ""
	}
	if ncfg.TLSCAFile != "" || ncfg.TLSCertFile != "" || ncfg.TLSKeyFile != "" {
		id, err := cluster.LoadTLS(ncfg.TLSCAFile, ncfg.TLSCertFile, ncfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		ncfg.TLS, ncfg.TLSCAFile, ncfg.TLSCertFile, ncfg.TLSKeyFile = id, "", "", ""
	}
	var verifyRoots *tlsfiles.Pool
	if s.cfg.VerifyCAFile != "" {
		verifyRoots, err = tlsfiles.LoadPool(s.cfg.VerifyCAFile, func(err error) {
			s.log.Error("the renewed CA bundle of https callbacks could not be loaded; using the one in use", "err", err)
		})
		if err != nil {
			return fmt.Errorf("server: the CA bundle of https callbacks (--verify-ca): %w", err)
		}
	}
	var apiTLS *tls.Config
	if s.cfg.HTTPTLS.Enabled() {
		if apiTLS, err = s.apiTLS(); err != nil {
			return fmt.Errorf("server: the API's TLS: %w", err)
		}
	}
	// The operator's CA is checked before anything is written, as the
	// API's certificate is.
	var importedCA *catalog.CA
	if s.cfg.CACertFile != "" {
		if importedCA, err = importCA(s.cfg.CACertFile, s.cfg.CAKeyFile); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	tightened, err := durable.PrivateDir(s.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("server: data dir: %w", err)
	}
	if ncfg.NodeID, err = cluster.NodeIDOf(s.cfg.DataDir, ncfg.NodeID); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.log = slog.New(withNode(s.log.Handler(), ncfg.NodeID)) // on every line from here on, Raft's too
	if tightened {
		s.log.Warn("the data dir was readable by others; made it the owner's alone (0700)", "data_dir", s.cfg.DataDir)
	}
	adminToken, err := s.loadAdminToken()
	if err != nil {
		return err
	}
	// The secrets this node holds in the clear: withheld by value from
	// every log line from here on (and from records and the eviction
	// reasons the registry keeps, below), whatever their form.
	known := []string{adminToken, s.cfg.MetricsToken, string(ncfg.Secret)}
	s.scrub.SetKnown(redact.NewKnown(known...))
	s.cat = catalog.New(catalog.WithEventHistory(cmp.Or(s.cfg.EventHistory, catalog.DefaultEventHistory)))
	ncfg.DataDir = s.cfg.DataDir
	ncfg.Logger = s.log
	ncfg.HTTPAddr = ln.Addr().String()
	ncfg.AdminCheck = adminCheck(adminToken)
	ncfg.ResolveJoin = joinResolver(s.cfg.HTTPTLS.Enabled())
	acfg := s.cfg.auditConfig()
	acfg.Logger = s.log
	alog, err := audit.Open(acfg)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	// The secrets this node holds in the clear never reach a record or
	// a log line, whatever field a careless caller puts them in.
	alog.Withhold(known...)
	ncfg.Observer = alog
	node, err := cluster.Open(ncfg, s.cat)
	if err != nil {
		alog.Close()
		return fmt.Errorf("server: %w", err)
	}
	alog.SetNode(node.NodeID())
	// This node's own records (refusals, admin reads) stop at twice the
	// reserve, so that a flood of a stranger's refusals never takes the
	// room the catalog's writes keep (they stop at the reserve).
	alog.SetRoom(func() bool {
		free, reserve, known := node.DiskRoom()
		return !known || free >= 2*reserve
	})
	s.node, s.audit = node, alog
	tracker := health.NewTracker()
	repl := replication{node: node}
	var replica health.Replica
	if node.HasPeers() {
		s.relay = newRelay(node, tracker, s.cat, s.log)
		repl.relay, replica = s.relay, s.relay
	}
	s.live = health.NewLiveness(s.cfg.Liveness, tracker, node, replica)
	s.metrics = telemetry.New(metricsSource{s})
	vcfg := s.cfg.Verify
	vcfg.Observe = s.metrics.Callback
	if verifyRoots != nil {
		vcfg.Roots = verifyRoots.CertPool
	}
	verifier, err := verify.New(vcfg)
	if err != nil {
		node.Close()
		alog.Close()
		return fmt.Errorf("server: %w", err)
	}
	rcfg := s.cfg.Registry
	rcfg.CA.Import = importedCA
	fitToFileLimit(&rcfg, fileLimit(), s.log)
	rcfg.AdminTokenHash = catalog.HashSecret(adminToken)
	rcfg.Known = redact.NewKnown(known...)
	rcfg.Replication = repl
	rcfg.Logger = s.log
	rcfg.Audit = alog
	reg, err := registry.New(rcfg, s.cat, node, s.live, verifier)
	s.reg = reg
	if s.relay != nil && reg != nil {
		s.relay.serve(s.live, reg.Revive)
	}
	if err != nil {
		node.Close()
		alog.Close()
		return fmt.Errorf("server: %w", err)
	}
	if s.dnsUDP != nil {
		dcfg := s.cfg.DNS
		dcfg.Observe = s.metrics.DNSQuery
		if s.dns, err = dnsapi.New(dcfg, reg, s.log); err != nil {
			node.Close()
			return fmt.Errorf("server: %w", err)
		}
	}
	var mount []httpapi.Route
	if reg.SeedEnabled() {
		mount = seedapi.New(reg, s.log, maxBody).Routes()
	}
	var closing context.Context
	closing, s.closeLong = context.WithCancel(context.Background())
	if !s.cfg.NoConsole {
		mount = append(mount, console.New(console.Deps{Registry: reg, Logger: s.log, Closing: closing}).Routes()...)
	}
	handler := httpapi.NewHandler(httpapi.Deps{Registry: reg, Logger: s.log, MaxBody: maxBody, Mount: mount,
		Lookups: s.cfg.Lookups, Watch: s.cfg.Watch, Closing: closing, Observer: observer(s.metrics),
		Metrics: s.metrics.Handler(), MetricsToken: s.cfg.MetricsToken, Pprof: s.cfg.Pprof})
	s.handler = handler
	if limit := fileLimit(); limit > 0 {
		// Connections, idle or not, within three quarters of the limit of
		// open files, shared fairly among clients (connlimit.go).
		ln = newConnLimit(ln, int(fileBudget(limit)), minConnShare, s.log)
	}
	if apiTLS != nil {
		// The handshake runs on the connection's first read, within
		// the server's ReadHeaderTimeout, after the connection limit
		// admitted it.
		ln = tls.NewListener(ln, apiTLS)
	} else if !httpapi.Loopback(ln.Addr().String()) {
		s.log.Warn("the API is served over plain HTTP on an address other hosts can reach: admin tokens, enrolment "+
			"key secrets and session tokens cross the network in the clear; serve it over TLS with --http-tls-cert "+
			"and --http-tls-key", "http_addr", ln.Addr().String())
	}
	s.http = &http.Server{
		ConnState:         s.trackNew,
		ConnContext:       httpapi.ConnContext,
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(newServerErrors(s.log), "", 0), // bounded: any client can cause these lines
	}
	if apiTLS == nil && !s.cfg.NoLeanHeartbeats {
		s.lean = leanBeats(ln, s.http, s.log)
		ln = s.lean
	}
	s.listener = ln
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	if s.consulLn != nil {
		s.serveConsul(reg, apiTLS)
	}
	go func() {
		defer s.wg.Done()
		s.sweepWhileLeader(ctx)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		trimAfterBursts(ctx, s.log, s.node.ShedResident)
	}()
	if s.relay != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.relay.run(ctx)
		}()
	}
	reads := "anonymous"
	if s.cfg.Registry.PrivateReads {
		reads = "token" // --anonymous-reads=false
	}
	attrs := []any{"http_addr", ln.Addr().String(), "url", s.URL(), "raft_addr", node.RaftAddr(),
		"data_dir", s.cfg.DataDir, "reads", reads}
	if s.dns != nil {
		// Its TCP connections, idle or not, are bounded in all and shared
		// fairly among client addresses, as the HTTP listener's are.
		s.dns.Serve(s.dnsUDP, newConnLimit(s.dnsTCP, s.dns.Config().MaxTCPConns, dnsConnShare, s.log).byNetwork())
		attrs = append(attrs, "dns_addr", s.DNSAddr(), "dns_domain", s.dns.Config().Domain)
	}
	if s.consulLn != nil {
		attrs = append(attrs, "consul_addr", s.ConsulAddr())
	}
	if !s.cfg.NoConsole {
		attrs = append(attrs, "console", s.URL()+console.Prefix)
	}
	s.log.Info("muster listening", attrs...)
	return nil
}

// listenError says why the what address addr (flag's) could not be
// listened on, once (the net package's error names the address too), and
// what to do when it is in use.
func listenError(what, flag, addr string, err error) error {
	network := "tcp"
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		network, err = op.Net, op.Err // "bind: address already in use", without the address again
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("server: the %s address %s is in use (%s): another muster, or another program, listens there; "+
			"choose another (%s), or stop that one (%w)", what, addr, network, flag, err)
	}
	return fmt.Errorf("server: the %s address %s (%s, %s): %w", what, addr, network, flag, err)
}

// dnsConnShare is the least share of DNS TCP connections a client
// address is held to: a resolver pipelines its queries over a few.
const dnsConnShare = 8

// fileBudget is the share of the limit of open files that clients'
// connections may hold: three quarters, the last quarter staying for
// Raft, the data dir and the server's own needs.
func fileBudget(limit uint64) uint64 { return limit / 4 * 3 }

// fitToFileLimit lowers the bounds of the connections that stay open for
// minutes (blocking queries and event streams), and their shares per
// client, so that together they hold at most three quarters of the
// process's limit of open files (limit; 0 when unknown, and nothing
// changes): the last quarter stays for registrations, heartbeats, lookups,
// Raft and the data dir. An
// unauthenticated client that fills them cannot make accept fail for
// everyone else.
func fitToFileLimit(c *registry.Config, limit uint64, log *slog.Logger) {
	want := uint64(c.MaxWaiters + c.MaxStreams)
	room := fileBudget(limit)
	if limit == 0 || want <= room {
		return
	}
	scale := func(n int) int { return max(1, int(uint64(n)*room/want)) }
	before := *c
	c.MaxWaiters, c.MaxStreams = scale(c.MaxWaiters), scale(c.MaxStreams)
	// The shares per client keep their proportion to the totals (a
	// quarter each by default), so one client still cannot take them all.
	c.MaxWaitersPerClient = min(c.MaxWaitersPerClient, max(1, c.MaxWaiters/4))
	c.MaxStreamsPerClient = min(c.MaxStreamsPerClient, max(1, c.MaxStreams/4))
	// Lowered to thousands, it is the server fitting itself to its host,
	// said once at start; lowered below lowFileRoom, clients will meet
	// the bound, and the operator should raise the limit.
	level := slog.LevelInfo
	if room < lowFileRoom {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "blocking queries and event streams bounded to three quarters of the limit of open files (raise it with ulimit -n or LimitNOFILE= for more)",
		"open_files_limit", limit, "max_waiters", c.MaxWaiters, "was", before.MaxWaiters,
		"max_streams", c.MaxStreams, "was_streams", before.MaxStreams)
}

// lowFileRoom is the room for long-lived connections below which the
// bound fitToFileLimit sets is warned about (a shell's usual soft limit
// of 1,024 open files leaves 768).
const lowFileRoom = 4096

// maxBody caps request bodies on every front end.
const maxBody = 64 << 10

// importCA reads and checks an operator's CA (see Config.CACertFile).
func importCA(certFile, keyFile string) (*catalog.CA, error) {
	certPEM, err := durable.ReadFile(certFile, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("the CA certificate: %w", err)
	}
	keyPEM, err := durable.ReadPrivateFile(keyFile, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("the CA key: %w", err)
	}
	ca, err := registry.ImportCA(certPEM, keyPEM, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	return ca, nil
}

// sweepWhileLeader runs the expiry sweep during each term in which this
// node is a ready leader.
func (s *Server) sweepWhileLeader(ctx context.Context) {
	scfg := s.cfg.Sweep
	scfg.Logger = s.log
	scfg.OnExpired = func(kind string) { s.metrics.Expired(kind, 1) }
	sw := health.NewSweeper(scfg, s.live, s.cat, s.node)
	for {
		ready, _ := s.node.Ready()
		select {
		case <-ctx.Done():
			return
		case <-ready:
		}
		// The active health checks run for the same term as the sweep.
		term, endTerm := context.WithCancel(ctx)
		checked := make(chan struct{})
		go func() {
			defer close(checked)
			if err := s.reg.RunChecks(term, s.cfg.Checks); err != nil {
				s.log.Error("active health checks not running", "err", err)
			}
		}()
		// So does the certificate authority's keeping: the first CA,
		// and the retirement of rotated-out ones.
		tended := make(chan struct{})
		go func() {
			defer close(tended)
			s.reg.RunCA(term)
		}()
		sw.Run(ctx)
		endTerm()
		<-checked
		<-tended
		if ctx.Err() != nil {
			return
		}
	}
}

// loadAdminToken returns the admin token, creating DataDir/admin-token on
// first start. The token itself is never logged.
func (s *Server) loadAdminToken() (string, error) {
	if s.cfg.AdminToken != "" {
		return s.cfg.AdminToken, nil
	}
	path := s.cfg.AdminTokenFile
	if path == "" {
		path = filepath.Join(s.cfg.DataDir, "admin-token")
	}
	s.adminTokenPath = path
	if s.cfg.AdminTokenFile == "" {
		// The data dir's own file (perhaps written by an older version)
		// is made private; an operator's file (--admin-token-file) that
		// others may read is refused, as every credential's file is.
		if tightened, err := durable.PrivateFile(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("server: admin token: %w", err)
		} else if tightened {
			s.log.Warn("admin token file was readable by others; made it 0600", "path", path)
		}
	}
	tok, err := ReadTokenFile(path)
	if err == nil {
		if len(tok) < MinAdminTokenLen {
			return "", fmt.Errorf("server: the admin token in %s must be at least %d characters (openssl rand -hex 24 makes one)", path, MinAdminTokenLen)
		}
		s.log.Info("admin token loaded", "path", path)
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) || s.cfg.AdminTokenFile != "" {
		return "", fmt.Errorf("server: admin token: %w", err)
	}
	if s.cfg.Cluster.Clustered() {
		// Each server would make up its own, and members with different
		// admin tokens refuse each other: a cluster's token is given.
		return "", errors.New("server: a server that forms or joins a cluster needs the cluster's admin token, the same on every server: set MUSTER_ADMIN_TOKEN or --admin-token-file")
	}
	tok = "ma_" + random.Secret()
	if err := durable.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("server: admin token: %w", err)
	}
	s.log.Info("admin token created; read it from this file", "path", path)
	return tok, nil
}

// MaxTokenFile is the largest file ReadTokenFile reads: a token is a
// line, and a path given by mistake (/dev/zero, a log) must not be read
// into memory whole.
const MaxTokenFile = 4096

// ReadTokenFile reads a token from the file at path: its content with
// the surrounding white space trimmed. The file must be its owner's
// alone and at most MaxTokenFile bytes (see durable.ReadPrivateFile), and
// hold more than white space. Its errors wrap fs.ErrNotExist when the
// file does not exist, durable.ErrNotPrivate when others may read it.
func ReadTokenFile(path string) (string, error) {
	b, err := durable.ReadPrivateFile(path, MaxTokenFile)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty: no token", path)
	}
	return tok, nil
}

// Addr returns the bound HTTP address.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// DNSAddr returns the bound DNS address (UDP and TCP share it), or "" when
// DNS is off.
func (s *Server) DNSAddr() string {
	if s.dnsUDP == nil {
		return ""
	}
	return s.dnsUDP.LocalAddr().String()
}

// serveConsul serves the Consul-compatible API on its listener: with the
// API's TLS, its connections bounded (a quarter of the main API's budget
// of open files, shared fairly among clients), the main API's timeouts
// but none on writing (its blocking queries may wait up to
// registry.MaxWait).
func (s *Server) serveConsul(reg *registry.Registry, apiTLS *tls.Config) {
	ln := s.consulLn
	if limit := fileLimit(); limit > 0 {
		ln = newConnLimit(ln, max(64, int(fileBudget(limit))/4), minConnShare, s.log)
	}
	if apiTLS != nil {
		ln = tls.NewListener(ln, apiTLS)
	} else if !httpapi.Loopback(ln.Addr().String()) {
		s.log.Warn("the Consul-compatible API is served over plain HTTP on an address other hosts can reach: tokens "+
			"cross the network in the clear; serve it over TLS with --http-tls-cert and --http-tls-key", "consul_addr", ln.Addr().String())
	}
	s.consul = &http.Server{
		ConnContext:       httpapi.ConnContext,
		Handler:           consulapi.New(s.cfg.Consul, reg, s.log).Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(newServerErrors(s.log), "", 0),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.consul.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("consul-compatible API stopped", "err", err)
		}
	}()
}

// ConsulAddr returns the bound address of the Consul-compatible API, or
// "" when it is off.
func (s *Server) ConsulAddr() string {
	if s.consulLn == nil {
		return ""
	}
	return s.consulLn.Addr().String()
}

// URL returns the base URL of the HTTP API.
func (s *Server) URL() string {
	if s.cfg.HTTPTLS.Enabled() {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// AdminTokenPath returns the file holding the admin token, or "" if the
// token was given directly.
func (s *Server) AdminTokenPath() string { return s.adminTokenPath }

// Catalog returns the server's catalog (read-only use).
func (s *Server) Catalog() *catalog.Catalog { return s.cat }

// Handler returns the HTTP API handler, for in-process benchmarks.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry returns the registry the front ends call (nil before Start).
func (s *Server) Registry() *registry.Registry { return s.reg }

// Node returns the server's Raft node.
func (s *Server) Node() *cluster.Node { return s.node }

// Done returns a channel closed when the server stopped by itself: its
// Raft log holds a command this version cannot apply (see cluster.Node).
// Err then says why. Close still has to be called.
func (s *Server) Done() <-chan struct{} {
	if s.node == nil { // not started: it cannot stop by itself
		return nil
	}
	return s.node.Done()
}

// Err returns why the server stopped by itself, or nil.
func (s *Server) Err() error {
	if s.node == nil {
		return nil
	}
	return s.node.Err()
}

// Ready blocks until the node is a ready leader or ctx ends.
func (s *Server) Ready(ctx context.Context) error {
	ch, _ := s.node.Ready()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops serving, then stops Raft. In-flight requests get a few
// seconds to finish.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		if s.cfg.LeaveOnClose && s.node != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := s.node.Leave(ctx); err != nil {
				s.log.Error("could not leave the cluster before stopping; remove this server with muster members remove", "node_id", s.node.NodeID(), "err", err)
			}
			cancel()
		}
		if s.closeLong != nil {
			s.closeLong()
		}
		if s.http != nil {
			// Shutdown waits for requests in flight, but it also waits up
			// to 5 s for connections that never sent one (a client's
			// spare dial). Those are closed once they have been silent
			// for half a second.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			done := make(chan struct{})
			go func() { _ = s.http.Shutdown(ctx); close(done) }()
			tick := time.NewTicker(100 * time.Millisecond)
		wait:
			for {
				select {
				case <-done:
					break wait
				case now := <-tick.C:
					s.fresh.Range(func(k, v any) bool {
						if now.Sub(v.(time.Time)) > 500*time.Millisecond {
							k.(net.Conn).Close()
						}
						return true
					})
				}
			}
			tick.Stop()
			if ctx.Err() != nil {
				// Requests still running after the grace (a slow request
				// body, a long handler) are cut off.
				s.http.Close()
			}
			if s.lean != nil {
				// Shutdown closed it, and with it the connections that
				// waited for a heartbeat; those answering one finish.
				_ = s.lean.Wait(ctx)
			}
			cancel()
		}
		if s.consul != nil {
			// Its blocking queries end with the server; a second for the
			// requests in flight.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if s.consul.Shutdown(ctx) != nil {
				s.consul.Close()
			}
			cancel()
		} else if s.consulLn != nil {
			s.consulLn.Close()
		}
		if s.dns != nil {
			s.dns.Close()
		} else if s.dnsUDP != nil {
			s.dnsUDP.Close()
			s.dnsTCP.Close()
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		if s.reg != nil {
			// Background work (the tutorial protocol's pending
			// verifications) is cancelled and waited for while Raft can
			// still commit what has begun.
			s.reg.Close()
		}
		if s.node != nil {
			err = s.node.Close()
		}
		if s.audit != nil {
			// After Raft: the FSM applies nothing more. What the queues
			// hold is written and fsynced.
			err = errors.Join(err, s.audit.Close())
		}
	})
	return err
}
