package checks

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/verify"
)

// Guard decides which addresses a probe may connect to. *verify.Verifier
// implements it, so probes follow the verify callback's rule: inside the
// allowlist, never a cloud metadata address. Allowed must be safe for
// concurrent use and fast: it runs before every connect.
type Guard interface {
	Allowed(ip netip.Addr) bool
}

// userAgent names the registry's probes to the instances they reach.
const userAgent = "muster-check/1"

// maxBody caps the bytes of an HTTP answer's body a probe reads. Only the
// first MaxOutput bytes reach the output; reading a little more lets a
// small answer end before the connection is closed.
const maxBody = 4 << 10

// maxAnswer caps every byte of an HTTP answer a probe reads: status line,
// headers and body.
const maxAnswer = 16<<10 + maxBody

// result is one probe's outcome.
type result struct {
	ok     bool
	output string
}

// prober speaks the three check protocols to one address at a time. It
// holds no state between probes beyond its immutable clients, and is safe
// for concurrent use.
//
// Every connection goes through dialer, whose Control refuses any address
// the guard does not allow, after DNS resolution, on every connect: a host
// name that resolves outside the allowlist is refused at dial time. No
// connection is reused (each probe dials afresh, so each is checked, and
// the registry holds no idle connection per instance), no proxy is used,
// no redirect is followed.
//
// An https instance's HTTP and gRPC checks speak TLS (tls.go) over that
// same guarded connection, verifying its certificate against roots (nil:
// no roots given, the system's), unless its Target accepts any
// certificate.
type prober struct {
	dialer *net.Dialer
	grpc   *http.Client // HTTP/2 over cleartext, with prior knowledge
	// grpcTLS makes the one connection of a gRPC check of an https
	// instance (NewClientConn, never its pool): HTTP/2 over TLS,
	// negotiated by ALPN, through dialTLS.
	grpcTLS *http.Transport
	roots   func() *x509.CertPool
}

// newProber returns a prober whose connections the guard g allows, and
// whose TLS checks trust the CA bundle roots returns (nil, or a nil
// pool: the system's roots).
func newProber(g Guard, roots func() *x509.CertPool) *prober {
	d := &net.Dialer{
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !g.Allowed(ap.Addr()) {
				return verify.ErrNotAllowed
			}
			return nil
		},
		KeepAlive: -1, // a probe's connection lives for one exchange
	}
	var h2c, h2 http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	h2.SetHTTP2(true)
	p := &prober{
		dialer: d,
		roots:  roots,
		grpc: &http.Client{
			Transport: &http.Transport{
				Proxy:                  nil,
				DialContext:            d.DialContext,
				DisableKeepAlives:      true,
				DisableCompression:     true,
				MaxResponseHeaderBytes: 8 << 10,
				Protocols:              &h2c,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	p.grpcTLS = &http.Transport{
		Proxy:                  nil,
		DialTLSContext:         p.dialTLS,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 8 << 10,
		Protocols:              &h2,
	}
	return p
}

// endpoint is where one probe goes, and how it speaks.
type endpoint struct {
	// hostport is the address and port the probe connects to.
	hostport string
	// tls is the TLS configuration of an https instance's HTTP or gRPC
	// check; nil for plain HTTP, and for every TCP check.
	tls *tls.Config
	// host is the Host header (the :authority of a gRPC call): hostport,
	// or for https the name the certificate is checked against, and the
	// port.
	host string
}

// probe runs c once against t's address and port (c.Port if set),
// speaking TLS to an https target. ctx carries the probe's deadline
// (c.Timeout), which bounds dial, handshake, request and answer.
func (p *prober) probe(ctx context.Context, t Target, c Check) result {
	port := t.Port
	if c.Port != 0 {
		port = c.Port
	}
	ps := strconv.Itoa(port)
	e := endpoint{hostport: net.JoinHostPort(t.Address, ps)}
	e.host = e.hostport
	if t.Scheme == "https" && c.Type != api.CheckTCP {
		e.tls = p.tlsConfig(t, c.Type == api.CheckGRPC)
		e.host = net.JoinHostPort(e.tls.ServerName, ps)
	}
	switch c.Type {
	case api.CheckHTTP:
		return p.httpGet(ctx, e, c)
	case api.CheckTCP:
		return p.tcpConnect(ctx, e.hostport, c)
	case api.CheckGRPC:
		return p.grpcHealth(ctx, e, c)
	}
	return result{output: "unknown check type"}
}

// httpGet GETs c.Path over a connection of its own and reads the answer
// in the probe's goroutine; any 2xx passes. A 3xx is a failure, never
// followed. The output is the status code and its text, never the body:
// what the instance's port answers is not the registry's to publish
// (lookups are unauthenticated), however the check's port and path were
// chosen.
//
// It speaks HTTP/1.1 itself (net/http writes the request and parses the
// answer) rather than through an http.Transport, which would spend two
// goroutines, their channels and buffers on a connection that serves one
// request: in BenchmarkChecks_HTTP10k this took the Monitor's user CPU
// down by about a fifth (the kernel's share of a connection is the
// same). One LimitedReader under everything read caps what the instance
// can make the registry read (the status line, headers, any 1xx answers
// and the body) at maxAnswer.
func (p *prober) httpGet(ctx context.Context, e endpoint, c Check) result {
	scheme := "http://"
	if e.tls != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+e.hostport+c.Path, nil)
	if err != nil {
		return result{output: "invalid request"}
	}
	req.Host = e.host
	req.Header.Set("User-Agent", userAgent)
	req.Close = true
	raw, err := p.dialer.DialContext(ctx, "tcp", e.hostport)
	if err != nil {
		return result{output: describe(err, c.Timeout)}
	}
	defer raw.Close()
	// The probe's deadline, and the end of Run, interrupt any read or
	// write, the TLS handshake's too.
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	defer context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })()
	conn := raw
	if e.tls != nil {
		tc := tls.Client(raw, e.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return result{output: describe(&tlsError{err}, c.Timeout)}
		}
		conn = tc
	}
	if err := req.Write(conn); err != nil {
		return result{output: describe(err, c.Timeout)}
	}
	lr := &io.LimitedReader{R: conn, N: maxAnswer}
	br := bufio.NewReader(lr)
	resp, err := http.ReadResponse(br, req)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(br, req) // 1xx answers come before the answer
	}
	if err != nil {
		switch out := describe(err, c.Timeout); {
		case lr.N == 0:
			return result{output: "HTTP answer headers too large"}
		case out == failed:
			// Connected, and something answered, but not HTTP.
			return result{output: "malformed HTTP answer"}
		default:
			return result{output: out}
		}
	}
	defer resp.Body.Close()
	code := resp.StatusCode
	head := "HTTP " + strconv.Itoa(code)
	if code >= 300 && code < 400 {
		return result{output: head + ": redirects are not followed"}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		// The answer did not end within the timeout, or the connection
		// broke: an incomplete answer is no answer.
		return result{output: head + " but " + describe(err, c.Timeout)}
	}
	_ = body // read so that the answer is whole; never shown
	out := head
	if text := http.StatusText(code); text != "" {
		out += " " + text
	}
	return result{ok: code >= 200 && code < 300, output: out}
}

// tcpConnect passes if a connection to hostport opens.
func (p *prober) tcpConnect(ctx context.Context, hostport string, c Check) result {
	conn, err := p.dialer.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return result{output: describe(err, c.Timeout)}
	}
	conn.Close()
	return result{ok: true, output: "connected"}
}
