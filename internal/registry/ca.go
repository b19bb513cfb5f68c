package registry

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/tlsfiles"
)

// The registry as a certificate authority. The leader creates a CA (an
// ECDSA P-256 self-signed certificate and its key) the first time it is
// ready with none in the catalog, and proposes it (catalog.OpAddCA), so
// that every server of a cluster signs with the same CA; a rotation adds
// a newer one, which signs from then on, and the leader retires the
// older once every certificate it signed has expired. A verified
// instance sends a CSR with its session token and gets a short-lived
// certificate naming its service as a SPIFFE ID.
//
// The CA's private key lives in the catalog (and so in the Raft log and
// Raft's snapshots on disk); nothing here ever returns it, logs it or
// puts it in an audit record.
const (
	// DefaultTrustDomain is the trust domain of the SPIFFE IDs the
	// registry issues, unless configured.
	DefaultTrustDomain = "muster.local"
	// DefaultCertTTL is the lifetime of an instance's certificate,
	// unless configured; MinCertTTL and MaxCertTTL bound it.
	DefaultCertTTL = time.Hour
	MinCertTTL     = 5 * time.Minute
	MaxCertTTL     = 24 * time.Hour
	// CertSkew is how far a certificate's NotBefore is set back, for
	// clocks that run behind the registry's, and how much longer than
	// the certificate TTL a rotated-out CA is kept.
	CertSkew = time.Minute
	// MaxCSRSize bounds a certificate request's PEM.
	MaxCSRSize = 16 << 10
	// CertBurst certificate requests per instance are let through at
	// once, then one per CertEvery: the bound on the signing work one
	// instance can cause.
	CertBurst = 5
	CertEvery = 10 * time.Second
	// CALifetime is the validity of a CA the registry creates.
	CALifetime = 10 * 365 * 24 * time.Hour
	// RetireAfter is how long after a rotation the CA it replaced
	// retires: the longest certificate any server may issue (each has its
	// own --cert-ttl) and the skew, so that none it signed outlives it.
	RetireAfter = MaxCertTTL + CertSkew
	// MinCertLife is the least validity a certificate is issued with: a
	// signing CA with less left issues nothing (ErrCAExpired).
	MinCertLife = time.Minute
	// CAExpiryWarning is how long before the signing CA expires the
	// leader starts to warn, once an hour, that it must be rotated.
	CAExpiryWarning = 30 * 24 * time.Hour
)

// CAConfig configures the registry's certificate authority.
type CAConfig struct {
	// TrustDomain is the SPIFFE trust domain, a lowercase DNS name:
	// certificates name spiffe://<TrustDomain>/svc/<service>.
	TrustDomain string
	// CertTTL is the lifetime of the certificates issued, between
	// MinCertTTL and MaxCertTTL.
	CertTTL time.Duration
	// Import, when set, is an operator's CA (see ImportCA): the leader
	// proposes it, instead of generating one, when the catalog holds no
	// CA. Once the catalog holds a CA it is not proposed again.
	Import *catalog.CA
}

// DefaultCAConfig returns the defaults: trust domain muster.local,
// certificates of one hour.
func DefaultCAConfig() CAConfig {
	return CAConfig{TrustDomain: DefaultTrustDomain, CertTTL: DefaultCertTTL}
}

// orDefault is c with its zero fields set to the defaults.
func (c CAConfig) orDefault() CAConfig {
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultTrustDomain
	}
	if c.CertTTL == 0 {
		c.CertTTL = DefaultCertTTL
	}
	return c
}

// Validate reports a configuration error. A zero field means its
// default.
func (c CAConfig) Validate() error {
	c = c.orDefault()
	var errs []error
	if !ValidTrustDomain(c.TrustDomain) {
		errs = append(errs, fmt.Errorf("registry: trust domain %.64q is not a lowercase DNS name (letters a-z, digits, '-' and dots)", c.TrustDomain))
	}
	if c.CertTTL < MinCertTTL || c.CertTTL > MaxCertTTL {
		errs = append(errs, fmt.Errorf("registry: certificate TTL %s is not between %s and %s", c.CertTTL, MinCertTTL, MaxCertTTL))
	}
	return errors.Join(errs...)
}

// ValidTrustDomain reports whether s is a lowercase DNS name: labels of
// 1 to 63 of a-z, 0-9 and '-' (not at either end), joined by dots, at
// most 253 bytes, no trailing dot, the last label not all digits.
func ValidTrustDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// Errors of the certificate authority.
var (
	// ErrNoCA means the registry holds no CA yet: a new cluster's leader
	// makes it as soon as it is ready; a cluster that held state before
	// makes it when an instance first asks for a certificate, or an
	// admin rotates (see tendCA). Also returned when making one failed
	// (no leader took it): retry.
	ErrNoCA = errors.New("registry: the certificate authority is not ready yet")
	// ErrCATrustDomain means the signing CA's name constraints permit
	// neither the configured trust domain nor exactly one other: it
	// issues nothing until an admin rotates it.
	ErrCATrustDomain = errors.New("registry: the signing CA's name constraints do not permit the configured trust domain; an admin must rotate it (muster ca rotate)")
	// ErrCAExpired means the CA that signs has expired, or has less than
	// MinCertLife left: it issues nothing until an admin rotates it.
	ErrCAExpired = errors.New("registry: the signing CA has expired; an admin must rotate it (muster ca rotate)")
	// ErrInstanceCritical means the instance is critical (its TTL ran
	// out, or its checks fail): it gets no certificate until it is
	// passing again.
	ErrInstanceCritical = errors.New("registry: the instance is critical; it gets a certificate once it is passing again")
	// ErrTooManyCAs means a rotation would hold more than catalog.MaxCAs
	// CAs: wait until a rotated-out CA retires.
	ErrTooManyCAs = errors.New("registry: too many CAs held; rotate again once a rotated-out CA has retired")
)

// CSRError means a certificate request is refused for what it holds;
// its message says what, for the caller.
type CSRError struct{ Message string }

func (e *CSRError) Error() string { return "certificate request: " + e.Message }

// CertRateError means an instance asked for certificates faster than
// CertBurst, then one per CertEvery.
type CertRateError struct{ Wait time.Duration }

func (e *CertRateError) Error() string {
	return fmt.Sprintf("too many certificate requests for this instance lately; retry in %s", e.Wait.Round(time.Second)+time.Second)
}

// ParseCSR decodes a PEM certificate request and checks it: one
// CERTIFICATE REQUEST block of at most MaxCSRSize bytes, nothing but
// white space around it, its signature valid, its public key ECDSA P-256
// or P-384, Ed25519, or RSA of 2048 to 4096 bits. The names it asks for
// are not looked at: the registry decides every name of the
// certificate. Every refusal is a *CSRError; it never panics.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) > MaxCSRSize {
		return nil, &CSRError{fmt.Sprintf("the request is %d bytes, at most %d", len(b), MaxCSRSize)}
	}
	// pem.Decode skips whatever precedes a block; a request is the block
	// alone.
	if b = bytes.TrimLeft(b, " \t\r\n"); len(b) > 0 && !bytes.HasPrefix(b, []byte("-----BEGIN ")) {
		return nil, &CSRError{"text before the CERTIFICATE REQUEST block: want the PEM block alone"}
	}
	block, rest := pem.Decode(b)
	switch {
	case block == nil:
		return nil, &CSRError{"not PEM: want one CERTIFICATE REQUEST block"}
	case block.Type != "CERTIFICATE REQUEST":
		return nil, &CSRError{fmt.Sprintf("a PEM block of type %.40q, want CERTIFICATE REQUEST", block.Type)}
	case strings.TrimSpace(string(rest)) != "":
		return nil, &CSRError{"data follows the CERTIFICATE REQUEST block"}
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, &CSRError{"not a certificate request: " + cut(err.Error(), 200)}
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, &CSRError{"its signature does not verify with its public key"}
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, &CSRError{"an ECDSA key must be on P-256 or P-384"}
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 4096 {
			return nil, &CSRError{fmt.Sprintf("an RSA key of %d bits, want 2048 to 4096", n)}
		}
	default:
		return nil, &CSRError{"the public key is not ECDSA P-256/P-384, Ed25519 or RSA"}
	}
	return csr, nil
}

// cut shortens s to n bytes at most.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Certificate is a certificate issued to an instance.
type Certificate struct {
	// CertPEM is the certificate, PEM.
	CertPEM []byte
	// Bundle is every CA certificate the registry holds, PEM: what
	// peers must trust.
	Bundle []byte
	// SPIFFEID is the certificate's URI SAN.
	SPIFFEID string
	// ExpiresAt is its NotAfter.
	ExpiresAt time.Time
	// Serial is its serial number, hex.
	Serial string
}

// TrustDomain is the SPIFFE trust domain of the certificates issued: the
// one the signing CA's name constraints permit (see trustDomainOf), the
// configured one when there is no CA yet or the CA does not constrain
// URIs, "" when the CA permits neither the configured domain nor exactly
// one other.
func (r *Registry) TrustDomain() string {
	signer, _, err := r.cas.current(r.cat.CAs())
	if err != nil {
		return r.cfg.CA.TrustDomain
	}
	return r.trustDomainOf(signer.cert)
}

// trustDomainOf is the trust domain the registry issues for under the
// CA ca: the configured one if ca's name constraints permit it (or it
// has none for URIs), else the one domain they permit, so that every
// server of a cluster, whatever its --trust-domain, issues certificates
// its CA allows, in the one trust domain their peers check; "" when ca
// permits neither (an operator's CA with several domains, none the
// configured one).
func (r *Registry) trustDomainOf(ca *x509.Certificate) string {
	td := r.cfg.CA.TrustDomain
	permitted := ca.PermittedURIDomains
	if len(permitted) == 0 {
		return td
	}
	for _, p := range permitted {
		if p == td || strings.HasPrefix(p, ".") && strings.HasSuffix(td, p) {
			return td
		}
	}
	if len(permitted) == 1 && ValidTrustDomain(permitted[0]) {
		return permitted[0]
	}
	return ""
}

// spiffeID is the SPIFFE ID of a service's certificates in trust domain td.
func spiffeID(td, service string) string {
	return (&url.URL{Scheme: "spiffe", Host: td, Path: "/svc/" + service}).String()
}

// Certificate signs a certificate for instance id, for the holder of its
// session token, from the PEM certificate request csr returns (see
// ParseCSR; csr is called once the caller is authenticated and within
// its rate, so that a stranger's body is never read, and its error is
// returned as it is): its URI SAN is the service's SPIFFE ID, its other SAN the
// instance's address (an IP SAN, or a DNS SAN for a host name), for
// server and client authentication, valid from CertSkew ago for the
// configured TTL but never past the CA's own expiry. Issue and refusal
// are audit records (cert_issue). Errors, in the order checked:
// ErrNotReady, ErrInstanceNotFound (deregistered or expired away; an
// *EvictedError for an evicted one), ErrNoCredential, ErrWrongToken,
// ErrInstanceCritical, *CertRateError, *CSRError, ErrNoCA.
func (r *Registry) Certificate(ctx context.Context, id, token string, csr func() ([]byte, error)) (_ Certificate, err error) {
	rec := audit.Record{Action: audit.ActionCertIssue, Instance: id}
	defer func() {
		if err != nil && (errors.Is(err, ErrInstanceNotFound) || errors.Is(err, ErrNotReady)) && rec.Service == "" {
			return // nothing is known of it: no record, as for heartbeats
		}
		r.record(ctx, rec, err)
	}()
	if err := r.Ready(); err != nil {
		return Certificate{}, err
	}
	inst, _, err := r.instance(id)
	if err != nil {
		return Certificate{}, err
	}
	if inst == nil {
		return Certificate{}, r.notFoundFor(id, nil)
	}
	rec.Service, rec.Key = inst.Service, inst.KeyID
	switch {
	case token == "":
		return Certificate{}, ErrNoCredential
	case !inst.TokenMatches(token):
		return Certificate{}, ErrWrongToken
	}
	// Its status now: an instance whose TTL ran out gets none, even in the
	// moment before the sweep commits it critical.
	if r.statusNow(inst) == catalog.StatusCritical {
		return Certificate{}, ErrInstanceCritical
	}
	now := r.now()
	if ok, wait := r.certs.Allow(now, inst.ID); !ok {
		return Certificate{}, &CertRateError{Wait: wait}
	}
	r.certs.Spend(now, inst.ID)
	csrPEM, err := csr()
	if err != nil {
		return Certificate{}, err
	}
	req, err := ParseCSR(csrPEM)
	if err != nil {
		return Certificate{}, err
	}
	if err := r.ensureCA(ctx); err != nil {
		return Certificate{}, err
	}
	signer, bundle, err := r.cas.current(r.cat.CAs())
	if err != nil {
		return Certificate{}, err
	}
	serial, err := randomSerial()
	if err != nil {
		return Certificate{}, err
	}
	if signer.cert.NotAfter.Before(now.Add(MinCertLife)) {
		return Certificate{}, ErrCAExpired // tendCA says so in the log
	}
	td := r.trustDomainOf(signer.cert)
	if td == "" {
		return Certificate{}, ErrCATrustDomain // tendCA says so in the log
	}
	spiffe := spiffeID(td, inst.Service)
	uri, _ := url.Parse(spiffe)
	notAfter := now.Add(r.cfg.CA.CertTTL)
	if notAfter.After(signer.cert.NotAfter) {
		notAfter = signer.cert.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := req.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The subject names the service for humans reading the
		// certificate; peers judge the URI SAN.
		Subject:     pkix.Name{CommonName: inst.Service},
		NotBefore:   now.Add(-CertSkew),
		NotAfter:    notAfter,
		KeyUsage:    usage,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{uri},
	}
	if ip := net.ParseIP(inst.Address); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{inst.Address}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, req.PublicKey, signer.key)
	if err != nil {
		return Certificate{}, fmt.Errorf("registry: sign a certificate: %w", err)
	}
	c := Certificate{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Bundle: bundle,
		SPIFFEID: spiffe, ExpiresAt: notAfter, Serial: hex.EncodeToString(serial.Bytes())}
	rec.Reason = "serial " + c.Serial + " " + spiffe + " until " + notAfter.UTC().Format(time.RFC3339)
	return c, nil
}

// CABundle returns the CA certificates the registry holds, PEM, oldest
// first (the last signs), and their fingerprints (SHA-256, hex). It
// reads this server's catalog and never writes: anyone may ask it, and
// an anonymous read must not propose (a server of an older version stops
// at a ca_add; see tendCA). ErrNotReady while the catalog loads, ErrNoCA
// before the first CA exists.
func (r *Registry) CABundle(ctx context.Context) (bundle []byte, fingerprints []string, err error) {
	if err := r.Ready(); err != nil {
		return nil, nil, err
	}
	cas := r.cat.CAs()
	if len(cas) == 0 {
		return nil, nil, ErrNoCA
	}
	for _, ca := range cas {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.CertDER})...)
		fingerprints = append(fingerprints, ca.ID)
	}
	return bundle, fingerprints, nil
}

// RotateCA creates a new CA and proposes it, for the holder of the admin
// token: it signs from then on, and the CA it replaces stays in the
// bundle until every certificate that one signed has expired (RunCA
// retires it). It returns the new CA's fingerprint. Errors:
// ErrNoCredential, ErrWrongToken, ErrNotReady, ErrNoCA (the first CA,
// made when none is held, could not be), ErrTooManyCAs, ErrUnavailable.
func (r *Registry) RotateCA(ctx context.Context, token string) (_ string, err error) {
	c, err := r.admin(ctx, audit.ActionCARotate, token)
	if err != nil {
		return "", err
	}
	ctx = asCaller(ctx, c)
	defer func() {
		if err != nil {
			r.record(ctx, audit.Record{Action: audit.ActionCARotate}, err)
		}
	}()
	if err := r.Ready(); err != nil {
		return "", err
	}
	if len(r.cat.CAs()) == 0 {
		// A cluster that held state before CAs has none yet: its first
		// is what the admin asked for.
		if err := r.ensureCA(ctx); err != nil {
			return "", err
		}
		if cas := r.cat.CAs(); len(cas) > 0 {
			return cas[len(cas)-1].ID, nil
		}
	}
	ca, err := r.newCA()
	if err != nil {
		return "", err
	}
	if _, err := r.propose(ctx, catalog.Command{Op: catalog.OpAddCA, CA: ca, Reason: "rotate", Origin: origin(ctx)}); err != nil {
		if errors.Is(err, catalog.ErrConflict) {
			err = ErrTooManyCAs
		}
		return "", err
	}
	r.log.Info("the certificate authority was rotated; the new CA signs from now on", "ca", caPrefix(ca.ID))
	return ca.ID, nil
}

// RunCA keeps the certificate authority while this node leads, until ctx
// ends: it creates the first CA when the catalog holds none, and
// retires a rotated-out CA once the certificates it signed have expired
// (its successor's AddedAt, plus MaxCertTTL, plus CertSkew: the longest
// any server of the cluster, whatever its --cert-ttl, may have issued). A
// failed proposal is tried again a second later.
func (r *Registry) RunCA(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r.tendCA(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// tendCA does one round of RunCA's work.
//
// It makes the first CA of a new cluster (one whose catalog has applied
// nothing yet), or the operator's CA when one is given; a cluster that
// already holds state gets its first CA when something first needs one
// (ensureCA). A server of a version before CAs stops at an add_ca it
// cannot apply: were the leader to add one as it starts, the first
// server upgraded to lead would stop every server not yet upgraded,
// while a cluster whose servers all run this version meets the first
// add_ca only when a certificate is first asked for.
func (r *Registry) tendCA(ctx context.Context) {
	cas := r.cat.CAs()
	if len(cas) == 0 {
		if r.Ready() != nil || (r.cfg.CA.Import == nil && r.cat.Index() != 0) {
			return
		}
		if err := r.addFirstCA(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("could not create the certificate authority; trying again", "err", err)
		}
		return
	}
	now := r.now()
	if signer, _, err := r.cas.current(cas); err == nil && !now.Before(r.caWarned.Add(time.Hour)) {
		ca := caPrefix(cas[len(cas)-1].ID)
		switch td := r.trustDomainOf(signer.cert); {
		case now.After(signer.cert.NotAfter.Add(-CAExpiryWarning)):
			r.caWarned = now
			r.log.Warn("the signing CA expires soon or has expired: rotate it (muster ca rotate); an expired CA issues no certificates",
				"ca", ca, "not_after", signer.cert.NotAfter.UTC())
		case td == "":
			r.caWarned = now
			r.log.Warn("the signing CA's name constraints do not permit this server's --trust-domain: it issues no certificates until an admin rotates the CA (muster ca rotate)",
				"ca", ca, "trust_domain", r.cfg.CA.TrustDomain, "permitted", signer.cert.PermittedURIDomains)
		case td != r.cfg.CA.TrustDomain:
			r.caWarned = now
			r.log.Warn("certificates are issued in the signing CA's trust domain, not this server's --trust-domain; rotate the CA (muster ca rotate) to move to the new one",
				"ca", ca, "issued_in", td, "trust_domain", r.cfg.CA.TrustDomain)
		}
	}
	for i := 0; i < len(cas)-1; i++ {
		if due := cas[i+1].AddedAt.Add(RetireAfter); now.Before(due) {
			continue
		}
		_, err := r.propose(ctx, catalog.Command{Op: catalog.OpRetireCA, ID: cas[i].ID, Reason: "its certificates expired"})
		switch {
		case err == nil:
			r.log.Info("retired a rotated-out CA: every certificate it signed has expired", "ca", caPrefix(cas[i].ID))
		case errors.Is(err, catalog.ErrNotFound):
		default:
			if ctx.Err() == nil {
				r.log.Warn("could not retire a rotated-out CA; trying again", "ca", caPrefix(cas[i].ID), "err", err)
			}
			return
		}
	}
}

// ensureCA makes the registry's first CA if it holds none (see tendCA),
// from any server, for an authenticated caller (an instance's
// certificate request, an admin's rotation): a race between servers
// leaves one, the first applied. After a failed attempt, the next comes
// no sooner than caRetry later: until then callers get ErrNoCA at once,
// without a key generated or a proposal made. Errors: ErrNoCA when it
// could not be proposed.
func (r *Registry) ensureCA(ctx context.Context) error {
	if len(r.cat.CAs()) > 0 {
		return nil
	}
	r.caMu.Lock()
	wait := r.caNextTry.Sub(r.now())
	r.caMu.Unlock()
	if wait > 0 {
		return fmt.Errorf("%w: the last attempt to create it failed; retry in %s", ErrNoCA, wait.Round(time.Millisecond))
	}
	if err := r.addFirstCA(ctx); err != nil {
		r.caMu.Lock()
		r.caNextTry = r.now().Add(caRetry)
		r.caMu.Unlock()
		r.log.Warn("could not create the certificate authority", "err", err)
		return fmt.Errorf("%w: %w", ErrNoCA, err)
	}
	return nil
}

// caRetry is how long ensureCA waits after a failed attempt to create the
// first CA, as RunCA does.
const caRetry = time.Second

// addFirstCA proposes the registry's first CA, the operator's or a new
// one; another's applied first is no error.
func (r *Registry) addFirstCA(ctx context.Context) error {
	r.caMu.Lock() // one proposal at a time from this server
	defer r.caMu.Unlock()
	if len(r.cat.CAs()) > 0 {
		return nil
	}
	ca, reason := r.cfg.CA.Import, catalog.CAReasonImported
	if ca == nil {
		var err error
		if ca, err = r.newCA(); err != nil {
			return err
		}
		reason = catalog.CAReasonFirst
	}
	_, err := r.propose(ctx, catalog.Command{Op: catalog.OpAddCA, CA: ca, Reason: reason, Origin: origin(ctx)})
	switch {
	case errors.Is(err, catalog.ErrExists):
		return nil
	case err != nil:
		return err
	}
	r.log.Info("created the certificate authority", "ca", caPrefix(ca.ID), "trust_domain", r.cfg.CA.TrustDomain, "how", reason)
	return nil
}

// ImportCA checks an operator's CA, its certificate and private key as
// PEM, and returns it as the catalog holds a CA, added at now: the
// certificate must be a CA's (basic constraints, for signing
// certificates), valid at now and for at least MaxCertTTL more, and the
// key (PKCS#8, or SEC 1 "EC PRIVATE KEY", or PKCS#1 "RSA PRIVATE KEY";
// ECDSA P-256/P-384, Ed25519 or RSA of 2048 to 4096 bits) must be the
// certificate's. Its errors never quote the key.
func ImportCA(certPEM, keyPEM []byte, now time.Time) (*catalog.CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("registry: the CA certificate is not a PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("registry: the CA certificate does not parse: %w", err)
	}
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, errors.New("registry: the certificate is not a CA's (it needs basic constraints CA:true and the certSign key usage)")
	case now.Before(cert.NotBefore) || now.Add(MaxCertTTL).After(cert.NotAfter):
		return nil, fmt.Errorf("registry: the CA certificate is valid from %s to %s: not now, or for less than %s more", cert.NotBefore.UTC(), cert.NotAfter.UTC(), MaxCertTTL)
	}
	signer, err := tlsfiles.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("registry: the CA key: %w", err) // never quoting the key
	}
	switch k := signer.Public().(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, errors.New("registry: an ECDSA CA key must be on P-256 or P-384")
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 4096 {
			return nil, fmt.Errorf("registry: an RSA CA key of %d bits, want 2048 to 4096", n)
		}
	default:
		return nil, errors.New("registry: the CA key is not ECDSA, Ed25519 or RSA")
	}
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(signer.Public()) {
		return nil, errors.New("registry: the CA key is not the CA certificate's")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, errors.New("registry: the CA key cannot be kept as PKCS#8")
	}
	return &catalog.CA{ID: catalog.CAID(cert.Raw), CertDER: cert.Raw, KeyDER: keyDER, AddedAt: now.UTC()}, nil
}

// newCA generates a CA: an ECDSA P-256 key and a self-signed certificate
// valid for CALifetime, for CA use only, whose name constraints permit
// URI SANs in the trust domain alone.
func (r *Registry) newCA() (*catalog.CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("registry: generate a CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := r.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "muster CA " + r.cfg.CA.TrustDomain + " " + now.UTC().Format("2006-01-02T15:04:05Z"), Organization: []string{"muster"}},
		NotBefore:             now.Add(-CertSkew),
		NotAfter:              now.Add(CALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		PermittedURIDomains:   []string{r.cfg.CA.TrustDomain},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("registry: create the CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("registry: encode the CA key: %w", err)
	}
	return &catalog.CA{ID: catalog.CAID(der), CertDER: der, KeyDER: keyDER, AddedAt: now.UTC()}, nil
}

// caPrefix is the first 16 hex digits of a CA's fingerprint, what the
// log names it by: the whole looks like a secret, which the log
// withholds (muster ca show -o table shows it whole).
func caPrefix(id string) string { return id[:min(16, len(id))] }

// randomSerial is a random serial number of 1 to 2^128-1: positive, and
// of at most 128 bits.
func randomSerial() (*big.Int, error) {
	max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	n, err := rand.Int(rand.Reader, max)
	if err != nil {
		return nil, fmt.Errorf("registry: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// caCache holds the CAs of the catalog parsed, by ID, so that a
// certificate is signed without parsing its CA's key again.
type caCache struct {
	mu     sync.Mutex
	parsed map[string]*parsedCA
}

type parsedCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// current returns the signing CA of cas (the newest), parsed, and the
// bundle of them all, PEM. ErrNoCA when cas is empty.
func (c *caCache) current(cas []*catalog.CA) (*parsedCA, []byte, error) {
	if len(cas) == 0 {
		return nil, nil, ErrNoCA
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parsed == nil {
		c.parsed = map[string]*parsedCA{}
	}
	var bundle []byte
	keep := make(map[string]*parsedCA, len(cas))
	for _, ca := range cas {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.CertDER})...)
		if p := c.parsed[ca.ID]; p != nil {
			keep[ca.ID] = p
		}
	}
	c.parsed = keep
	last := cas[len(cas)-1]
	if p := c.parsed[last.ID]; p != nil {
		return p, bundle, nil
	}
	cert, err := x509.ParseCertificate(last.CertDER)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: the CA certificate %s does not parse: %w", last.ID, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(last.KeyDER)
	if err != nil {
		// The error of the key's parse is not passed on: it could
		// quote the key's bytes.
		return nil, nil, fmt.Errorf("registry: the private key of CA %s does not parse", last.ID)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("registry: the private key of CA %s cannot sign", last.ID)
	}
	p := &parsedCA{cert: cert, key: signer}
	c.parsed[last.ID] = p
	return p, bundle, nil
}
