package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/api"
)

// Config configures a Client.
type Config struct {
	// Addr is the registry's base URL, or several servers' of one
	// cluster, comma-separated. When empty, New takes $MUSTER_ADDR, and
	// when that is empty too, DefaultAddr: the same order as
	// ServiceConfig.Registry.
	//
	// With several, the client uses one at a time: the first until it
	// fails, then the next, and so on round the list. A server fails a
	// call when it cannot be reached, does not answer a probe in time
	// (below), or answers 503 (no leader, a follower cut off from its
	// cluster, shutting down); the call then goes to the next server at
	// once, each server tried at most once per call. A request that may
	// have reached a server (its connection broke, or it timed out, after
	// it was sent) moves on only if it is safe to repeat: a GET, PUT or
	// DELETE, never a POST.
	//
	// Until a server has answered, and after one failed, the client
	// first probes the server it is about to use (GET /livez, within
	// ProbeTimeout) and sends the request only once the probe is
	// answered; a server that does not answer the probe is passed over
	// without the request having been sent, so that a hung server (one
	// whose kernel accepts connections while the process answers
	// nothing) costs a call ProbeTimeout, not the HTTP client's timeout,
	// and a POST moves on from it too. The request itself has no other
	// deadline than the HTTP client's and the caller's: a blocking query
	// or an event stream may take long.
	Addr string
	// Token is sent as a bearer token (the admin token, for key management).
	Token string
	// HTTPClient is used for requests; default has a Timeout, and TLS
	// for https:// registries.
	HTTPClient *http.Client
	// Timeout bounds each request of the default HTTPClient; default
	// 30 s. Unused when HTTPClient is set.
	Timeout time.Duration
	// TLS configures the default HTTPClient's connections to https://
	// registries; when nil, it is read from $MUSTER_CACERT,
	// $MUSTER_CLIENT_CERT and $MUSTER_CLIENT_KEY (see TLSFromEnv), and
	// without them the system's roots are trusted and no client
	// certificate is sent. Unused when HTTPClient is set.
	TLS *tls.Config
	// ProbeTimeout bounds the probe of a server (see Addr) when several
	// are listed; default DefaultProbeTimeout. Negative: no probe. With a
	// single server there is none: there is nowhere else to go.
	ProbeTimeout time.Duration
	// NoBatchHeartbeats makes Heartbeat send one request per heartbeat
	// (PUT /v1/instances/{id}/heartbeat) instead of gathering concurrent
	// callers' heartbeats into batches (POST /v1/heartbeats).
	NoBatchHeartbeats bool
}

// DefaultProbeTimeout is how long a client of several servers waits for
// a server to answer its probe (GET /livez) before it passes over it.
// A server answers /livez at once, without touching Raft or the disk.
const DefaultProbeTimeout = time.Second

// DefaultAddr is where a registry listens unless told otherwise.
const DefaultAddr = "http://127.0.0.1:9000"

// Client talks to a registry's HTTP API. It is safe for concurrent use.
type Client struct {
	bases []*url.URL
	cur   atomic.Uint32 // the index in bases of the server in use
	// answered is 1 + the index in bases of the server that answered
	// the client last, while no call has failed on it since; 0 if none.
	// A call to it is sent without a probe.
	answered atomic.Uint32
	probe    time.Duration // 0: no probe
	token    string
	hc       *http.Client
	beats    *beater // nil with Config.NoBatchHeartbeats
}

// New returns a client of the registry at cfg.Addr, $MUSTER_ADDR or
// DefaultAddr, the first that is set.
func New(cfg Config) (*Client, error) {
	return newClient(cfg, os.Getenv)
}

func newClient(cfg Config, getenv func(string) string) (*Client, error) {
	from := ""
	if cfg.Addr == "" {
		cfg.Addr, from = getenv("MUSTER_ADDR"), " (from $MUSTER_ADDR)"
	}
	if cfg.Addr == "" {
		cfg.Addr, from = DefaultAddr, ""
	}
	var bases []*url.URL
	for _, a := range strings.Split(cfg.Addr, ",") {
		if a = strings.TrimSpace(a); a == "" && strings.Contains(cfg.Addr, ",") {
			continue // a trailing or doubled comma
		}
		u, err := url.Parse(strings.TrimRight(a, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errorf("registry address %q%s must be http(s)://host:port, or several separated by commas", a, from)
		}
		bases = append(bases, u)
	}
	if len(bases) == 0 {
		return nil, errorf("registry address %q%s names no server", cfg.Addr, from)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		var err error
		if hc, err = httpClient(cmp.Or(cfg.Timeout, 30*time.Second), cfg.TLS, getenv); err != nil {
			return nil, err
		}
	}
	c := &Client{bases: bases, token: cfg.Token, hc: hc}
	if !cfg.NoBatchHeartbeats {
		c.beats = &beater{c: c}
	}
	if len(bases) > 1 && cfg.ProbeTimeout >= 0 {
		c.probe = cmp.Or(cfg.ProbeTimeout, DefaultProbeTimeout)
	}
	return c, nil
}

// server returns the server in use and its index.
func (c *Client) server() (*url.URL, uint32) {
	i := c.cur.Load()
	return c.bases[i], i
}

// failed moves the client past server i, unless another call already
// did: concurrent failures of one server move it once.
func (c *Client) failed(i uint32) {
	c.answered.CompareAndSwap(i+1, 0)
	if len(c.bases) > 1 {
		c.cur.CompareAndSwap(i, (i+1)%uint32(len(c.bases)))
	}
}

// worked records that server i answered: calls to it need no probe.
func (c *Client) worked(i uint32) {
	if c.probe > 0 {
		c.answered.Store(i + 1)
	}
}

// probeServer asks server i for /livez within c.probe, unless there is
// no probe or server i answered last, and returns why it is not to be
// used: it cannot be reached, or did not answer in time. Any answer, of
// any status, will do: the server answers HTTP.
func (c *Client) probeServer(ctx context.Context, base *url.URL, i uint32) error {
	if c.probe <= 0 || c.answered.Load() == i+1 {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, c.probe)
	defer cancel()
	u := *base
	u.Path += "/livez"
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil && pctx.Err() != nil {
			return fmt.Errorf("no answer to GET /livez within %s", c.probe)
		}
		return plainTransportError(err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return nil
}

// pick returns the server to open a stream on: the server in use, if it
// answered last or answers a probe, or else the next that does. Servers
// that do not are passed over (failed); when none does, the error says
// how each failed.
func (c *Client) pick(ctx context.Context, op string) (*url.URL, uint32, error) {
	var reasons []string
	var err error
	for range c.bases {
		base, i := c.server()
		perr := c.probeServer(ctx, base, i)
		if perr == nil {
			return base, i, nil
		}
		if ctx.Err() != nil {
			return nil, 0, errorf("%s: %w: %w", op, ErrUnavailable, ctx.Err())
		}
		reasons = append(reasons, base.String()+": "+perr.Error())
		err = errorf("%s: %w: %s: %w", op, ErrUnavailable, base, perr)
		c.failed(i)
	}
	if len(reasons) > 1 {
		err = &allFailedError{op: op, reasons: reasons, last: err}
	}
	return nil, 0, err
}

// plainTransportError is err without the method and URL an *url.Error
// adds, for a list that names each server already.
func plainTransportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// moveOn reports whether a call that failed on one server with err (a
// transport error) or status should go on to the next: the server could
// not be reached, or answered 503, or the request is safe to repeat.
func moveOn(method string, err error, status int) bool {
	if err == nil {
		return status == http.StatusServiceUnavailable
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return method != http.MethodPost
}

// do sends a request and decodes a JSON answer into out (when non-nil);
// an out that is an io.Writer gets a successful answer's body as is.
// With several servers, a failure moves on to the next (see Config.Addr).
func (c *Client) do(ctx context.Context, op, method, path string, query url.Values, token string, in, out any) (http.Header, error) {
	var payload []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, errorf("%s: %w", op, err)
		}
		payload = b
	}
	if token == "" {
		token = c.token
	}
	return c.call(ctx, op, method, func(base *url.URL) (http.Header, int, error) {
		return c.doOn(ctx, base, op, method, path, query, token, payload, in != nil, out)
	})
}

// call sends a request with send to the server in use, and with several
// servers moves on to the next when it fails (see Config.Addr), probing
// each first unless it answered last. When every server failed, the
// error says how each did.
func (c *Client) call(ctx context.Context, op, method string, send func(base *url.URL) (http.Header, int, error)) (http.Header, error) {
	var (
		hdr     http.Header
		err     error
		reasons []string // how each server failed, in the order tried
	)
	for range c.bases {
		base, i := c.server()
		if perr := c.probeServer(ctx, base, i); perr != nil {
			if ctx.Err() != nil {
				return nil, errorf("%s: %w: %w", op, ErrUnavailable, ctx.Err())
			}
			reasons = append(reasons, base.String()+": "+perr.Error())
			err = errorf("%s: %w: %s: %w", op, ErrUnavailable, base, perr)
			c.failed(i)
			continue
		}
		var status int
		hdr, status, err = send(base)
		var te *transportError
		transport := errors.As(err, &te)
		if err == nil || !transport && status != http.StatusServiceUnavailable {
			c.worked(i) // it answered
		}
		if err == nil || ctx.Err() != nil || len(c.bases) == 1 {
			return hdr, err
		}
		retryAs := method
		if op == opHeartbeats {
			retryAs = http.MethodPut // a batch of heartbeats is safe to repeat
		}
		var next bool
		if transport {
			next = moveOn(retryAs, te.err, 0)
		} else {
			next = moveOn(retryAs, nil, status)
		}
		if !next {
			return hdr, err
		}
		reasons = append(reasons, base.String()+": "+serverReason(err))
		c.failed(i)
	}
	if len(reasons) > 1 {
		err = &allFailedError{op: op, reasons: reasons, last: err}
	}
	return hdr, err
}

// serverReason is how a call failed on one server, for allFailedError.
func serverReason(err error) string {
	var te *transportError
	if errors.As(err, &te) {
		return plainTransportError(te.err).Error()
	}
	var e *Error
	if errors.As(err, &e) {
		return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	}
	return strings.TrimPrefix(err.Error(), "client: ")
}

// allFailedError is the error of a call that every server of several
// failed: it says how each did, and wraps ErrUnavailable and the last
// server's error (an *Error with its RetryAfter, say).
type allFailedError struct {
	op      string
	reasons []string
	last    error
}

func (e *allFailedError) Error() string {
	return "client: " + e.op + ": registry unavailable: every server failed: " + strings.Join(e.reasons, "; ")
}

func (e *allFailedError) Unwrap() []error { return []error{ErrUnavailable, e.last} }

// transportError marks a call that got no answer.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// doOn sends one request to base, and returns the answer's headers and
// status with do's error.
func (c *Client) doOn(ctx context.Context, base *url.URL, op, method, path string, query url.Values, token string, payload []byte, hasBody bool, out any) (http.Header, int, error) {
	u := *base
	u.Path += path
	u.RawQuery = query.Encode()
	var body io.Reader
	if hasBody {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, 0, errorf("%s: %w", op, err)
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, errorf("%s: %w: %w", op, ErrUnavailable, &transportError{err})
	}
	defer resp.Body.Close()
	if w, ok := out.(io.Writer); ok && resp.StatusCode < 300 {
		// A raw answer (a snapshot), copied as it comes, of any size.
		if _, err := io.Copy(w, resp.Body); err != nil {
			return resp.Header, resp.StatusCode, errorf("%s: %w: read answer: %w", op, ErrUnavailable, err)
		}
		return resp.Header, resp.StatusCode, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, resp.StatusCode, errorf("%s: %w: read answer: %w", op, ErrUnavailable, err)
	}
	if resp.StatusCode >= 300 {
		return resp.Header, resp.StatusCode, answerError(op, resp, data)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.Header, resp.StatusCode, errorf("%s: %w: decode answer: %w", op, ErrUnavailable, err)
		}
	}
	return resp.Header, resp.StatusCode, nil
}

// answerError is the error of an answer with a status of 300 or more,
// whose body (or its start) is data.
func answerError(op string, resp *http.Response, data []byte) *Error {
	var eb api.ErrorBody
	if json.Unmarshal(data, &eb) != nil || eb.Error.Code == "" {
		eb.Error = api.ErrorDetail{Code: codeForStatus(resp.StatusCode), Message: strings.TrimSpace(string(data))}
	}
	return &Error{Op: op, Status: resp.StatusCode, ErrorDetail: eb.Error,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
}

func codeForStatus(s int) string {
	switch {
	case s == http.StatusNotFound:
		return api.CodeNotFound
	case s == http.StatusUnauthorized:
		return api.CodeUnauthorized
	case s == http.StatusForbidden:
		return api.CodeForbidden
	case s == http.StatusTooManyRequests:
		return api.CodeRateLimited
	case s == http.StatusRequestTimeout, s >= 500:
		return api.CodeUnavailable
	default:
		return api.CodeInvalidArgument
	}
}

// CreateKey creates an enrolment key for the given service name patterns.
// The answer holds the key's secret, shown only this once. Needs the admin
// token.
func (c *Client) CreateKey(ctx context.Context, services []string, description string) (api.Key, error) {
	return c.NewKey(ctx, api.CreateKeyRequest{Services: services, Description: description})
}

// NewKey creates an enrolment key from a full request (with its
// MaxInstances, say). The answer holds the key's secret, shown only this
// once. Needs the admin token.
func (c *Client) NewKey(ctx context.Context, req api.CreateKeyRequest) (api.Key, error) {
	var k api.Key
	_, err := c.do(ctx, "create key", http.MethodPost, "/v1/keys", nil, "", req, &k)
	return k, err
}

// Keys lists enrolment keys, without secrets. Needs the admin token.
func (c *Client) Keys(ctx context.Context) ([]api.Key, error) {
	var out api.KeysResponse
	_, err := c.do(ctx, "list keys", http.MethodGet, "/v1/keys", nil, "", nil, &out)
	return out.Keys, err
}

// RevokeKey revokes an enrolment key. Needs the admin token.
func (c *Client) RevokeKey(ctx context.Context, id string) error {
	_, err := c.do(ctx, "revoke key", http.MethodDelete, "/v1/keys/"+url.PathEscape(id), nil, "", nil, nil)
	return err
}

// CreateToken creates a token of any role (register, read, operator or
// admin). The answer holds the token's secret, shown only this once.
// Needs the admin token or a token of the admin role.
func (c *Client) CreateToken(ctx context.Context, req api.CreateTokenRequest) (api.Token, error) {
	var t api.Token
	_, err := c.do(ctx, "create token", http.MethodPost, "/v1/tokens", nil, "", req, &t)
	return t, err
}

// Tokens lists the tokens of every role, enrolment keys among them,
// without secrets. Needs an admin credential.
func (c *Client) Tokens(ctx context.Context) ([]api.Token, error) {
	var out api.TokensResponse
	_, err := c.do(ctx, "list tokens", http.MethodGet, "/v1/tokens", nil, "", nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes a token of any role. Needs an admin credential.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.do(ctx, "revoke token", http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, "", nil, nil)
	return err
}

// Services lists services with instance counts by status.
func (c *Client) Services(ctx context.Context) (api.ServicesResponse, error) {
	var out api.ServicesResponse
	_, err := c.do(ctx, "list services", http.MethodGet, "/v1/services", nil, "", nil, &out)
	return out, err
}

// LookupOption refines a lookup.
type LookupOption func(url.Values)

// WithTag keeps instances carrying tag; repeat for several (all must match).
func WithTag(tag string) LookupOption { return func(q url.Values) { q.Add("tag", tag) } }

// WithMeta keeps instances whose meta[key] is value; repeatable.
func WithMeta(key, value string) LookupOption {
	return func(q url.Values) { q.Add("meta", key+":"+value) }
}

// WithStatus asks for instances of a status ("passing", "critical",
// "draining" or "any") instead of passing ones.
func WithStatus(status string) LookupOption { return func(q url.Values) { q.Set("status", status) } }

// WithConsistent makes a lookup on a cluster's follower go through the
// leader (a read index): it sees every write acknowledged before it
// began. Not with WithStale.
func WithConsistent() LookupOption {
	return func(q url.Values) { q.Set(api.QueryConsistent, "") }
}

// WithStale lets any server answer from its own replica, however far
// behind the leader it is (a follower without a leader still answers).
// Not with WithConsistent.
func WithStale() LookupOption { return func(q url.Values) { q.Set(api.QueryStale, "") } }

// Lookup asks the registry for a service's instances (passing ones unless
// WithStatus says otherwise), with their freshness. It does not cache; see
// Resolver for a cache with a staleness policy.
func (c *Client) Lookup(ctx context.Context, service string, opts ...LookupOption) (Result, error) {
	q := url.Values{}
	for _, o := range opts {
		o(q)
	}
	var out api.LookupResponse
	h, err := c.do(ctx, "lookup", http.MethodGet, "/v1/services/"+url.PathEscape(service), q, "", nil, &out)
	if err != nil {
		return Result{}, err
	}
	if out.Index == 0 && h != nil {
		out.Index, _ = strconv.ParseUint(h.Get(api.HeaderIndex), 10, 64)
	}
	return newResult(out, time.Now()), nil
}

// Instance returns one instance.
func (c *Client) Instance(ctx context.Context, id string) (api.Instance, error) {
	return c.instanceAs(ctx, id, "")
}

// instanceAs reads one instance with token ("" is the client's own): an
// instance's session token reads that instance when reads need a token.
func (c *Client) instanceAs(ctx context.Context, id, token string) (api.Instance, error) {
	var out api.Instance
	_, err := c.do(ctx, "get instance", http.MethodGet, "/v1/instances/"+url.PathEscape(id), nil, token, nil, &out)
	return out, err
}

// Deregister removes an instance. token is its session token; empty means
// the client's own (admin) token.
func (c *Client) Deregister(ctx context.Context, id, token string) error {
	_, err := c.do(ctx, "deregister", http.MethodDelete, "/v1/instances/"+url.PathEscape(id), nil, token, nil, nil)
	return err
}

// Heartbeat renews an instance's TTL with its session token. ErrNotFound
// means the registry no longer knows the instance: register again.
//
// Heartbeats of concurrent callers travel together: one that finds the
// client's few batches in flight (maxBeatSenders) waits for the next
// batch, POST /v1/heartbeats, with the others that came meanwhile, and
// one that finds a sender free goes out at once. Each caller gets its own
// instance's answer, and the errors are those of the per-instance PUT. A
// registry too old for batches is sent one PUT per heartbeat (tried
// again in batches after legacyRetry); Config.NoBatchHeartbeats sends
// one PUT per heartbeat always.
func (c *Client) Heartbeat(ctx context.Context, id, token string) (api.HeartbeatResponse, error) {
	if c.beats == nil || c.beats.legacy() {
		return c.heartbeatAlone(ctx, id, token)
	}
	return c.beats.beat(ctx, id, token)
}

// heartbeatAlone sends one heartbeat in a request of its own: PUT
// /v1/instances/{id}/heartbeat.
func (c *Client) heartbeatAlone(ctx context.Context, id, token string) (api.HeartbeatResponse, error) {
	var out api.HeartbeatResponse
	_, err := c.do(ctx, "heartbeat", http.MethodPut, "/v1/instances/"+url.PathEscape(id)+"/heartbeat", nil, token, nil, &out)
	return out, err
}

// Register asks the registry to register an instance of service, using the
// enrolment key secret. The registry calls the instance back before it
// answers; the instance must serve the verify path (see VerifyHandler in a
// later part of this SDK, or answer it as docs/api.md describes).
func (c *Client) Register(ctx context.Context, service, keySecret string, req api.RegisterRequest) (api.RegisterResponse, error) {
	var out api.RegisterResponse
	_, err := c.do(ctx, "register", http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/instances", nil, keySecret, req, &out)
	return out, err
}

// Drain marks an instance draining: it stays registered but leaves default
// lookups. token is its session token; empty means the client's own token.
func (c *Client) Drain(ctx context.Context, id, token string) (api.HeartbeatResponse, error) {
	var out api.HeartbeatResponse
	_, err := c.do(ctx, "drain", http.MethodPut, "/v1/instances/"+url.PathEscape(id)+"/drain", nil, token, nil, &out)
	return out, err
}
