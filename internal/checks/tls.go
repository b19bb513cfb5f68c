package checks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// The HTTP and gRPC checks of an https instance speak TLS over the
// guarded connection, judging the instance's certificate as its
// registration callback did: it must chain to the registry's CA bundle
// (the callback's roots: --verify-ca, else the system's) and be valid for
// the instance's advertised address, a host name or an IP address; or,
// for an instance whose enrolment key accepts any certificate
// (callback_tls any, Target.AnyCertificate), it is not judged at all.
// TLS 1.2 is the least version spoken. A certificate that fails makes
// the probe fail, with an output that names why ("tls: certificate
// signed by unknown authority") and nothing of the certificate itself.

// tlsConfig returns the TLS settings of one probe of the https target t;
// h2 offers HTTP/2 (ALPN "h2", for gRPC) rather than HTTP/1.1.
func (p *prober) tlsConfig(t Target, h2 bool) *tls.Config {
	name := t.ServerName
	if name == "" {
		name = t.Address
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: name, NextProtos: []string{"http/1.1"}}
	if h2 {
		cfg.NextProtos = []string{"h2"}
	}
	if t.AnyCertificate {
		// The key's holder asked for it, as for the callback: its
		// instances' certificates are self-signed.
		cfg.InsecureSkipVerify = true //nolint:gosec
	} else if p.roots != nil {
		cfg.RootCAs = p.roots() // nil: the system's roots
	}
	return cfg
}

// tlsError is a failed TLS handshake with an instance.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "tls: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// errNoH2 means an https instance's TLS handshake did not choose HTTP/2,
// which gRPC needs.
var errNoH2 = errors.New("checks: the instance did not negotiate HTTP/2 (ALPN h2)")

// tlsConfigKey carries a gRPC probe's TLS settings to dialTLS.
type tlsConfigKey struct{}

// dialTLS is the TLS dialer of grpcTLS: the guarded connection, then the
// handshake with the settings ctx carries, which must choose "h2".
func (p *prober) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	cfg, ok := ctx.Value(tlsConfigKey{}).(*tls.Config)
	if !ok {
		return nil, errors.New("checks: no TLS settings for a gRPC probe")
	}
	raw, err := p.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, &tlsError{err}
	}
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		tc.Close()
		return nil, errNoH2
	}
	return tc, nil
}

// grpcOverTLS sends req, a gRPC call, on a connection of its own to the
// https endpoint e; the connection closes with the response's body.
func (p *prober) grpcOverTLS(ctx context.Context, e endpoint, req *http.Request) (*http.Response, error) {
	cc, err := p.grpcTLS.NewClientConn(context.WithValue(ctx, tlsConfigKey{}, e.tls), "https", e.hostport)
	if err != nil {
		return nil, err
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		cc.Close()
		return nil, err
	}
	resp.Body = &closeConn{ReadCloser: resp.Body, cc: cc}
	return resp, nil
}

// closeConn is a response body that closes its connection with it.
type closeConn struct {
	io.ReadCloser
	cc *http.ClientConn
}

func (c *closeConn) Close() error {
	err := c.ReadCloser.Close()
	c.cc.Close()
	return err
}

// describeTLS is the output of a failed handshake: why the certificate
// was refused, or that the handshake failed, in words of the registry's
// own; never the certificate's names, nor the instance's alert text.
func describeTLS(err error, timeout time.Duration) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		header   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown):
		return "tls: certificate signed by unknown authority"
	case errors.As(err, &hostname):
		return "tls: certificate is not valid for the instance's address"
	case errors.As(err, &invalid):
		switch invalid.Reason {
		case x509.Expired:
			return "tls: certificate has expired or is not yet valid"
		case x509.IncompatibleUsage:
			return "tls: certificate is not for a server"
		}
		return "tls: certificate is not valid"
	case errors.As(err, &header):
		return "tls: handshake failed: not a TLS server?"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return "tls: handshake refused by the instance"
	}
	if out := describe(errors.Unwrap(err), timeout); out != failed {
		return out // timed out, reset, closed: as for any connection
	}
	return "tls: handshake failed"
}
