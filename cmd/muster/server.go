package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/verify"
)

const serverLong = `Run a registry node: the HTTP API on --http-addr, the catalog in memory,
every change in a Raft log under --data-dir.

A flag's value comes from, in order: the command line; its environment
variable, where it has one (shown as "env"); the --config file; the
default. The config file is TOML whose keys are the flags' names:

  http-addr = "0.0.0.0:9000"
  data-dir = "/var/lib/muster"
  verify-allow = ["10.0.0.0/8", "127.0.0.1"]   # or one comma-separated string
  expiry-grace = "15s"
  expiry-protection = "on"
  expiry-protection-max-hold = "5m"
  dns-addr = "127.0.0.1:8600"
  log-format = "json"

An unknown key is an error. force-new-cluster is for the command line
only: a file would repeat it at every start.`

// serverFlags are the values of muster server's flags, once resolved.
type serverFlags struct {
	config                             string
	httpAddr, dataDir, raftAddr        string
	secretFile, tokenFile, allow       string
	tlsCA, tlsCert, tlsKey             string
	httpTLSCert, httpTLSKey, httpTLSCA string
	verifyCA                           string
	forceNew, seedCompat, pprof        bool
	metricsTokenFile                   string
	verifyTimeout, grace, seedInterval time.Duration
	seedChallenge, seedResponse        string
	seedServices                       string
	perKey, perAddr                    int
	regRate                            float64
	diskReserve                        int64
	auditFileMiB                       int64
	auditFiles                         int
	logLevel, logFormat                *enumValue
	// Mass-expiry protection: on or off, and its tuning.
	protection                 *enumValue
	protThreshold, protOverdue float64
	protMin                    int
	protMaxHold, protCooldown  time.Duration

	// The cluster: this node's ID, members to join, how many voters form
	// a new cluster, whether it votes, whether it leaves on SIGTERM, and
	// how stale a follower's default reads may be.
	nodeID, join                string
	bootstrapExpect             int
	nonVoter, leaveOnTerm       bool
	maxStale                    time.Duration
	raftHeartbeat, raftElection time.Duration

	// seedVerifyTimeout is the tutorial protocol's patience with the
	// callback it runs after answering a registration.
	seedVerifyTimeout time.Duration

	// The certificate authority: the SPIFFE trust domain and the
	// lifetime of instances' certificates.
	trustDomain   string
	certTTL       time.Duration
	caCert, caKey string

	// DNS: where it listens (off when empty), its zone and its TTL.
	dnsAddr, dnsDomain string
	consulAddr         string
	ui                 bool
	leanBeats          bool
	dnsTTL             time.Duration
	dnsServices        string

	// anonReads lets reads go without a token (the default).
	anonReads bool
}

func newServerCmd(e env) *cobra.Command {
	var o serverFlags
	cmd := &cobra.Command{
		Use:   "server [flags]",
		Short: "run a registry node",
		Long:  serverLong,
		Args:  nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.serverConfig(cmd.Flags(), e)
			if err != nil {
				return err
			}
			return e.serve(cmd.Context(), e, cfg)
		},
	}
	def := server.DefaultConfig()
	seedDef := registry.DefaultSeedConfig()
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVar(&o.config, "config", "", "read flag values from this TOML file (see above)")
	bindEnv(f, "config", "MUSTER_CONFIG")
	f.StringVar(&o.httpAddr, "http-addr", def.HTTPAddr, "HTTP API address; port 0 picks a free port")
	bindEnv(f, "http-addr", "MUSTER_HTTP_ADDR")
	f.StringVar(&o.httpTLSCert, "http-tls-cert", "", "serve the API over HTTPS with this certificate (PEM, with its chain); read again when it changes")
	bindEnv(f, "http-tls-cert", "MUSTER_HTTP_TLS_CERT")
	f.StringVar(&o.httpTLSKey, "http-tls-key", "", "the private key of --http-tls-cert, readable by its owner only (chmod 600); read again when it changes")
	bindEnv(f, "http-tls-key", "MUSTER_HTTP_TLS_KEY")
	f.StringVar(&o.httpTLSCA, "http-tls-client-ca", "", "require every API client to present a certificate signed by a CA in this PEM bundle (needs --http-tls-cert); read again when it changes")
	bindEnv(f, "http-tls-client-ca", "MUSTER_HTTP_TLS_CLIENT_CA")
	f.StringVar(&o.dataDir, "data-dir", def.DataDir, "data directory")
	bindEnv(f, "data-dir", "MUSTER_DATA_DIR")
	f.StringVar(&o.raftAddr, "raft-addr", def.Cluster.RaftAddr, "Raft listener address, used only with --cluster-secret-file or --tls-ca/--tls-cert/--tls-key; without either this node is a single voter with no Raft listener")
	bindEnv(f, "raft-addr", "MUSTER_RAFT_ADDR")
	f.StringVar(&o.secretFile, "cluster-secret-file", "", "file holding the cluster secret, readable by its owner only (chmod 600), at least 32 bytes (openssl rand -hex 32); with it Raft listens on --raft-addr and accepts only peers that hold the same secret")
	bindEnv(f, "cluster-secret-file", "MUSTER_CLUSTER_SECRET_FILE")
	f.StringVar(&o.tlsCA, "tls-ca", "", "the cluster CA's certificate (muster tls ca create); with --tls-cert and --tls-key, instead of --cluster-secret-file, Raft listens on --raft-addr and accepts only peers whose certificate the CA signed")
	bindEnv(f, "tls-ca", "MUSTER_TLS_CA")
	f.StringVar(&o.tlsCert, "tls-cert", "", "this server's certificate, signed by the cluster CA (muster tls cert create)")
	bindEnv(f, "tls-cert", "MUSTER_TLS_CERT")
	f.StringVar(&o.tlsKey, "tls-key", "", "the private key of --tls-cert, readable by its owner only (chmod 600)")
	bindEnv(f, "tls-key", "MUSTER_TLS_KEY")
	f.StringVar(&o.nodeID, "node-id", "", "this server's ID in the cluster; default: read from <data-dir>/node-id, or made up there on first start")
	bindEnv(f, "node-id", "MUSTER_NODE_ID")
	f.StringVar(&o.join, "join", "", "comma-separated HTTP addresses (host:port) of servers of the cluster to join, tried until one answers; needs --cluster-secret-file or --tls-ca, --tls-cert and --tls-key")
	bindEnv(f, "join", "MUSTER_JOIN")
	f.SetAnnotation("join", listAnnotation, []string{"true"})
	f.IntVar(&o.bootstrapExpect, "bootstrap-expect", 0, "form a new cluster once this many servers (this one included) know each other, found through --join; give every server the same number; needs --cluster-secret-file or --tls-ca, --tls-cert and --tls-key")
	bindEnv(f, "bootstrap-expect", "MUSTER_BOOTSTRAP_EXPECT")
	f.BoolVar(&o.nonVoter, "non-voter", false, "join as a non-voter: a replica that serves reads and takes no part in elections")
	bindEnv(f, "non-voter", "MUSTER_NON_VOTER")
	f.BoolVar(&o.leaveOnTerm, "leave-on-terminate", false, "on SIGTERM or SIGINT, leave the cluster (a leader hands its leadership over first) before stopping")
	bindEnv(f, "leave-on-terminate", "MUSTER_LEAVE_ON_TERMINATE")
	f.DurationVar(&o.maxStale, "max-stale", registry.DefaultMaxStale, "a follower that has not heard from a leader for longer refuses default reads with 503 (?stale still answers)")
	bindEnv(f, "max-stale", "MUSTER_MAX_STALE")
	f.StringVar(&o.trustDomain, "trust-domain", registry.DefaultTrustDomain, "the SPIFFE trust domain of instances' certificates (spiffe://<trust-domain>/svc/<service>), a lowercase DNS name")
	bindEnv(f, "trust-domain", "MUSTER_TRUST_DOMAIN")
	f.DurationVar(&o.certTTL, "cert-ttl", registry.DefaultCertTTL, "the lifetime of the certificates the registry issues to instances, 5m to 24h; the SDK renews at half of it")
	bindEnv(f, "cert-ttl", "MUSTER_CERT_TTL")
	f.StringVar(&o.caCert, "ca-cert", "", "an operator's CA certificate (PEM) for instances' certificates, used instead of a generated CA when the registry holds none yet; with --ca-key")
	bindEnv(f, "ca-cert", "MUSTER_CA_CERT")
	f.StringVar(&o.caKey, "ca-key", "", "the private key of --ca-cert (PEM), readable by its owner only (chmod 600)")
	bindEnv(f, "ca-key", "MUSTER_CA_KEY")
	f.DurationVar(&o.raftHeartbeat, "raft-heartbeat-timeout", def.Cluster.HeartbeatTimeout, "a follower that has not heard from its leader for this long starts an election; lower fails over faster and risks needless elections on a slow network")
	bindEnv(f, "raft-heartbeat-timeout", "MUSTER_RAFT_HEARTBEAT_TIMEOUT")
	f.DurationVar(&o.raftElection, "raft-election-timeout", def.Cluster.ElectionTimeout, "how long a candidate waits for votes before it tries again")
	bindEnv(f, "raft-election-timeout", "MUSTER_RAFT_ELECTION_TIMEOUT")
	f.BoolVar(&o.forceNew, "force-new-cluster", false, "start although raft.db lost the Raft state this data dir held (see <data-dir>/cluster-id), or after a damaged raft.db was moved aside: the catalog comes back from the latest snapshot in <data-dir>/snapshots, or empty")
	f.StringVar(&o.tokenFile, "admin-token-file", "", "read the admin token from this file instead of <data-dir>/admin-token; MUSTER_ADMIN_TOKEN gives the token itself")
	bindEnv(f, "admin-token-file", "MUSTER_ADMIN_TOKEN_FILE")
	f.StringVar(&o.metricsTokenFile, "metrics-token-file", "", "require the token in this file (at least 16 characters) from scrapers of /metrics, which otherwise answers loopback callers only; MUSTER_METRICS_TOKEN gives the token itself; the admin token is accepted too")
	bindEnv(f, "metrics-token-file", "MUSTER_METRICS_TOKEN_FILE")
	f.BoolVar(&o.pprof, "pprof", false, "serve the Go runtime's profiles at /debug/pprof/ on the HTTP port, to the admin token")
	bindEnv(f, "pprof", "MUSTER_PPROF")
	f.StringVar(&o.allow, "verify-allow", defaultAllowString(), "comma-separated networks registration callbacks may reach; replaces the default")
	bindEnv(f, "verify-allow", "MUSTER_VERIFY_ALLOW")
	f.SetAnnotation("verify-allow", listAnnotation, []string{"true"})
	f.DurationVar(&o.verifyTimeout, "verify-timeout", def.Verify.Timeout, "timeout of a registration callback")
	f.StringVar(&o.verifyCA, "verify-ca", "", "trust this CA bundle (PEM), instead of the system's roots, for the certificates of https verification callbacks (verify_scheme https); read again when it changes")
	bindEnv(f, "verify-ca", "MUSTER_VERIFY_CA")
	f.DurationVar(&o.grace, "expiry-grace", def.Liveness.Grace, "after becoming leader, no instance expires before its TTL plus this grace")
	prot := def.Liveness.Protection
	o.protection = enumFlag(cmd, "expiry-protection", "", "on", "mass-expiry protection: when too many instances fall silent at once (a network split), hold their expiry until heartbeats come back or --expiry-protection-max-hold passes", "on", "off")
	bindEnv(f, "expiry-protection", "MUSTER_EXPIRY_PROTECTION")
	f.Float64Var(&o.protThreshold, "expiry-protection-threshold", prot.Threshold, "share of live instances (0 to 1) that must be overdue at once, more than which expiry is held")
	bindEnv(f, "expiry-protection-threshold", "MUSTER_EXPIRY_PROTECTION_THRESHOLD")
	f.IntVar(&o.protMin, "expiry-protection-min-instances", prot.MinInstances, "fewest live instances for which mass-expiry protection acts")
	bindEnv(f, "expiry-protection-min-instances", "MUSTER_EXPIRY_PROTECTION_MIN_INSTANCES")
	f.Float64Var(&o.protOverdue, "expiry-protection-overdue-factor", prot.OverdueFactor, "an instance is overdue when silent for this many times its usual heartbeat interval (above 1)")
	bindEnv(f, "expiry-protection-overdue-factor", "MUSTER_EXPIRY_PROTECTION_OVERDUE_FACTOR")
	f.DurationVar(&o.protMaxHold, "expiry-protection-max-hold", prot.MaxHold, "longest a hold lasts: held expiries happen by then whatever the heartbeats do")
	bindEnv(f, "expiry-protection-max-hold", "MUSTER_EXPIRY_PROTECTION_MAX_HOLD")
	f.DurationVar(&o.protCooldown, "expiry-protection-cooldown", prot.Cooldown, "after a hold is over, no new one begins for this long, counted from when it last held; expiries happen normally meanwhile (0: as long as --expiry-protection-max-hold)")
	bindEnv(f, "expiry-protection-cooldown", "MUSTER_EXPIRY_PROTECTION_COOLDOWN")
	f.IntVar(&o.perKey, "max-instances-per-key", def.Registry.MaxInstancesPerKey, "instances one enrolment key may hold at once, unless the key sets its own max_instances")
	f.IntVar(&o.perAddr, "max-instances-per-address", def.Registry.MaxInstancesPerAddress, "instances one address may hold at once, of any key")
	f.Float64Var(&o.regRate, "register-rate", float64(time.Second)/float64(def.Registry.RegisterEvery), "registrations per second one enrolment key may make, after a burst of ten seconds' worth")
	f.Int64Var(&o.diskReserve, "disk-reserve-mib", def.Cluster.DiskReserve>>20, "free space (MiB) the data dir's filesystem must keep: below it writes are refused with 503 while reads go on, so the Raft log never meets a full disk; 0 turns the guard off")
	f.Int64Var(&o.auditFileMiB, "audit-file-size-mib", def.Audit.MaxFileSize>>20, "each audit journal (<data-dir>/audit) begins a new file past this size (MiB)")
	f.IntVar(&o.auditFiles, "audit-files", def.Audit.MaxFiles, "each audit journal keeps this many older files besides the current one; the oldest is deleted")
	o.logLevel = enumFlag(cmd, "log-level", "", "info", "log level: debug, info, warn or error", "debug", "info", "warn", "error")
	o.logLevel.fold = true
	bindEnv(f, "log-level", "MUSTER_LOG_LEVEL")
	o.logFormat = enumFlag(cmd, "log-format", "", "text", "log format", "text", "json")
	bindEnv(f, "log-format", "MUSTER_LOG_FORMAT")
	f.StringVar(&o.dnsAddr, "dns-addr", "", "answer DNS (A, AAAA and SRV of passing instances) over UDP and TCP on this address, e.g. 127.0.0.1:8600; off when empty; anyone who can reach it reads what lookups show")
	bindEnv(f, "dns-addr", "MUSTER_DNS_ADDR")
	f.StringVar(&o.consulAddr, "consul-addr", "", "serve a subset of Consul's HTTP API (catalog, health and status reads; service registration and TTL checks with an enrolment key; see docs/consul-compat.md) on this address, e.g. 127.0.0.1:8500, with the API's TLS and read rules; off when empty")
	bindEnv(f, "consul-addr", "MUSTER_CONSUL_ADDR")
	f.BoolVar(&o.ui, "ui", true, "serve the web console at /ui/ on the API's address (see docs/ui.md); false: no console")
	bindEnv(f, "ui", "MUSTER_UI")
	f.BoolVar(&o.leanBeats, "lean-heartbeats", true, "without TLS, answer plain heartbeats (PUT /v1/instances/{id}/heartbeat) with a lean HTTP/1.1 reader (about 30 % less server CPU a heartbeat than net/http) through the same handler (see docs/performance.md); false: net/http answers every request")
	bindEnv(f, "lean-heartbeats", "MUSTER_LEAN_HEARTBEATS")
	f.StringVar(&o.dnsDomain, "dns-domain", def.DNS.Domain, "the DNS zone: NAME.service.<domain>, TAG.NAME.service.<domain>, ID.instance.<domain>; other names are refused")
	bindEnv(f, "dns-domain", "MUSTER_DNS_DOMAIN")
	f.DurationVar(&o.dnsTTL, "dns-ttl", def.DNS.TTL, "TTL of DNS answers, negative ones included, in whole seconds; 0 keeps resolvers from caching an address past its instance's death")
	bindEnv(f, "dns-ttl", "MUSTER_DNS_TTL")
	f.StringVar(&o.dnsServices, "dns-services", "", "comma-separated service name patterns DNS answers for (others are NXDOMAIN); empty: every service. Needed with --anonymous-reads=false")
	f.SetAnnotation("dns-services", listAnnotation, []string{"true"})
	bindEnv(f, "dns-services", "MUSTER_DNS_SERVICES")
	f.BoolVar(&o.anonReads, "anonymous-reads", true, "answer lookups, lists, streams and instance reads without a token; false: each needs a token whose services cover what it reads, and lists show only those")
	bindEnv(f, "anonymous-reads", "MUSTER_ANONYMOUS_READS")
	f.BoolVar(&o.seedCompat, "seed-compat", false, "also serve the tutorial's form-encoded protocol under /api/v1/ (register, verify, ping, lookup)")
	f.StringVar(&o.seedServices, "seed-services", "", "comma-separated service names (or patterns) the tutorial protocol may register; required with --seed-compat")
	f.SetAnnotation("seed-services", listAnnotation, []string{"true"})
	f.StringVar(&o.seedChallenge, "seed-challenge", seedDef.Challenge, "challenge phrase of the tutorial protocol")
	f.StringVar(&o.seedResponse, "seed-response", seedDef.Response, "response phrase the tutorial protocol expects")
	f.DurationVar(&o.seedInterval, "seed-heartbeat-interval", seedDef.HeartbeatInterval, "ping interval of tutorial-protocol services; their TTL is three intervals")
	f.DurationVar(&o.seedVerifyTimeout, "seed-verify-timeout", seedDef.VerifyTimeout, "how long a tutorial-protocol service has to answer the verification callback, which runs after its registration was answered 200")
	bindEnv(f, "seed-verify-timeout", "MUSTER_SEED_VERIFY_TIMEOUT")
	for _, name := range []string{"config", "http-tls-cert", "http-tls-key", "http-tls-client-ca", "verify-ca", "cluster-secret-file", "tls-ca", "tls-cert", "tls-key", "admin-token-file", "metrics-token-file"} {
		cmd.MarkFlagFilename(name)
	}
	cmd.MarkFlagDirname("data-dir")
	return cmd
}

// serverConfig fills the flags the command line left unset from their
// environment variables, then from the config file, and returns the
// server's configuration.
func (o *serverFlags) serverConfig(fs *pflag.FlagSet, e env) (server.Config, error) {
	if err := resolveFlags(fs, e.getenv); err != nil {
		return server.Config{}, err
	}
	var level slog.Level
	level.UnmarshalText([]byte(o.logLevel.String())) // one of the enum's values
	var h slog.Handler
	if o.logFormat.String() == "json" {
		h = slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level})
	} else {
		h = slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})
	}
	prefixes, err := verify.ParseAllow(strings.Split(o.allow, ","))
	if err != nil {
		return server.Config{}, usagef("--verify-allow: %v", err)
	}
	cfg := server.DefaultConfig()
	cfg.HTTPAddr, cfg.DataDir, cfg.Cluster.RaftAddr = o.httpAddr, o.dataDir, o.raftAddr
	cfg.HTTPTLS = server.HTTPTLS{CertFile: o.httpTLSCert, KeyFile: o.httpTLSKey, ClientCAFile: o.httpTLSCA}
	cfg.VerifyCAFile = o.verifyCA
	cfg.Cluster.SecretFile, cfg.Cluster.ForceNewCluster = o.secretFile, o.forceNew
	cfg.Cluster.TLSCAFile, cfg.Cluster.TLSCertFile, cfg.Cluster.TLSKeyFile = o.tlsCA, o.tlsCert, o.tlsKey
	authenticated := o.secretFile != "" || o.tlsCA != "" || o.tlsCert != "" || o.tlsKey != ""
	cfg.Cluster.NodeID, cfg.Cluster.BootstrapExpect, cfg.Cluster.NonVoter = o.nodeID, o.bootstrapExpect, o.nonVoter
	for _, a := range strings.Split(o.join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Cluster.Join = append(cfg.Cluster.Join, a)
		}
	}
	if cfg.Cluster.Clustered() && !authenticated {
		return server.Config{}, usageError("--join, --bootstrap-expect and --non-voter need --cluster-secret-file, or --tls-ca, --tls-cert and --tls-key: the servers of a cluster authenticate each other with them")
	}
	cfg.LeaveOnClose = o.leaveOnTerm
	if o.maxStale <= 0 {
		return server.Config{}, usageError("--max-stale must be above 0")
	}
	cfg.Registry.MaxStale = o.maxStale
	if !registry.ValidTrustDomain(o.trustDomain) {
		return server.Config{}, usageError(fmt.Sprintf("--trust-domain %.64q is not a lowercase DNS name (a-z, 0-9, '-' and dots, such as muster.local)", o.trustDomain))
	}
	if o.certTTL < registry.MinCertTTL || o.certTTL > registry.MaxCertTTL {
		return server.Config{}, usageError(fmt.Sprintf("--cert-ttl %s is not between %s and %s", o.certTTL, registry.MinCertTTL, registry.MaxCertTTL))
	}
	cfg.Registry.CA.TrustDomain, cfg.Registry.CA.CertTTL = o.trustDomain, o.certTTL
	if (o.caCert == "") != (o.caKey == "") {
		return server.Config{}, usageError("--ca-cert and --ca-key go together")
	}
	cfg.CACertFile, cfg.CAKeyFile = o.caCert, o.caKey
	cfg.Cluster.HeartbeatTimeout, cfg.Cluster.ElectionTimeout = o.raftHeartbeat, o.raftElection
	cfg.AdminToken = e.getenv("MUSTER_ADMIN_TOKEN")
	cfg.AdminTokenFile = o.tokenFile
	if v := e.getenv("MUSTER_METRICS_TOKEN"); v != "" {
		if cfg.MetricsToken = strings.TrimSpace(v); cfg.MetricsToken == "" {
			return server.Config{}, usageError("MUSTER_METRICS_TOKEN is blank: set a token of at least 16 characters, or unset it")
		}
	}
	if o.metricsTokenFile != "" {
		tok, err := server.ReadTokenFile(o.metricsTokenFile)
		if err != nil {
			return server.Config{}, usagef("--metrics-token-file: %v", err)
		}
		cfg.MetricsToken = tok
	}
	cfg.Pprof = o.pprof
	cfg.Verify.Allow = prefixes
	cfg.Verify.Timeout = o.verifyTimeout
	cfg.Liveness.Grace = o.grace
	prot := &cfg.Liveness.Protection
	prot.Enabled = o.protection.String() == "on"
	prot.Threshold, prot.MinInstances, prot.OverdueFactor, prot.MaxHold = o.protThreshold, o.protMin, o.protOverdue, o.protMaxHold
	prot.Cooldown = o.protCooldown
	if o.regRate <= 0 || o.regRate > 1e6 {
		return server.Config{}, usageError("--register-rate must be between 0 and 1000000 a second")
	}
	switch {
	case o.diskReserve < 0:
		return server.Config{}, usageError("--disk-reserve-mib must not be negative")
	case o.diskReserve == 0:
		cfg.Cluster.DiskReserve = -1 // off
	default:
		cfg.Cluster.DiskReserve = o.diskReserve << 20
	}
	cfg.DNS.Addr, cfg.DNS.Domain, cfg.DNS.TTL = o.dnsAddr, o.dnsDomain, o.dnsTTL
	cfg.Consul.Addr = o.consulAddr
	cfg.NoConsole = !o.ui
	cfg.NoLeanHeartbeats = !o.leanBeats
	cfg.DNS.Services = splitList(o.dnsServices)
	cfg.Registry.PrivateReads = !o.anonReads
	if o.auditFileMiB < 1 || o.auditFileMiB > 1<<20 || o.auditFiles < 1 {
		return server.Config{}, usageError("--audit-file-size-mib must be from 1 to 1048576, --audit-files at least 1")
	}
	cfg.Audit.MaxFileSize, cfg.Audit.MaxFiles = o.auditFileMiB<<20, o.auditFiles
	cfg.Registry.MaxInstancesPerKey, cfg.Registry.MaxInstancesPerAddress = o.perKey, o.perAddr
	cfg.Registry.RegisterEvery = time.Duration(float64(time.Second) / o.regRate)
	cfg.Registry.RegisterBurst = max(1, int(10*o.regRate))
	cfg.Logger = slog.New(h)
	if !authenticated && fs.Changed("raft-addr") {
		cfg.Logger.Warn("--raft-addr has no effect without --cluster-secret-file or --tls-ca, --tls-cert and --tls-key: this node is a single voter with no Raft listener", "raft_addr", o.raftAddr)
	}
	if o.seedCompat {
		pats := splitList(o.seedServices)
		sc := registry.DefaultSeedConfig()
		sc.Challenge, sc.Response, sc.HeartbeatInterval, sc.Services = o.seedChallenge, o.seedResponse, o.seedInterval, pats
		sc.VerifyTimeout = o.seedVerifyTimeout
		cfg.Registry.Seed = &sc
		if err := cfg.Registry.Seed.Validate(); err != nil {
			return server.Config{}, usagef("--seed-compat: %v", err)
		}
		cfg.Logger.Warn("the tutorial protocol is on: it registers without an enrolment key, for these name patterns", "seed_services", pats)
	}
	// A value the components refuse is a command-line mistake too: exit 2,
	// before anything is opened or written.
	if err := cfg.Validate(); err != nil {
		return server.Config{}, usagef("%v", err)
	}
	return cfg, nil
}

// serve runs a registry with cfg until ctx ends or the node halts.
func serve(ctx context.Context, _ env, cfg server.Config) error {
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

// splitList is the values of a comma-separated flag, blanks trimmed and
// empty ones left out.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
