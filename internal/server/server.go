package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/cluster"
	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/health"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/verify"
)

// Config configures a server.
type Config struct {
	HTTPAddr string
	DataDir  string
	RaftAddr string
	// AdminToken, when set, is the admin token. Otherwise AdminTokenFile is
	// read, and failing that DataDir/admin-token is read or created (0600).
	AdminToken     string
	AdminTokenFile string
	VerifyAllow    []netip.Prefix
	VerifyTimeout  time.Duration
	// VerifyFailureBurst failed verifications per enrolment key are allowed
	// at once, then one per VerifyFailureEvery; beyond that, 429.
	VerifyFailureBurst int
	VerifyFailureEvery time.Duration
	// Grace is added to every TTL after the node becomes leader.
	Grace         time.Duration
	SweepInterval time.Duration
	// Seed, when set, also serves the tutorial's wire protocol.
	Seed *httpapi.SeedConfig
	// RaftTimeout sets Raft's heartbeat and election timeouts.
	RaftTimeout time.Duration
	Logger      *slog.Logger
}

// DefaultConfig returns the settings of `muster server` with no flags.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:           "127.0.0.1:9000",
		DataDir:            "muster-data",
		RaftAddr:           "127.0.0.1:9001",
		VerifyAllow:        verify.DefaultAllow(),
		VerifyTimeout:      2 * time.Second,
		VerifyFailureBurst: 10,
		VerifyFailureEvery: 6 * time.Second,
		Grace:              10 * time.Second,
		SweepInterval:      250 * time.Millisecond,
		RaftTimeout:        500 * time.Millisecond,
	}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	var errs []error
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("http address is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	if c.Grace < 0 {
		errs = append(errs, errors.New("grace must not be negative"))
	}
	if c.SweepInterval <= 0 {
		errs = append(errs, errors.New("sweep interval must be positive"))
	}
	if c.VerifyTimeout <= 0 {
		errs = append(errs, errors.New("verify timeout must be positive"))
	}
	if c.VerifyFailureBurst < 1 || c.VerifyFailureEvery <= 0 {
		errs = append(errs, errors.New("verify failure burst must be at least 1 and its refill period positive"))
	}
	if len(c.VerifyAllow) == 0 {
		errs = append(errs, errors.New("verify allowlist is empty"))
	}
	if c.Seed != nil {
		if err := c.Seed.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Server is a running muster node.
type Server struct {
	cfg      Config
	log      *slog.Logger
	cat      *catalog.Catalog
	node     *cluster.Node
	tracker  *health.Tracker
	listener net.Listener
	http     *http.Server
	handler  http.Handler
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
	// AdminTokenPath is where the admin token was read or written; empty
	// when it came from Config.AdminToken.
	adminTokenPath string
	// fresh holds connections that have sent no request yet, with the
	// time they were accepted (see Close).
	fresh sync.Map
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
	return &Server{cfg: cfg, log: cfg.Logger}, nil
}

// Start opens storage, starts Raft, binds the HTTP listener and serves. It
// returns once the listener is bound; use Ready or /readyz to wait for the
// catalog to be loaded.
func (s *Server) Start(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("server: data dir: %w", err)
	}
	adminToken, err := s.loadAdminToken()
	if err != nil {
		return err
	}
	s.cat = catalog.New()
	s.tracker = health.NewTracker()
	ncfg := cluster.DefaultConfig()
	ncfg.DataDir = s.cfg.DataDir
	ncfg.RaftAddr = s.cfg.RaftAddr
	if s.cfg.RaftTimeout > 0 {
		ncfg.HeartbeatTimeout = s.cfg.RaftTimeout
		ncfg.ElectionTimeout = s.cfg.RaftTimeout
	}
	ncfg.Logger = s.log
	node, err := cluster.Open(ncfg, s.cat)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.node = node
	vcfg := verify.DefaultConfig()
	vcfg.Allow = s.cfg.VerifyAllow
	vcfg.Timeout = s.cfg.VerifyTimeout
	verifier, err := verify.New(vcfg)
	if err != nil {
		node.Close()
		return fmt.Errorf("server: %w", err)
	}
	handler := httpapi.NewHandler(httpapi.Deps{
		Catalog: s.cat, Node: node, Tracker: s.tracker, Verifier: verifier,
		AdminTokenHash: catalog.HashSecret(adminToken), Grace: s.cfg.Grace, Logger: s.log, Seed: s.cfg.Seed,
		FailureBurst: s.cfg.VerifyFailureBurst, FailureEvery: s.cfg.VerifyFailureEvery,
	})
	s.handler = handler
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		node.Close()
		return fmt.Errorf("server: listen %s: %w", s.cfg.HTTPAddr, err)
	}
	s.listener = ln
	s.http = &http.Server{
		ConnState:         s.trackNew,
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.sweepWhileLeader(ctx)
	}()
	s.log.Info("muster listening", "http_addr", ln.Addr().String(), "url", s.URL(), "raft_addr", node.RaftAddr(),
		"data_dir", s.cfg.DataDir, "node_id", node.NodeID())
	return nil
}

// sweepWhileLeader runs the expiry sweep during each term in which this
// node is a ready leader.
func (s *Server) sweepWhileLeader(ctx context.Context) {
	sw := health.NewSweeper(health.SweepConfig{
		Interval: s.cfg.SweepInterval, Grace: s.cfg.Grace, Logger: s.log,
		// After a pause nobody could be heard: restart every clock, as a
		// new leader would.
		OnPause: func(resumed time.Time, _ time.Duration) { s.node.Rebase(resumed) },
	}, s.tracker, s.cat, s.node)
	for {
		ready, _ := s.node.Ready()
		select {
		case <-ctx.Done():
			return
		case <-ready:
		}
		sw.Run(ctx, s.leadership)
		if ctx.Err() != nil {
			return
		}
	}
}

// leadership reports whether the node is a ready leader, and since when.
func (s *Server) leadership() (time.Time, bool) {
	ch, since := s.node.Ready()
	select {
	case <-ch:
		return since, true
	default:
		return time.Time{}, false
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
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("server: admin token file %s is empty", path)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			s.log.Warn("admin token file is readable by others; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
		}
		s.log.Info("admin token loaded", "path", path)
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) || s.cfg.AdminTokenFile != "" {
		return "", fmt.Errorf("server: admin token: %w", err)
	}
	tok := "ma_" + catalog.RandomSecret()
	if err := durable.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("server: admin token: %w", err)
	}
	s.log.Info("admin token created; read it from this file", "path", path)
	return tok, nil
}

// Addr returns the bound HTTP address.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// URL returns the base URL of the HTTP API.
func (s *Server) URL() string { return "http://" + s.Addr() }

// AdminTokenPath returns the file holding the admin token, or "" if the
// token was given directly.
func (s *Server) AdminTokenPath() string { return s.adminTokenPath }

// Catalog returns the server's catalog (read-only use).
func (s *Server) Catalog() *catalog.Catalog { return s.cat }

// Handler returns the HTTP API handler, for in-process benchmarks.
func (s *Server) Handler() http.Handler { return s.handler }

// Node returns the server's Raft node.
func (s *Server) Node() *cluster.Node { return s.node }

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
			cancel()
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		if s.node != nil {
			err = s.node.Close()
		}
	})
	return err
}
