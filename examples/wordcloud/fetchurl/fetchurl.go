package fetchurl

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/examples/wordcloud/internal/reply"
)

// ServiceName is the name fetch_url registers under.
const ServiceName = "fetch_url"

// MaxRedirects is the most redirects a fetch follows, whatever the client.
const MaxRedirects = 5

// Error codes of the service's JSON errors, besides api.CodeInvalidArgument
// (400, missing or malformed url), api.CodeNotFound and
// api.CodeMethodNotAllowed.
const (
	// CodeUpstreamStatus (502) means the page's server answered a non-2xx
	// status; the message names it.
	CodeUpstreamStatus = "upstream_status"
	// CodeTooLarge (502) means the page is larger than Config.MaxBytes.
	CodeTooLarge = "upstream_too_large"
	// CodeTooManyRedirects (502) means the page redirected more than
	// MaxRedirects times.
	CodeTooManyRedirects = "upstream_redirects"
	// CodeUnreachable (502) means the page's server (or the proxy) could not
	// be reached, or the connection failed.
	CodeUnreachable = "upstream_unreachable"
	// CodeTimeout (504) means the page took longer than Config.Timeout.
	CodeTimeout = "upstream_timeout"
)

// Config configures the handler.
type Config struct {
	// Timeout bounds one fetch, from connecting to reading the last byte of
	// the body; default 10s.
	Timeout time.Duration
	// MaxBytes caps the page body; default 1 MiB.
	MaxBytes int64
	// Client fetches the pages; default NewClient(http.ProxyFromEnvironment).
	// Whatever client is given, at most MaxRedirects redirects are followed
	// (the handler uses a copy with its CheckRedirect wrapped).
	Client *http.Client
}

// DefaultConfig returns the defaults: 10s, 1 MiB, and a client that honours
// HTTP_PROXY and friends.
func DefaultConfig() Config {
	return Config{Timeout: defaultTimeout, MaxBytes: defaultMaxBytes, Client: NewClient(http.ProxyFromEnvironment)}
}

const (
	defaultTimeout  = 10 * time.Second
	defaultMaxBytes = 1 << 20
)

// Validate reports a configuration error. Zero fields are valid: Handler
// fills them from DefaultConfig.
func (c Config) Validate() error {
	if c.Timeout < 0 {
		return errors.New("fetchurl: timeout must not be negative")
	}
	if c.MaxBytes < 0 {
		return errors.New("fetchurl: max bytes must not be negative")
	}
	return nil
}

// NewClient returns an HTTP client for fetching pages through proxy (nil:
// no proxy), following at most MaxRedirects redirects.
//
// Note that http.ProxyFromEnvironment reads the environment once per process
// and never proxies requests to localhost or loopback addresses; pass
// http.ProxyURL(u) to send every request, loopback included, to u.
func NewClient(proxy func(*http.Request) (*url.URL, error)) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = proxy
	return &http.Client{Transport: tr, CheckRedirect: limitRedirects(nil)}
}

// errTooManyRedirects stops a fetch after MaxRedirects redirects.
var errTooManyRedirects = fmt.Errorf("fetchurl: stopped after %d redirects", MaxRedirects)

// limitRedirects wraps next (nil: follow) with the MaxRedirects limit.
func limitRedirects(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) > MaxRedirects {
			return errTooManyRedirects
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
}

// Handler returns the fetch_url service: GET /api/v1/fetchurl/?url=…
// (with or without the trailing slash). Zero fields of cfg take their
// defaults. It panics if cfg.Validate fails.
func Handler(cfg Config) http.Handler {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = defaultMaxBytes
	}
	if cfg.Client == nil {
		cfg.Client = NewClient(http.ProxyFromEnvironment)
	}
	hc := *cfg.Client
	hc.CheckRedirect = limitRedirects(cfg.Client.CheckRedirect)
	f := &fetcher{cfg: cfg, hc: &hc}

	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/fetchurl/{$}", f.serve)
	mux.HandleFunc("/api/v1/fetchurl", f.serve)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply.Error(w, http.StatusNotFound, api.CodeNotFound, "no such endpoint "+r.URL.Path+"; try GET /api/v1/fetchurl/?url=")
	})
	return mux
}

// fetcher serves one fetch per request; it holds no per-request state.
type fetcher struct {
	cfg Config
	hc  *http.Client
}

func (f *fetcher) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		reply.Error(w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "use GET /api/v1/fetchurl/?url=")
		return
	}
	target, err := parseTarget(r.URL.Query().Get("url"))
	if err != nil {
		reply.Error(w, http.StatusBadRequest, api.CodeInvalidArgument, err.Error())
		return
	}
	body, ferr := f.fetch(r.Context(), target)
	if ferr != nil {
		if r.Context().Err() != nil {
			return // the caller has gone; nobody reads the answer
		}
		reply.Error(w, ferr.status, ferr.code, ferr.msg)
		return
	}
	reply.JSON(w, http.StatusOK, struct {
		Data string `json:"data"`
	}{base64.StdEncoding.EncodeToString(body)})
}

// parseTarget checks that raw is an absolute http(s) URL with a host.
func parseTarget(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("the url query parameter is required, e.g. ?url=http://www.dice.com/jobs/detail/…")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url %q does not parse: %v", raw, errors.Unwrap(err))
	}
	if !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q is not an absolute http or https URL", raw)
	}
	return u, nil
}

// fetchError is a failed fetch as the service answers it.
type fetchError struct {
	status int
	code   string
	msg    string
}

// fetch gets target's body, within the timeout and the size cap.
func (f *fetcher) fetch(ctx context.Context, target *url.URL) ([]byte, *fetchError) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, &fetchError{http.StatusBadRequest, api.CodeInvalidArgument, err.Error()}
	}
	req.Header.Set("User-Agent", "muster-wordcloud-fetchurl/1")
	req.Header.Set("Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5")
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, f.transportError(ctx, target, false, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
		return nil, &fetchError{http.StatusBadGateway, CodeUpstreamStatus, fmt.Sprintf("%s answered %s", target, resp.Status)}
	}
	if resp.ContentLength > f.cfg.MaxBytes {
		return nil, f.tooLarge(target)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBytes+1))
	if err != nil {
		return nil, f.transportError(ctx, target, true, err)
	}
	if int64(len(body)) > f.cfg.MaxBytes {
		return nil, f.tooLarge(target)
	}
	return body, nil
}

func (f *fetcher) tooLarge(target *url.URL) *fetchError {
	return &fetchError{http.StatusBadGateway, CodeTooLarge, fmt.Sprintf("%s is larger than the %d-byte limit", target, f.cfg.MaxBytes)}
}

// transportError classifies a failed request or body read.
func (f *fetcher) transportError(ctx context.Context, target *url.URL, reading bool, err error) *fetchError {
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &fetchError{http.StatusGatewayTimeout, CodeTimeout, fmt.Sprintf("%s did not answer within %s", target, f.cfg.Timeout)}
	}
	if errors.Is(err, errTooManyRedirects) {
		return &fetchError{http.StatusBadGateway, CodeTooManyRedirects, fmt.Sprintf("%s redirected more than %d times", target, MaxRedirects)}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is in the message already
	}
	msg := fmt.Sprintf("cannot reach %s: %v", target, err)
	if reading {
		msg = fmt.Sprintf("reading %s failed: %v", target, err)
	}
	return &fetchError{http.StatusBadGateway, CodeUnreachable, msg}
}
