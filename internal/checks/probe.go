package checks

import (
	"bufio"
	"context"
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
type prober struct {
	dialer *net.Dialer
	grpc   *http.Client // HTTP/2 over cleartext, with prior knowledge
}

func newProber(g Guard) *prober {
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
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	return &prober{
		dialer: d,
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
}

// probe runs c once against address:port (c.Port if set). ctx carries the
// probe's deadline (c.Timeout), which bounds dial, request and answer.
func (p *prober) probe(ctx context.Context, address string, port int, c Check) result {
	if c.Port != 0 {
		port = c.Port
	}
	hostport := net.JoinHostPort(address, strconv.Itoa(port))
	switch c.Type {
	case api.CheckHTTP:
		return p.httpGet(ctx, hostport, c)
	case api.CheckTCP:
		return p.tcpConnect(ctx, hostport, c)
	case api.CheckGRPC:
		return p.grpcHealth(ctx, hostport, c)
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
func (p *prober) httpGet(ctx context.Context, hostport string, c Check) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+c.Path, nil)
	if err != nil {
		return result{output: "invalid request"}
	}
	req.Header.Set("User-Agent", userAgent)
	req.Close = true
	conn, err := p.dialer.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return result{output: describe(err, c.Timeout)}
	}
	defer conn.Close()
	// The probe's deadline, and the end of Run, interrupt any read or
	// write.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	defer context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })()
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
