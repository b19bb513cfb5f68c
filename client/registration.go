package client

import (
	"context"
	"crypto/rand"
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
	"sync"
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
	// HTTPClient talks to the registry; default has a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives state transitions; default discards.
	Logger *slog.Logger
}

func (c *ServiceConfig) setDefaults(getenv func(string) string) {
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
		c.Scheme = api.DefaultScheme
	}
	if c.TTL == 0 {
		c.TTL = 10 * time.Second
	}
	if c.ListenAddr == "" {
		c.ListenAddr = net.JoinHostPort(c.Address, strconv.Itoa(c.Port))
	}
	if c.VerifyPath == "" {
		c.VerifyPath = api.DefaultVerifyPath
	}
	if c.DrainDelay == 0 {
		// Longer than a Resolver's default MaxAge (2 s), with room for the
		// revalidation itself.
		c.DrainDelay = 3 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
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
	if c.TTL < time.Second {
		errs = append(errs, errors.New("ttl must be at least 1s"))
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, errors.New("backoff bounds are invalid"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("client: service config: %w", err)
	}
	return nil
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
// deregisters on shutdown. The registry being down never stops it: it
// retries with capped exponential backoff and jitter.
//
// Mount VerifyHandler on the instance's HTTP server (Serve does this), then
// call Run.
type Registration struct {
	cfg    ServiceConfig
	client *Client
	log    *slog.Logger

	mu      sync.Mutex
	pending map[string]*pendingReg // by nonce
	state   State
	token   string
	orphans []orphanReg   // answered registrations whose 201 was lost
	changed chan struct{} // closed and replaced on every state change
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
	c, err := New(Config{Addr: cfg.Registry, HTTPClient: cfg.HTTPClient})
	if err != nil {
		return nil, err
	}
	return &Registration{
		cfg: cfg, client: c, log: cfg.Logger.With("service", cfg.Name),
		pending: map[string]*pendingReg{}, changed: make(chan struct{}),
	}, nil
}

// State returns the registration's current state.
func (r *Registration) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// WaitRegistered blocks until the instance is registered or ctx ends.
func (r *Registration) WaitRegistered(ctx context.Context) (State, error) {
	for {
		r.mu.Lock()
		st, ch := r.state, r.changed
		r.mu.Unlock()
		if st.Registered {
			return st, nil
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
		return fmt.Errorf("register: the registry accepted instance %s but its callback never reached this process's verify handler", resp.ID)
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
// deregistered too. Run returns after the shutdown; it never returns early
// because of the registry.
func (r *Registration) Run(ctx context.Context) error {
	attempt := 0
	for ctx.Err() == nil {
		if !r.State().Registered {
			if err := r.register(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				d := r.backoff(attempt)
				attempt++
				r.setState(func(s *State) { s.LastError = err })
				r.log.Warn("registration failed; retrying", "err", err, "retry_in", d.Round(time.Millisecond))
				sleep(ctx, d)
				continue
			}
			attempt = 0
		}
		// Heartbeat at about TTL/3, jittered by ±10%; after a failed
		// heartbeat, sooner, so that a short registry outage does not cost
		// the instance its TTL.
		next := r.cfg.TTL / 3
		next += time.Duration((mrand.Float64()*0.2 - 0.1) * float64(next))
		if attempt > 0 {
			next = min(r.backoff(attempt-1), next)
		}
		if !sleep(ctx, next) {
			break
		}
		if r.heartbeat(ctx) {
			attempt = 0
		} else {
			attempt++
		}
	}
	return r.shutdown()
}

// heartbeat sends one heartbeat and reacts to the answer. It reports
// whether the heartbeat was accepted or answered definitively.
func (r *Registration) heartbeat(ctx context.Context) bool {
	st := r.State()
	r.mu.Lock()
	token := r.token
	r.mu.Unlock()
	// A heartbeat that takes longer than TTL/3 is as good as lost: give up
	// on it and let the next one try.
	hctx, cancel := context.WithTimeout(ctx, r.cfg.TTL/3)
	defer cancel()
	resp, err := r.client.Heartbeat(hctx, st.InstanceID, token)
	switch {
	case err == nil:
		r.setState(func(s *State) { s.Registered, s.Status, s.LastError = true, resp.Status, nil })
		return true
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrForbidden):
		// The registry forgot the instance (expired, replaced, restored
		// from an older state): register again at once.
		r.setState(func(s *State) { s.Registered, s.Status, s.LastError = false, "", err })
		return true
	case ctx.Err() != nil:
		return true
	default:
		// Registry down or between leaders: keep the registration and
		// retry soon.
		r.setState(func(s *State) { s.LastError = err })
		r.log.Warn("heartbeat failed; will retry", "err", err)
		return false
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
			time.Sleep(r.cfg.DrainDelay)
		}
	}
	// Its own deadline: a slow drain must not leave none for this.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.client.Deregister(ctx, st.InstanceID, token)
	if errors.Is(err, ErrNotFound) {
		err = nil
	}
	r.setState(func(s *State) { s.Registered, s.Status, s.LastError = false, "", err })
	if err != nil {
		r.log.Warn("deregistration failed; the instance will expire after its TTL", "instance_id", st.InstanceID, "err", err)
		return fmt.Errorf("client: deregister: %w", err)
	}
	r.log.Info("deregistered from muster", "instance_id", st.InstanceID)
	return nil
}
