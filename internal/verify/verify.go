package verify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/redact"
)

// DefaultAllow lists the networks callbacks may reach by default: loopback
// and private ranges. Link-local (169.254.0.0/16, fe80::/10) is absent,
// and the cloud metadata addresses inside these ranges (fd00:ec2::254 is
// in fc00::/7) are refused whatever the allowlist (metadata.go).
var defaultAllow = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}

// DefaultAllow returns the default callback allowlist.
func DefaultAllow() []netip.Prefix {
	out := make([]netip.Prefix, len(defaultAllow))
	for i, s := range defaultAllow {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Config configures a Verifier.
type Config struct {
	// Timeout bounds the whole callback: dial, request and answer.
	Timeout time.Duration
	// MaxBody caps the bytes read from the answer.
	MaxBody int64
	// Allow lists the networks a callback may connect to. The cloud
	// metadata addresses (metadata.go) are refused even inside it.
	Allow []netip.Prefix
	// Roots, when set, returns the CA bundle an https callback's server
	// certificate must chain to (the registry's --verify-ca, kept
	// current); nil trusts the system's roots. It is called for each
	// https callback, so it must be cheap; a new pool (another pointer)
	// is taken from the next callback on.
	Roots func() *x509.CertPool
	// Observe, when set, is told of each callback (Call) once it ends:
	// its time and its result, "ok", the verification reason it failed
	// for, or "not_allowed". It must be cheap and safe for concurrent
	// use (metrics).
	Observe func(d time.Duration, result string)
}

// DefaultConfig returns a 2 s timeout, a 64 KiB answer cap and DefaultAllow.
func DefaultConfig() Config {
	return Config{Timeout: 2 * time.Second, MaxBody: 64 << 10, Allow: DefaultAllow()}
}

// Validate reports a configuration error.
func (c Config) Validate() error {
	if c.Timeout <= 0 {
		return errors.New("verify: timeout must be positive")
	}
	if c.MaxBody <= 0 {
		return errors.New("verify: max body must be positive")
	}
	if len(c.Allow) == 0 {
		return errors.New("verify: allowlist is empty")
	}
	return nil
}

// ParseAllow parses a comma-separated list of CIDR prefixes or addresses.
func ParseAllow(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("verify: allow %q: not a CIDR prefix or address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Error is a failed verification. Reason is one of the api.Reason* codes.
type Error struct {
	Reason string
	Msg    string
	// Detail says more (the network error, the status answered) for the
	// registry's own log. It is not in Error(): an enrolment key holder
	// must not be able to map the allowlisted networks through it.
	Detail string
}

func (e *Error) Error() string { return "verification failed: " + e.Reason + ": " + e.Msg }

// ErrNotAllowed means the advertised address is outside the allowlist.
var ErrNotAllowed = errors.New("verify: address not in the callback allowlist")

// Target is where a callback goes.
type Target struct {
	Scheme  string
	Address string
	Port    int
	Path    string
	// DialIP, when valid, is the one address the call connects to (the
	// address Resolve found to stand for Address), whatever Address
	// resolves to by then: the registry records and probes that address,
	// so that is the one the callback must prove. Address still names the
	// host in the URL (the Host header, and the name TLS checks).
	DialIP netip.Addr
	// AnyCertificate accepts whatever certificate an https callback's
	// server presents, for an enrolment key whose holder asked for it
	// (callback_tls "any": instances with self-signed certificates). The
	// proof still binds the answer to the key; what is lost is the check
	// that the server is the one its certificate names.
	AnyCertificate bool
}

// dialIPKey carries Target.DialIP to the dialer.
type dialIPKey struct{}

// maxHeaderBytes caps the bytes of an answer's status line and headers.
const maxHeaderBytes = 16 << 10

// URL returns the callback URL.
func (t Target) URL() string {
	return t.Scheme + "://" + net.JoinHostPort(t.Address, strconv.Itoa(t.Port)) + t.Path
}

// shown is the URL as messages show it: a part of it that looks like a
// secret (a capability path) withheld, since messages reach the log and
// the audit trail (see package redact).
func (t Target) shown() string { return redact.Text(t.URL()) }

// Verifier runs callbacks. It is safe for concurrent use.
type Verifier struct {
	cfg Config
	// dialer connects under the guard (control); client, over it, makes
	// the callbacks that cannot use a kept connection (HTTPS, no pinned
	// address), one connection each.
	dialer *net.Dialer
	client atomic.Pointer[rootedClient]
	// anyCert is the client of the https callbacks that accept any
	// certificate (Target.AnyCertificate).
	anyCert *http.Client
	// kept holds connections between plain-HTTP callbacks to one pinned
	// address and port (conn.go).
	kept *connPool
	// metadata is the set of metadataAddrs; never changed after New.
	metadata map[netip.Addr]struct{}
}

// New returns a verifier.
func New(cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, metadata: metadataSet(), kept: newConnPool()}
	v.dialer = &net.Dialer{Timeout: cfg.Timeout, Control: v.control}
	var roots *x509.CertPool
	if cfg.Roots != nil {
		roots = cfg.Roots()
	}
	v.client.Store(v.newClient(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))
	// The key's holder asked for it (Target.AnyCertificate); the proof
	// binds the answer to the key.
	v.anyCert = v.newClient(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}).client //nolint:gosec
	return v, nil
}

// rootedClient is the HTTP client of the callbacks that cannot use a
// kept connection, and the CA bundle its transport trusts.
type rootedClient struct {
	roots  *x509.CertPool
	client *http.Client
}

// newClient returns the callbacks' HTTP client, whose https callbacks
// use tlsCfg (its RootCAs nil: the system's roots): one connection each,
// through the guarded dialer, no redirects, no proxy, bounded headers
// and time.
func (v *Verifier) newClient(tlsCfg *tls.Config) *rootedClient {
	cfg := v.cfg
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if ip, ok := ctx.Value(dialIPKey{}).(netip.Addr); ok {
				_, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				addr = net.JoinHostPort(ip.String(), port)
			}
			return v.dialer.DialContext(ctx, network, addr)
		},
		DisableKeepAlives:      true,
		TLSClientConfig:        tlsCfg,
		TLSHandshakeTimeout:    cfg.Timeout,
		MaxResponseHeaderBytes: maxHeaderBytes,
		ResponseHeaderTimeout:  cfg.Timeout,
	}
	return &rootedClient{roots: tlsCfg.RootCAs, client: &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// httpClient returns the client for a callback to t: the one in use,
// made again first when t is https and the CA bundle changed.
func (v *Verifier) httpClient(t Target) *http.Client {
	if t.Scheme == "https" && t.AnyCertificate {
		return v.anyCert
	}
	c := v.client.Load()
	if t.Scheme == "https" && v.cfg.Roots != nil {
		if roots := v.cfg.Roots(); roots != c.roots {
			c = v.newClient(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
			v.client.Store(c)
		}
	}
	return c.client
}

// Roots returns the CA bundle an https callback's certificate must chain
// to (Config.Roots), or nil for the system's roots. The registry's
// active checks of https instances trust the same bundle.
func (v *Verifier) Roots() *x509.CertPool {
	if v.cfg.Roots == nil {
		return nil
	}
	return v.cfg.Roots()
}

// WithTimeout returns a verifier like v (the same allowlist and answer
// cap) whose callbacks may take up to d: dial, request and answer. The
// tutorial protocol's background verification, which waits as long as the
// tutorial's registry did, uses it. It fails only if d is not positive.
func (v *Verifier) WithTimeout(d time.Duration) (*Verifier, error) {
	cfg := v.cfg
	cfg.Timeout = d
	return New(cfg)
}

// Allowed reports whether a callback may connect to ip: it is inside the
// allowlist and is not a cloud metadata address in any spelling
// (IPv4-mapped, IPv4-compatible, NAT64, 6to4), nor an unspecified,
// multicast or broadcast address, whatever the allowlist.
func (v *Verifier) Allowed(ip netip.Addr) bool { return v.check(ip, "") == nil }

// check returns nil if a callback may connect to ip, or an error wrapping
// ErrNotAllowed. what names the address in the error: ip itself, or the
// host name that resolved to it.
func (v *Verifier) check(ip netip.Addr, what string) error {
	if v.isMetadata(ip) {
		return fmt.Errorf("%w: %s is a cloud metadata address, refused whatever the allowlist", ErrNotAllowed, what)
	}
	u := ip.Unmap()
	if u.IsUnspecified() || u.IsMulticast() || u == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		// 0.0.0.0 and :: connect to this host; multicast and broadcast
		// are no one host. Refused whatever the allowlist (0.0.0.0/0
		// holds them).
		return fmt.Errorf("%w: %s is not a unicast address of another host", ErrNotAllowed, what)
	}
	for _, p := range v.cfg.Allow {
		if p.Contains(u) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrNotAllowed, what)
}

// control runs just before each connect, on the resolved address.
func (v *Verifier) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrNotAllowed, address)
	}
	return v.check(ap.Addr(), ap.Addr().String())
}

// CheckAddress resolves host and reports ErrNotAllowed unless every address
// it resolves to is allowed (see Allowed). It lets a registration be
// refused before any callback; the dial-time check still guards the
// connection.
func (v *Verifier) CheckAddress(ctx context.Context, host string) error {
	_, err := v.Resolve(ctx, host)
	return err
}

// Resolve checks host as CheckAddress does and returns the address that
// stands for the host: the lowest of the addresses it resolves to
// (IPv4-mapped ones unmapped), or the address itself. Every spelling of
// one host (127.0.0.1, localhost, a wildcard DNS name) has the same one,
// so limits per address can count hosts rather than spellings.
func (v *Verifier) Resolve(ctx context.Context, host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().WithZone(""), v.check(ip, ip.String())
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.Addr{}, &Error{Reason: api.ReasonUnreachable, Msg: fmt.Sprintf("cannot resolve %q", host)}
	}
	var lowest netip.Addr
	for _, ip := range ips {
		if err := v.check(ip, host+" resolves to "+ip.String()); err != nil {
			return netip.Addr{}, err
		}
		if u := ip.Unmap().WithZone(""); !lowest.IsValid() || u.Less(lowest) {
			lowest = u
		}
	}
	return lowest, nil
}

// Proof returns base64(HMAC-SHA256(secret, challenge)), the answer an
// instance must give.
func Proof(secret, challenge string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(challenge))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Verify POSTs req to t and checks the answer's proof against keySecret. It
// returns nil, a *Error with the reason, or an error wrapping ErrNotAllowed.
func (v *Verifier) Verify(ctx context.Context, t Target, req api.VerifyRequest, keySecret string) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("verify: encode: %w", err)
	}
	data, err := v.Call(ctx, t, "application/json", body)
	if err != nil {
		return err
	}
	var vr api.VerifyResponse
	if err := json.Unmarshal(data, &vr); err != nil || vr.Proof == "" {
		// An answer without a proof is any service's answer, not the
		// protocol's: it is a bad response, which a caller without an
		// instance at the address cannot tell from a closed port.
		return &Error{Reason: api.ReasonBadResponse, Msg: "answer is not JSON {\"proof\": ...}"}
	}
	if vr.Nonce != "" && vr.Nonce != req.Nonce {
		return &Error{Reason: api.ReasonNonceMismatch, Msg: "answer's nonce differs from the registration's"}
	}
	want := Proof(keySecret, req.Challenge)
	if !hmac.Equal([]byte(vr.Proof), []byte(want)) {
		return &Error{Reason: api.ReasonBadProof, Msg: "proof does not match the challenge and enrolment key"}
	}
	return nil
}

// Call POSTs body to t under every guard (allowlist at dial time, no
// redirects, no proxy, deadline, answer size cap) and returns the answer of
// a 200. Failures are a *Error with the reason, or an error wrapping
// ErrNotAllowed. Verify and the tutorial-protocol registration both use it.
//
// A plain-HTTP callback to a pinned address (DialIP) may go over a
// connection kept from an earlier callback to that same address and port
// (conn.go): one listener proving its host for many instances answers
// them over a few connections. Every other callback has a connection of
// its own. Either way the request is sent once: it is sent again, on a
// new connection, only when not a byte of it left on a kept one.
func (v *Verifier) Call(ctx context.Context, t Target, contentType string, body []byte) ([]byte, error) {
	if v.cfg.Observe == nil {
		return v.call(ctx, t, contentType, body)
	}
	start := time.Now()
	data, err := v.call(ctx, t, contentType, body)
	v.cfg.Observe(time.Since(start), resultOf(err))
	return data, err
}

// resultOf names a callback's result for Config.Observe.
func resultOf(err error) string {
	var e *Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e):
		return e.Reason
	case errors.Is(err, ErrNotAllowed):
		return "not_allowed"
	default:
		return api.ReasonUnreachable
	}
}

func (v *Verifier) call(ctx context.Context, t Target, contentType string, body []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	if key, ok := keptKey(t, contentType); ok {
		return v.callKept(ctx, t, key, contentType, body)
	}
	if t.DialIP.IsValid() {
		ctx = context.WithValue(ctx, dialIPKey{}, t.DialIP)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL(), bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Reason: api.ReasonUnreachable, Msg: err.Error()}
	}
	hreq.Header.Set("Content-Type", contentType)
	hreq.Header.Set("User-Agent", userAgent)
	resp, err := v.httpClient(t).Do(hreq)
	if err != nil {
		return nil, v.failed(ctx, t, err)
	}
	defer resp.Body.Close()
	return v.answer(t, resp)
}

// userAgent is the User-Agent of every callback.
const userAgent = "muster-verify/1"

// failed turns the failure to get an answer into Call's error.
func (v *Verifier) failed(ctx context.Context, t Target, err error) error {
	if errors.Is(err, ErrNotAllowed) {
		return fmt.Errorf("%w (%s)", ErrNotAllowed, t.Address)
	}
	var (
		unknown   x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
	)
	if errors.As(err, &verifyErr) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return &Error{Reason: api.ReasonBadCertificate, Msg: fmt.Sprintf("the certificate of %s is not trusted: "+
			"it must chain to a CA the registry trusts (--verify-ca) and name the address", t.shown()), Detail: rootCause(err)}
	}
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &Error{Reason: api.ReasonTimeout, Msg: fmt.Sprintf("no answer from %s within %s", t.shown(), v.cfg.Timeout)}
	}
	return &Error{Reason: api.ReasonUnreachable, Msg: fmt.Sprintf("cannot reach %s", t.shown()), Detail: rootCause(err)}
}

// answer checks an answer's status and reads its body within the cap. It
// returns the body of a 200, read to its end.
func (v *Verifier) answer(t Target, resp *http.Response) (data []byte, err error) {
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, &Error{Reason: api.ReasonRedirect, Msg: fmt.Sprintf("%s answered with a redirect; redirects are not followed", t.shown()), Detail: resp.Status}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &Error{Reason: api.ReasonBadStatus, Msg: fmt.Sprintf("%s did not answer 200", t.shown()), Detail: resp.Status}
	}
	if n := resp.ContentLength; n >= 0 && n <= v.cfg.MaxBody {
		// The length is known and within the cap (net/http reads no byte
		// past it): one buffer of it.
		data = make([]byte, n)
		_, err = io.ReadFull(resp.Body, data)
	} else {
		data, err = io.ReadAll(io.LimitReader(resp.Body, v.cfg.MaxBody+1))
	}
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, &Error{Reason: api.ReasonTimeout, Msg: "answer not complete within " + v.cfg.Timeout.String()}
		}
		return nil, &Error{Reason: api.ReasonBadResponse, Msg: "the answer could not be read", Detail: err.Error()}
	}
	if int64(len(data)) > v.cfg.MaxBody {
		return nil, &Error{Reason: api.ReasonBadResponse, Msg: fmt.Sprintf("answer larger than %d bytes", v.cfg.MaxBody)}
	}
	return data, nil
}

// rootCause returns the innermost error's text (connection refused, a TLS
// certificate problem), without Go's wrapping of the URL and operation.
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
