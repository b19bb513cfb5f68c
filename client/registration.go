package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
)

// ServiceConfig describes a service instance that looks after its own
// registration.
type ServiceConfig struct {
	// Name is the service name (1 to 63 of a-z 0-9 - _).
	Name string
	// Address and Port are where clients reach the instance; the registry
	// calls Address back to verify it.
	Address string
	Port    int
	// Scheme is http (default) or https.
	Scheme string
	Tags   []string
	Meta   map[string]string
	// TTL is how long the registry waits for a heartbeat; default 10s.
	// Heartbeats go out at about TTL/3, with jitter, and each gives up
	// after TTL/3.
	TTL time.Duration
	// DeregisterAfter, when set, is how long the registry keeps the
	// instance after its last heartbeat; default 10 × TTL.
	DeregisterAfter time.Duration
	// Checks are active health checks the registry runs against the
	// instance besides its heartbeats (see api.CheckDecl): it is passing
	// only while it heartbeats and every check passes.
	Checks []api.CheckDecl
	// ChecksOnly registers the instance with a TTL of 0: it sends no
	// heartbeats, and the registry judges it by its Checks alone (they
	// must be set; TTL is ignored). For a process that cannot heartbeat,
	// such as a database behind a sidecar. Run then looks the instance up
	// every 10 s and registers it again if the registry no longer has it.
	ChecksOnly bool
	// Registry is the registry's base URL; default $MUSTER_ADDR, then
	// http://127.0.0.1:9000.
	Registry string
	// Key is the enrolment key secret; default $MUSTER_KEY.
	Key string
	// VerifyPath is where the verify handler is mounted; default
	// /.well-known/muster/verify.
	VerifyPath string
	// VerifyPort, when set, tells the registry to call back on this port
	// instead of Port (a sidecar).
	VerifyPort int
	// VerifyScheme, when set, is the scheme of the callback instead of
	// Scheme (a plain-HTTP sidecar for an https instance).
	VerifyScheme string
	// ListenAddr is where Serve listens; default Address:Port. Set it to
	// ":PORT" to listen on every interface.
	ListenAddr string
	// Listener, when set, is used by Serve instead of listening on
	// ListenAddr; Port defaults to its port. Handy with port 0.
	Listener net.Listener
	// DrainDelay is how long a shutting-down instance stays registered as
	// draining before it deregisters, so that clients' caches (a
	// Resolver's MaxAge, 2 s by default) move away from it; default 3s.
	// A negative value skips draining.
	DrainDelay time.Duration
	// MinBackoff and MaxBackoff bound the retry delay when the registry
	// cannot be reached; defaults 200ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// HTTPClient talks to the registry; default has a 10 s timeout, and
	// TLS for an https:// registry as Config's (TLS, else the
	// environment's).
	HTTPClient *http.Client
	// TLS configures the default HTTPClient's connections to an https://
	// registry; see Config.TLS.
	TLS *tls.Config
	// Client, when set, is the client the registration talks to the
	// registry through, and Registry and HTTPClient are not used. The
	// Registrations of one process that share a Client send their
	// heartbeats together, in batches (see Client.Heartbeat): a host of
	// many instances then costs the registry a request per batch, not
	// one per heartbeat.
	Client *Client
	// Certificate makes Run keep a certificate for the instance (see
	// Registration.Certificate): once registered it generates a key
	// (ECDSA P-256, in memory only) and has the registry sign it, and it
	// gets a new one at half the certificate's life and after every
	// registration again (which gives a new instance ID). TLSConfig and
	// MTLSTransport present it.
	Certificate bool
	// Logger receives registration failures and state changes; default
	// slog.Default() as of NewRegistration. To silence it, set
	// slog.New(slog.DiscardHandler).
	Logger *slog.Logger
}

// DefaultServiceConfig returns the defaults that NewRegistration and
// Serve apply to the zero fields of a ServiceConfig: scheme http, a 10 s
// TTL, the default verify path, a 3 s drain, backoff from 200 ms to 30 s.
// Name, Address, Port, Registry and Key are left empty: the first three
// are the caller's to set, and Registry and Key default to $MUSTER_ADDR
// and $MUSTER_KEY when NewRegistration runs. Logger and HTTPClient are
// left nil, which means slog.Default() and a client with a 10 s timeout.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{
		Scheme:     api.DefaultScheme,
		TTL:        10 * time.Second,
		VerifyPath: api.DefaultVerifyPath,
		// Longer than a Resolver's default MaxAge (2 s), with room for the
		// revalidation itself.
		DrainDelay: 3 * time.Second,
		MinBackoff: 200 * time.Millisecond,
		MaxBackoff: 30 * time.Second,
	}
}

func (c *ServiceConfig) setDefaults(getenv func(string) string) {
	d := DefaultServiceConfig()
	if c.Port == 0 && c.Listener != nil {
		if a, ok := c.Listener.Addr().(*net.TCPAddr); ok {
			c.Port = a.Port
		}
	}
	if c.Registry == "" {
		c.Registry = getenv("MUSTER_ADDR")
	}
	if c.Key == "" {
		c.Key = getenv("MUSTER_KEY")
	}
	if c.Scheme == "" {
		c.Scheme = d.Scheme
	}
	if c.TTL == 0 {
		c.TTL = d.TTL
	}
	if c.ListenAddr == "" {
		c.ListenAddr = net.JoinHostPort(c.Address, strconv.Itoa(c.Port))
	}
	if c.VerifyPath == "" {
		c.VerifyPath = d.VerifyPath
	}
	if c.DrainDelay == 0 {
		c.DrainDelay = d.DrainDelay
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = d.MinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a configuration error.
func (c *ServiceConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("service name is required"))
	}
	if c.Address == "" {
		errs = append(errs, errors.New("address is required"))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, errors.New("port must be between 1 and 65535"))
	}
	if c.Key == "" {
		errs = append(errs, errors.New("enrolment key is required (ServiceConfig.Key or MUSTER_KEY)"))
	}
	switch {
	case c.ChecksOnly && len(c.Checks) == 0:
		errs = append(errs, errors.New("ChecksOnly needs at least one check"))
	case !c.ChecksOnly && c.TTL < time.Second:
		errs = append(errs, errors.New("ttl must be at least 1s"))
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, errors.New("backoff bounds are invalid"))
	}
	if !validVerifyPath(c.VerifyPath) {
		errs = append(errs, fmt.Errorf("verify path %q must start with %s and hold at most %d of a-z A-Z 0-9 - . _ ~ /, with no empty, . or .. segment",
			c.VerifyPath, api.VerifyPathPrefix, maxVerifyPathLen))
	}
	if err := errors.Join(errs...); err != nil {
		return errorf("service config: %w", err)
	}
	return nil
}

// maxVerifyPathLen is the registry's limit on a verify path.
const maxVerifyPathLen = 256

// validVerifyPath applies the registry's rule for a verify path (under
// api.VerifyPathPrefix; letters, digits and - . _ ~ / only; no empty, "."
// or ".." segment), so that a bad one is refused before anything runs:
// such a path is also one that http.ServeMux accepts as a pattern.
func validVerifyPath(p string) bool {
	if len(p) > maxVerifyPathLen || !strings.HasPrefix(p, api.VerifyPathPrefix) {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~/", c) >= 0) {
			return false
		}
	}
	for _, seg := range strings.Split(strings.Trim(p, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// State is what a Registration reports about itself.
type State struct {
	// Registered is true once the registry has accepted the registration,
	// until the registry says it has forgotten the instance (a heartbeat
	// answered 404 or 403) or Run deregisters it. A heartbeat that fails
	// for another reason (registry down, no leader, a timeout) leaves it
	// true; LastError says what happened.
	Registered bool
	InstanceID string
	// Status is the registry's last word on the instance (passing,
	// critical, draining), or "" when not registered.
	Status string
	// LastError is the most recent failure talking to the registry; it is
	// cleared by the next success.
	LastError error
	// Since is when Registered last changed.
	Since time.Time
}

// Registration keeps one service instance registered: it registers (and
// answers the registry's verification callback), heartbeats, registers
// again when the registry has forgotten the instance, and drains and
// deregisters on shutdown. The registry being down, busy or between
// leaders never stops it: it retries with capped exponential backoff and
// jitter, never sooner than the registry's Retry-After. A refusal that
// retrying cannot fix (a wrong key, say) does stop it: Run returns the
// refusal, which Err and WaitRegistered report too.
//
// Mount VerifyHandler on the instance's HTTP server (Serve does this), then
// call Run, once.
type Registration struct {
	cfg    ServiceConfig
	client *Client
	log    *slog.Logger

	mu      sync.Mutex
	pending map[string]*pendingReg // by nonce
	state   State
	token   string
	refused error         // the permanent refusal that stopped Run
	orphans []orphanReg   // answered registrations whose 201 was lost
	changed chan struct{} // closed and replaced on every state change

	// certs is the instance's certificate (certs.go).
	certs certs

	// Owned by Run's goroutine: the current run of failed heartbeats and
	// when it was last logged at warning level.
	hbFailures int
	hbWarned   time.Time
}

// orphanReg is a registration whose callback was answered but whose 201
// was not seen.
type orphanReg struct{ id, token string }

type pendingReg struct {
	token, instanceID string
	done              bool
}

// NewRegistration checks cfg (filling defaults from MUSTER_ADDR and
// MUSTER_KEY) and returns a registration that has not started.
func NewRegistration(cfg ServiceConfig) (*Registration, error) {
	cfg.setDefaults(os.Getenv)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.Client
	if c == nil {
		var err error
		hc := cfg.HTTPClient
		if hc == nil {
			if hc, err = httpClient(10*time.Second, cfg.TLS, os.Getenv); err != nil {
				return nil, err
			}
		}
		if c, err = New(Config{Addr: cfg.Registry, HTTPClient: hc}); err != nil {
			return nil, err
		}
	}
	return &Registration{
		cfg: cfg, client: c, log: cfg.Logger.With("service", cfg.Name),
		pending: map[string]*pendingReg{}, changed: make(chan struct{}),
		certs: certs{changed: make(chan struct{})},
	}, nil
}

// State returns the registration's current state.
func (r *Registration) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// Err returns the registry's permanent refusal of this registration, or
// nil. It is nil while the instance is registered, while transient
// failures (the registry down, busy, rate limiting, a quota, a callback
// that failed) are being retried, and after a normal shutdown. Once the
// registry refuses in a way that retrying cannot fix (401 unauthorized,
// 403 forbidden, 400 invalid request, 409 conflict, 422
// address_not_allowed), Run stops retrying and returns this error; it
// matches ErrRefused and the registry's own error (ErrUnauthorized, say)
// with errors.Is, and it does not change afterwards.
func (r *Registration) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// WaitRegistered blocks until the instance is registered, the registry
// refuses it for good (the error is then Err's), or ctx ends.
func (r *Registration) WaitRegistered(ctx context.Context) (State, error) {
	for {
		r.mu.Lock()
		st, ch, refused := r.state, r.changed, r.refused
		r.mu.Unlock()
		if st.Registered {
			return st, nil
		}
		if refused != nil {
			return st, refused
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

func (r *Registration) setState(f func(*State)) {
	r.mu.Lock()
	before := r.state
	f(&r.state)
	if r.state.Registered != before.Registered {
		r.state.Since = time.Now()
	}
	after := r.state
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	switch {
	case after.Registered && !before.Registered:
		r.log.Info("registered with muster", "instance_id", after.InstanceID, "status", after.Status)
	case !after.Registered && before.Registered && after.LastError != nil:
		r.log.Warn("no longer registered with muster", "instance_id", before.InstanceID, "err", after.LastError)
	case after.Registered && after.Status != before.Status:
		r.log.Info("status changed", "instance_id", after.InstanceID, "from", before.Status, "to", after.Status)
	}
}

func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// register makes one registration attempt.
func (r *Registration) register(ctx context.Context) error {
	nonce := newNonce()
	p := &pendingReg{}
	r.mu.Lock()
	r.pending[nonce] = p
	r.mu.Unlock()
	// finish retires the nonce and, in the same critical section, reads
	// what its callback delivered, so that no callback can slip in between.
	finish := func() (token, id string, answered bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.pending, nonce)
		return p.token, p.instanceID, p.done
	}
	req := api.RegisterRequest{
		Address: r.cfg.Address, Port: r.cfg.Port, Scheme: r.cfg.Scheme, Tags: r.cfg.Tags, Meta: r.cfg.Meta,
		TTL: r.cfg.TTL.String(), VerifyPath: r.cfg.VerifyPath, VerifyPort: r.cfg.VerifyPort, VerifyScheme: r.cfg.VerifyScheme, Nonce: nonce,
	}
	if r.cfg.DeregisterAfter > 0 {
		req.DeregisterAfter = r.cfg.DeregisterAfter.String()
	}
	req.Checks = r.cfg.Checks
	if r.cfg.ChecksOnly {
		req.TTL = "0s"
	}
	resp, err := r.client.Register(ctx, r.cfg.Name, r.cfg.Key, req)
	token, id, answered := finish()
	if err != nil {
		if answered {
			// The registry may have committed this instance although the
			// answer was lost: remember it so shutdown can remove it.
			r.mu.Lock()
			r.orphans = append(r.orphans, orphanReg{id: id, token: token})
			r.mu.Unlock()
		}
		return err
	}
	if token == "" || id != resp.ID {
		return errorf("register: the registry accepted instance %s but its callback never reached this process's verify handler", resp.ID)
	}
	r.mu.Lock()
	// This registration replaced any orphan of the same endpoint.
	r.token, r.orphans = token, nil
	r.mu.Unlock()
	r.setState(func(s *State) {
		s.Registered, s.InstanceID, s.Status, s.LastError = true, resp.ID, api.StatusPassing, nil
	})
	return nil
}

// backoff returns the delay before retry number n (from 0): exponential
// from MinBackoff, capped at MaxBackoff, with full jitter in [d/2, d].
func (r *Registration) backoff(n int) time.Duration {
	d := float64(r.cfg.MinBackoff) * math.Pow(2, float64(min(n, 30)))
	if d > float64(r.cfg.MaxBackoff) {
		d = float64(r.cfg.MaxBackoff)
	}
	return time.Duration(d/2 + mrand.Float64()*d/2)
}

// maxRetryAfter bounds the Retry-After the SDK honours, so that a
// confused proxy cannot park an instance for hours.
const maxRetryAfter = 10 * time.Minute

// atLeastRetryAfter returns d, or the Retry-After that err carries (up to
// maxRetryAfter) if that is longer, plus up to a tenth more so that
// instances told the same thing do not come back in step.
func atLeastRetryAfter(d time.Duration, err error) time.Duration {
	if ra := min(retryAfter(err), maxRetryAfter); ra > d {
		return ra + time.Duration(mrand.Float64()*float64(ra)/10)
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Run registers and heartbeats until ctx ends, then drains for DrainDelay
// (unless it is negative) and deregisters. An instance whose callback this
// process answered but whose 201 had not arrived when ctx ended is
// deregistered too. Run returns after the shutdown.
//
// Failures that may pass (the registry unreachable, 503 unavailable or
// busy, 429 rate_limited or quota_exceeded, 422 verification_failed, 500)
// are retried with backoff, never sooner than the answer's Retry-After,
// and logged. A refusal that retrying cannot fix (see Err) ends the
// retries: Run cleans up and returns that refusal at once, without
// waiting for ctx. Otherwise it returns nil, or the error of a
// deregistration that failed.
func (r *Registration) Run(ctx context.Context) error {
	if r.cfg.Certificate {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.keepCertificate(cctx)
		}()
		defer func() { cancel(); <-done }()
	}
	attempt := 0
	var hbErr error // the last failed heartbeat's, for its Retry-After
	for ctx.Err() == nil {
		if !r.State().Registered {
			if err := r.register(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				if permanent(err) {
					refused := errorf("%w: %w", ErrRefused, err)
					r.mu.Lock()
					r.refused = refused
					r.mu.Unlock()
					r.setState(func(s *State) { s.LastError = err })
					r.log.Error("registration refused; not retrying", "err", err)
					if serr := r.shutdown(); serr != nil {
						return errors.Join(refused, serr)
					}
					return refused
				}
				d := atLeastRetryAfter(r.backoff(attempt), err)
				attempt++
				r.setState(func(s *State) { s.LastError = err })
				r.log.Warn("registration failed; retrying", "err", err, "retry_in", d.Round(time.Millisecond))
				sleep(ctx, d)
				continue
			}
			attempt = 0
		}
		// Heartbeat at about TTL/3, jittered by ±10%; after a failed
		// heartbeat, sooner (but not sooner than its Retry-After), so that
		// a short registry outage does not cost the instance its TTL.
		next := r.beatEvery()
		next += time.Duration((mrand.Float64()*0.2 - 0.1) * float64(next))
		if attempt > 0 {
			next = min(atLeastRetryAfter(r.backoff(attempt-1), hbErr), next)
		}
		if !sleep(ctx, next) {
			break
		}
		if hbErr = r.heartbeat(ctx); hbErr == nil {
			attempt = 0
		} else {
			attempt++
		}
	}
	return r.shutdown()
}

// heartbeat sends one heartbeat and reacts to the answer. It returns nil
// when the heartbeat was accepted or answered definitively, and the
// failure when it should be retried soon.
func (r *Registration) heartbeat(ctx context.Context) error {
	st := r.State()
	r.mu.Lock()
	token := r.token
	r.mu.Unlock()
	// A heartbeat that takes longer than TTL/3 is as good as lost: give up
	// on it and let the next one try.
	hctx, cancel := context.WithTimeout(ctx, r.beatEvery())
	defer cancel()
	var resp api.HeartbeatResponse
	var err error
	if r.cfg.ChecksOnly {
		// No heartbeat: only whether the registry still has it.
		var in api.Instance
		in, err = r.client.instanceAs(hctx, st.InstanceID, token)
		resp.Status = in.Status
	} else {
		resp, err = r.client.Heartbeat(hctx, st.InstanceID, token)
	}
	switch {
	case err == nil:
		if r.hbFailures > 0 {
			r.log.Info("heartbeats accepted again", "instance_id", st.InstanceID, "failed", r.hbFailures)
			r.hbFailures = 0
		}
		r.setState(func(s *State) { s.Registered, s.Status, s.LastError = true, resp.Status, nil })
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrForbidden):
		// The registry forgot the instance (expired, replaced, restored
		// from an older state): register again at once.
		r.hbFailures = 0
		r.setState(func(s *State) { s.Registered, s.Status, s.LastError = false, "", err })
		return nil
	case ctx.Err() != nil:
		return nil
	default:
		// Registry down or between leaders: keep the registration and
		// retry soon. The first failure of a run is a warning, and then
		// one a minute, so that an outage does not flood the log.
		r.hbFailures++
		r.setState(func(s *State) { s.LastError = err })
		if r.hbFailures == 1 || time.Since(r.hbWarned) >= time.Minute {
			r.hbWarned = time.Now()
			r.log.Warn("heartbeat failed; will retry", "instance_id", st.InstanceID, "failed", r.hbFailures, "err", err)
		} else {
			r.log.Debug("heartbeat failed; will retry", "instance_id", st.InstanceID, "failed", r.hbFailures, "err", err)
		}
		return err
	}
}

// checksOnlyPoll is how often a checks-only registration asks whether
// the registry still holds it, in nanoseconds (atomic: tests change it
// while Registrations of earlier tests may still run).
var checksOnlyPoll atomic.Int64

func init() { checksOnlyPoll.Store(int64(10 * time.Second)) }

// beatEvery is the time between two heartbeats (TTL/3), or between two
// looks at a check-only instance.
func (r *Registration) beatEvery() time.Duration {
	if r.cfg.ChecksOnly {
		return time.Duration(checksOnlyPoll.Load())
	}
	return r.cfg.TTL / 3
}

// drainWait waits out DrainDelay, heartbeating meanwhile: a draining
// instance is still alive, and one that stopped heartbeating would turn
// critical (and, when a fleet shuts down together, look like a network
// split) before it deregisters.
func (r *Registration) drainWait(id, token string) {
	end := time.Now().Add(r.cfg.DrainDelay)
	for {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		if r.cfg.ChecksOnly {
			time.Sleep(left)
			return
		}
		time.Sleep(min(left, r.cfg.TTL/3))
		if time.Until(end) <= 0 {
			return
		}
		hctx, cancel := context.WithTimeout(context.Background(), r.cfg.TTL/3)
		_, _ = r.client.Heartbeat(hctx, id, token)
		cancel()
	}
}

// shutdown drains and deregisters with a bounded time.
func (r *Registration) shutdown() error {
	st := r.State()
	r.mu.Lock()
	token, orphans := r.token, r.orphans
	r.orphans = nil
	r.mu.Unlock()
	for _, o := range orphans {
		// Shut down while registrations were being answered: the
		// registry may hold such an instance although this process never
		// saw its 201. Remove it rather than leave it to expire.
		octx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := r.client.Deregister(octx, o.id, o.token); err == nil {
			r.log.Info("deregistered an instance whose registration answer was lost", "instance_id", o.id)
		}
		cancel()
	}
	if st.InstanceID == "" || !st.Registered && len(orphans) > 0 {
		return nil
	}
	if r.cfg.DrainDelay >= 0 && st.Registered {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := r.client.Drain(dctx, st.InstanceID, token)
		cancel()
		if err == nil {
			r.log.Info("draining before deregistration", "instance_id", st.InstanceID, "delay", r.cfg.DrainDelay)
			r.drainWait(st.InstanceID, token)
		}
	}
	// Its own deadline: a slow drain must not leave none for this.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.client.Deregister(ctx, st.InstanceID, token)
	// 404: the instance expired or was removed. 403: its ID now belongs to
	// a registration that replaced it, whose token this one is not.
	// Either way it is no longer this process's to remove.
	gone := errors.Is(err, ErrNotFound) || errors.Is(err, ErrForbidden)
	rawErr := err
	if gone {
		err = nil
	}
	r.setState(func(s *State) { s.Registered, s.Status, s.LastError = false, "", err })
	switch {
	case err != nil:
		r.log.Warn("deregistration failed; the instance will expire after its TTL", "instance_id", st.InstanceID, "err", err)
		return errorf("%w", err)
	case gone:
		// The registry's answer says why (an eviction names its end).
		r.log.Info("the instance had already left muster (expired, removed, evicted or replaced)", "instance_id", st.InstanceID,
			"answer", rawErr.Error())
	default:
		r.log.Info("deregistered from muster", "instance_id", st.InstanceID)
	}
	return nil
}
