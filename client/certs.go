package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/musterhq/muster/api"
)

// Certificates: a verified instance asks the registry for a short-lived
// certificate naming its service (spiffe://<trust-domain>/svc/<service>),
// and services authenticate each other with them (TLSConfig for a
// server, MTLSTransport for a client). The private key is generated
// here, ECDSA P-256, and kept in memory only; the registry sees a CSR.

// ErrNoCertificate means the Registration holds no certificate yet: it
// is not registered, or its first certificate has not arrived.
var ErrNoCertificate = errors.New("client: no certificate yet")

// ErrInstanceCritical means the registry refused a certificate because
// the instance is critical; it gets one once it is passing again.
var ErrInstanceCritical = errors.New("client: the instance is critical")

// Certificate asks the registry to sign csrPEM (a PEM certificate
// request) for instance id, with its session token.
func (c *Client) Certificate(ctx context.Context, id, token string, csrPEM []byte) (api.CertificateResponse, error) {
	var out api.CertificateResponse
	_, err := c.do(ctx, "certificate", http.MethodPost, "/v1/instances/"+url.PathEscape(id)+"/certificate", nil, token,
		api.CertificateRequest{CSR: string(csrPEM)}, &out)
	return out, err
}

// CA returns the registry's CA certificates, PEM (GET /v1/ca).
func (c *Client) CA(ctx context.Context) ([]byte, error) {
	var buf bytes.Buffer
	_, err := c.do(ctx, "ca", http.MethodGet, "/v1/ca", nil, "", nil, &buf)
	return buf.Bytes(), err
}

// CAInfo returns the registry's CA certificates with their fingerprints
// (GET /v1/ca?format=json).
func (c *Client) CAInfo(ctx context.Context) (api.CAResponse, error) {
	var out api.CAResponse
	_, err := c.do(ctx, "ca", http.MethodGet, "/v1/ca", url.Values{"format": {"json"}}, "", nil, &out)
	return out, err
}

// RotateCA makes the registry create a new CA that signs from now on
// (admin token).
func (c *Client) RotateCA(ctx context.Context) (api.CARotateResponse, error) {
	var out api.CARotateResponse
	_, err := c.do(ctx, "rotate ca", http.MethodPost, "/v1/ca/rotate", nil, "", nil, &out)
	return out, err
}

// certs is a Registration's certificate, its CA bundle and when to
// renew it; every field is guarded by mu.
type certs struct {
	mu       sync.Mutex
	cert     *tls.Certificate // nil until the first arrives
	spiffeID string
	instance string    // the instance it was issued to
	renewAt  time.Time // half its life
	pool     *x509.CertPool
	// refreshed is when the bundle was last fetched on a peer's unknown
	// CA (refreshPool), to bound those fetches.
	refreshed time.Time
	changed   chan struct{} // closed and replaced when cert changes
}

// bundleRefreshEvery bounds how often a peer signed by a CA this
// Registration does not know makes it fetch the bundle again.
const bundleRefreshEvery = 5 * time.Second

// Certificate returns the Registration's current certificate, or
// ErrNoCertificate. With ServiceConfig.Certificate, Run keeps it: the
// first once registered, a new one at half its life and after every
// re-registration. Its private key never leaves this process.
func (r *Registration) Certificate() (*tls.Certificate, error) {
	r.certs.mu.Lock()
	defer r.certs.mu.Unlock()
	if r.certs.cert == nil {
		return nil, ErrNoCertificate
	}
	return r.certs.cert, nil
}

// WaitCertificate blocks until the Registration holds a certificate,
// or ctx ends.
func (r *Registration) WaitCertificate(ctx context.Context) (*tls.Certificate, error) {
	for {
		r.certs.mu.Lock()
		c, ch := r.certs.cert, r.certs.changed
		r.certs.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// RenewCertificate gets a new certificate now: a fresh key, a CSR, the
// registry's signature, and the CA bundle that comes with it. It needs
// the instance to be registered. Run calls it when
// ServiceConfig.Certificate is set.
func (r *Registration) RenewCertificate(ctx context.Context) error {
	r.mu.Lock()
	id, token := r.state.InstanceID, r.token
	registered := r.state.Registered
	r.mu.Unlock()
	if !registered || id == "" {
		return errorf("certificate: %w: the instance is not registered", ErrNoCertificate)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return errorf("certificate: generate a key: %w", err)
	}
	// The registry decides every name: the CSR asks for none.
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return errorf("certificate: make a request: %w", err)
	}
	ans, err := r.client.Certificate(ctx, id, token, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	if err != nil {
		return err
	}
	block, _ := pem.Decode([]byte(ans.Certificate))
	if block == nil {
		return errorf("certificate: %w: the answer holds no PEM certificate", ErrUnavailable)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return errorf("certificate: %w: the answer's certificate does not parse: %w", ErrUnavailable, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(ans.CA)) {
		return errorf("certificate: %w: the answer holds no CA certificate", ErrUnavailable)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return errorf("certificate: %w: the certificate does not chain to the CA bundle that came with it: %w", ErrUnavailable, err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key, Leaf: leaf}
	now := time.Now()
	r.certs.mu.Lock()
	r.certs.cert, r.certs.spiffeID, r.certs.instance, r.certs.pool = cert, ans.SPIFFEID, id, pool
	r.certs.renewAt = now.Add(leaf.NotAfter.Sub(now) / 2)
	close(r.certs.changed)
	r.certs.changed = make(chan struct{})
	r.certs.mu.Unlock()
	r.log.Info("certificate issued", "instance_id", id, "spiffe_id", ans.SPIFFEID, "expires_at", leaf.NotAfter)
	return nil
}

// keepCertificate is Run's goroutine with ServiceConfig.Certificate: it
// gets a certificate once the instance is registered, and a new one at
// half its life and whenever the instance ID changes (a registration
// again), until ctx ends. Failures are retried with backoff, never
// sooner than a Retry-After.
func (r *Registration) keepCertificate(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		r.mu.Lock()
		st, changed := r.state, r.changed
		r.mu.Unlock()
		r.certs.mu.Lock()
		have, renewAt := r.certs.instance, r.certs.renewAt
		r.certs.mu.Unlock()
		var wait time.Duration
		switch {
		case !st.Registered:
			wait = time.Hour // until the state changes
		case have != st.InstanceID || !time.Now().Before(renewAt):
			if err := r.RenewCertificate(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				wait = atLeastRetryAfter(r.backoff(attempt), err)
				attempt++
				r.log.Warn("could not get a certificate; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
			} else {
				attempt = 0
				continue
			}
		default:
			wait = time.Until(renewAt)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-changed:
		}
		t.Stop()
	}
}

// peer returns the current CA pool and this Registration's trust domain
// ("" before its first certificate).
func (r *Registration) peer() (*x509.CertPool, string) {
	r.certs.mu.Lock()
	defer r.certs.mu.Unlock()
	td, _, _ := splitSPIFFE(r.certs.spiffeID)
	return r.certs.pool, td
}

// refreshPool fetches the CA bundle again (GET /v1/ca), at most once per
// bundleRefreshEvery, and reports whether it changed: a peer whose
// certificate a newer CA signed (after a rotation) is then trusted
// before this Registration's own renewal.
func (r *Registration) refreshPool(ctx context.Context) bool {
	r.certs.mu.Lock()
	if time.Since(r.certs.refreshed) < bundleRefreshEvery {
		r.certs.mu.Unlock()
		return false
	}
	r.certs.refreshed = time.Now()
	r.certs.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b, err := r.client.CA(ctx)
	if err != nil {
		r.log.Warn("could not fetch the registry's CA bundle", "err", err)
		return false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return false
	}
	r.certs.mu.Lock()
	r.certs.pool = pool
	r.certs.mu.Unlock()
	return true
}

// splitSPIFFE splits spiffe://<trust-domain>/svc/<service>.
func splitSPIFFE(id string) (trustDomain, service string, ok bool) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return "", "", false
	}
	td, svc, ok := strings.Cut(rest, "/svc/")
	if !ok || td == "" || svc == "" || strings.Contains(svc, "/") {
		return "", "", false
	}
	return td, svc, true
}

// verifyPeer checks a peer's certificate chain (the leaf first) for
// usage: it chains to the registry's CA bundle (fetched again once if
// it does not), it names one SPIFFE ID in this Registration's trust
// domain, and that ID's service is one of allowed (any, when allowed is
// empty).
func (r *Registration) verifyPeer(ctx context.Context, rawCerts [][]byte, usage x509.ExtKeyUsage, allowed []string) error {
	if len(rawCerts) == 0 {
		return errorf("mtls: the peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return errorf("mtls: the peer's certificate does not parse: %w", err)
		}
		certs[i] = c
	}
	pool, td := r.peer()
	if pool == nil {
		return errorf("mtls: %w: no CA bundle to judge the peer by", ErrNoCertificate)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}
	if _, err := certs[0].Verify(opts); err != nil {
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) || !r.refreshPool(ctx) {
			return errorf("mtls: the peer's certificate is not one the registry issued: %w", err)
		}
		opts.Roots, _ = r.peer()
		if _, err := certs[0].Verify(opts); err != nil {
			return errorf("mtls: the peer's certificate is not one the registry issued: %w", err)
		}
	}
	if len(certs[0].URIs) != 1 {
		return errorf("mtls: the peer's certificate names %d URIs, want one SPIFFE ID", len(certs[0].URIs))
	}
	id := certs[0].URIs[0].String()
	ptd, svc, ok := splitSPIFFE(id)
	switch {
	case !ok:
		return errorf("mtls: the peer's URI %.100q is not a muster SPIFFE ID", id)
	case ptd != td:
		return errorf("mtls: the peer %s is of trust domain %q, not %q", id, ptd, td)
	case len(allowed) > 0 && !slices.Contains(allowed, svc):
		return errorf("mtls: the peer is service %q, not one of %q", svc, allowed)
	}
	return nil
}

// TLSConfig returns a TLS configuration for a server of this service:
// it presents the Registration's current certificate, and requires a
// client certificate that chains to the registry's CA bundle and names a
// service of allowedClients (none given: any service of the registry's
// trust domain). The certificate and the bundle are read at each
// handshake, so renewals and rotations take effect at once. Set
// ServiceConfig.Certificate (or call RenewCertificate) so that the
// Registration holds a certificate.
func (r *Registration) TLSConfig(allowedClients ...string) *tls.Config {
	allowed := slices.Clone(allowedClients)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.Certificate()
		},
		// The chain is judged by VerifyConnection, against the bundle
		// as it is now, and by SPIFFE ID rather than host name.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return r.verifyPeer(context.Background(), rawOf(cs.PeerCertificates), x509.ExtKeyUsageClientAuth, allowed)
		},
	}
}

// rawOf is the DER of certs.
func rawOf(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}

// mtlsService is the context key under which MTLSTransport's Transport
// passes the service a request is for to the connection's dialer.
type mtlsService struct{}

// MTLSTransport returns a RoundTripper for requests to
// https://service-name/…: as Transport does, it resolves the service
// through resolver and picks an instance (retrying on another as
// Transport does), then connects with TLS, presenting this
// Registration's certificate, and accepts the instance only if its
// certificate chains to the registry's CA bundle and names a service of
// allowedServices (none given: the service the URL names). It is a
// method of Registration because the client presents its own
// certificate. Requests whose host is not a service name are refused
// (Transport.OnlyServices).
func (r *Registration) MTLSTransport(resolver *Resolver, allowedServices ...string) http.RoundTripper {
	allowed := slices.Clone(allowedServices)
	base := &mtlsBase{r: r, allowed: allowed, byService: map[string]*http.Transport{}}
	return &Transport{Resolver: resolver, Base: base, OnlyServices: true, mtls: true}
}

// mtlsBase carries MTLSTransport's requests, with one connection pool per
// service, each verifying its own peers: a connection made to one
// service is never used for another's requests.
type mtlsBase struct {
	r       *Registration
	allowed []string

	mu        sync.Mutex
	byService map[string]*http.Transport
}

func (b *mtlsBase) RoundTrip(req *http.Request) (*http.Response, error) {
	service, _ := req.Context().Value(mtlsService{}).(string)
	if service == "" {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errorf("mtls: %w: the request names no service", ErrNotServiceName)
	}
	return b.transport(service).RoundTrip(req)
}

// transport returns the pool of connections to service's instances.
func (b *mtlsBase) transport(service string) *http.Transport {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.byService[service]; t != nil {
		return t
	}
	allowed := b.allowed
	if len(allowed) == 0 {
		allowed = []string{service}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Straight to the instance the Resolver picked: a proxy from the
	// environment (HTTPS_PROXY) would stand between the two ends of the
	// mutual TLS, or refuse the instance's address.
	t.Proxy = nil
	t.TLSClientConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return b.r.Certificate()
		},
		// The peer is judged by VerifyConnection: by the registry's CA
		// bundle and its SPIFFE ID, not by a host name (an instance is
		// reached by its address).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return b.r.verifyPeer(context.Background(), rawOf(cs.PeerCertificates), x509.ExtKeyUsageServerAuth, allowed)
		},
	}
	b.byService[service] = t
	return t
}
