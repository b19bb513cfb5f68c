package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"
)

// Certificate mode of the Raft port. Instead of a shared secret, each
// server holds a certificate and key of its own, signed by a cluster CA
// (`muster tls ca create`, `muster tls cert create --node n1`), and the
// CA's certificate. Both ends of every connection present their
// certificate in a TLS 1.3 handshake and accept the other's only if it
// chains to the CA, is valid now, allows digital signatures and is for
// both server and client authentication (each member dials and accepts);
// TLS 1.3 makes each end sign the handshake with its private key. Names
// are not checked: members dial each other by address, and a certificate
// from the CA is the whole credential, as the secret is in secret mode.
// A refused peer is dropped before Raft or the RPC reads a byte, and
// logged like every refusal (secureStream.refused). The files are read
// once, at Open: a renewed certificate takes a restart.

// maxPublicFile bounds the certificate files read: a PEM chain is a few
// KiB, so a larger file is not the right one.
const maxPublicFile = 1 << 20

// TLSIdentity is a node's credentials in certificate mode: the cluster
// CA's certificates, to which a peer's certificate must chain, and this
// node's certificate with its private key. LoadTLS makes one. It prints
// and logs as its certificate's name and expiry, never its key.
type TLSIdentity struct {
	roots *x509.CertPool
	cert  tls.Certificate
	leaf  *x509.Certificate
}

// Name is the common name of this node's certificate (the --node it was
// made for).
func (id *TLSIdentity) Name() string { return id.leaf.Subject.CommonName }

// NotAfter is when this node's certificate expires; peers refuse it from
// then on.
func (id *TLSIdentity) NotAfter() time.Time { return id.leaf.NotAfter }

// String names the certificate, never the key.
func (id *TLSIdentity) String() string {
	return fmt.Sprintf("[TLS certificate %q, valid until %s]", id.Name(), id.NotAfter().UTC().Format(time.RFC3339))
}

// GoString hides the key from fmt's %#v.
func (id *TLSIdentity) GoString() string { return id.String() }

// LogValue hides the key from slog.
func (id *TLSIdentity) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", id.Name()), slog.Time("not_after", id.NotAfter()))
}

// credential is what a peer proves in certificate mode, for logs.
func (*TLSIdentity) credential() string { return "a certificate from the cluster CA" }

// tlsConfig is the Raft port's TLS configuration in certificate mode.
// Both ends present this node's certificate and check the other's with
// checkPeer. Go's own check is replaced (InsecureSkipVerify, and a client
// certificate required but not verified by crypto/tls) because it would
// also match the peer's name against the address dialed, which members'
// certificates need not carry; checkPeer does the rest of it, on both
// ends alike.
func (id *TLSIdentity) tlsConfig() (*tls.Config, error) {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// Names only: VerifyPeerCertificate checks chain, dates and usage.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return id.checkPeer(raw, time.Now())
		},
		ServerName: "muster-raft",
		NextProtos: []string{protoRaft, protoRPC},
	}, nil
}

// errNoPeerCertificate is the handshake error of a peer that presented no
// certificate.
var errNoPeerCertificate = errors.New("cluster: the peer presented no certificate")

// checkPeer checks the certificate chain a peer presented (raw, leaf
// first) at now.
func (id *TLSIdentity) checkPeer(raw [][]byte, now time.Time) error {
	if len(raw) == 0 {
		return errNoPeerCertificate
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("cluster: the peer's certificate does not parse: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if err := checkCert(certs[0], id.roots, inter, now); err != nil {
		return fmt.Errorf("cluster: the peer's %w", err)
	}
	return nil
}

// checkCert checks a member's certificate: it chains to roots (through
// inter), is valid at now, allows digital signatures if it limits its key
// usage, and is for both server and client authentication. Errors start
// "certificate NAME" and say which of these failed.
func checkCert(leaf *x509.Certificate, roots, inter *x509.CertPool, now time.Time) error {
	name := leaf.Subject.CommonName
	if len(name) > 64 { // the peer chose it; logs get a bounded excerpt
		name = name[:64] + "…"
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("certificate %q does not allow digital signatures (key usage), which TLS 1.3 needs", name)
	}
	// The certificate must name both usages itself. Go's Verify takes a
	// certificate without extended key usage, or with "any", as good for
	// every purpose; a CA that also signs general-purpose certificates
	// would then make every holder of one a member.
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("certificate %q is not for both server and client authentication "+
			"(its extended key usage must name both; none, or \"any\", is not accepted)", name)
	}
	// Verify accepts a chain valid for any one of KeyUsages; a member
	// needs both, so each is checked alone (an intermediate may limit
	// them).
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
		if err == nil {
			continue
		}
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		switch {
		case errors.As(err, &unknown):
			return fmt.Errorf("certificate %q is not signed by the cluster CA: %w", name, err)
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			return fmt.Errorf("certificate %q is not valid now (valid from %s until %s): %w", name,
				leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), err)
		case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
			return fmt.Errorf("certificate %q is not for both server and client authentication (extended key usage): %w", name, err)
		default:
			return fmt.Errorf("certificate %q: %w", name, err)
		}
	}
	return nil
}

// LoadTLS reads a node's certificate mode credentials: caFile, the
// cluster CA's certificate (PEM; several CAs may be listed); certFile,
// this node's certificate (PEM, perhaps followed by intermediates); and
// keyFile, its private key (PEM), which must be readable by its owner
// only, as the secret file is. The certificate must itself pass the check
// peers make (it chains to the CA, is valid now, and is for server and
// client authentication), so that a wrong or expired one stops the node
// at start rather than at every peer. Errors name the file and the fix,
// never the key.
func LoadTLS(caFile, certFile, keyFile string) (*TLSIdentity, error) {
	for _, f := range []struct{ flag, path string }{{"--tls-ca", caFile}, {"--tls-cert", certFile}, {"--tls-key", keyFile}} {
		if f.path == "" {
			return nil, fmt.Errorf("cluster: certificate mode needs the CA, certificate and key files; %s is missing", f.flag)
		}
	}
	caPEM, err := readPublicFile(caFile, "TLS CA file")
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	cas := 0
	for rest := caPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cluster: TLS CA file %s: %w", caFile, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("cluster: TLS CA file %s holds %q, which is not a CA certificate; "+
				"give the cluster CA's certificate (muster tls ca create writes muster-ca.pem)", caFile, c.Subject.CommonName)
		}
		roots.AddCert(c)
		cas++
	}
	if cas == 0 {
		return nil, fmt.Errorf("cluster: TLS CA file %s holds no PEM certificate; "+
			"give the cluster CA's certificate (muster tls ca create writes muster-ca.pem)", caFile)
	}
	certPEM, err := readPublicFile(certFile, "TLS certificate file")
	if err != nil {
		return nil, err
	}
	keyPEM, err := readPrivateFile(keyFile, "TLS key file")
	if err != nil {
		return nil, err
	}
	// X509KeyPair's errors name what is wrong, never the key's bytes.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster: TLS certificate %s and key %s: %w; give this node's certificate and its own key "+
			"(muster tls cert create --node NAME writes NAME.pem and NAME-key.pem)", certFile, keyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("cluster: TLS certificate file %s: %w", certFile, err)
		}
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("cluster: TLS certificate file %s: %w", certFile, err)
		}
		inter.AddCert(c)
	}
	if err := checkCert(leaf, roots, inter, time.Now()); err != nil {
		return nil, fmt.Errorf("cluster: TLS certificate file %s: its %w; peers would refuse it. "+
			"Make this node a certificate from the CA in %s (muster tls cert create --node NAME)", certFile, err, caFile)
	}
	return &TLSIdentity{roots: roots, cert: pair, leaf: leaf}, nil
}

// readPublicFile reads a file of certificates, which anyone may read.
func readPublicFile(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPublicFile+1))
	if err != nil {
		return nil, fmt.Errorf("cluster: %s %s: %w", what, path, err)
	}
	if len(b) > maxPublicFile {
		return nil, fmt.Errorf("cluster: %s %s is larger than 1 MiB; is it the right file?", what, path)
	}
	return b, nil
}

// certExpiryWarning is how long before its certificate expires a node
// starts saying so at start.
const certExpiryWarning = 30 * 24 * time.Hour

// loadPeerAuth returns how cfg's node authenticates its peers: the
// cluster secret (Secret or SecretFile), its certificates (TLS or the
// TLS files), or nil when it has neither and so no Raft listener.
// Validate has made sure it has at most one.
func loadPeerAuth(cfg Config) (peerAuth, error) {
	switch {
	case cfg.SecretFile != "":
		s, err := ReadSecretFile(cfg.SecretFile)
		if err != nil {
			return nil, err
		}
		return s, nil
	case len(cfg.Secret) > 0:
		return cfg.Secret, nil
	}
	id := cfg.TLS
	if id == nil && cfg.hasTLS() {
		var err error
		if id, err = LoadTLS(cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	if id == nil {
		return nil, nil
	}
	switch left := time.Until(id.NotAfter()); {
	case cfg.Logger == nil || left >= certExpiryWarning:
	case left <= 0:
		cfg.Logger.Warn("this node's TLS certificate has expired; peers refuse it: make a new one and restart with it", "certificate", id)
	default:
		cfg.Logger.Warn("this node's TLS certificate expires soon; once it has expired, peers refuse it: make a new one and restart with it",
			"certificate", id, "expires_in", left.Round(time.Hour).String())
	}
	return id, nil
}

// hasSecret reports whether c gives a cluster secret.
func (c Config) hasSecret() bool { return len(c.Secret) > 0 || c.SecretFile != "" }

// hasTLS reports whether c gives certificates from a cluster CA.
func (c Config) hasTLS() bool {
	return c.TLS != nil || c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != ""
}

// validateTLS reports a partial or doubled certificate configuration.
func (c Config) validateTLS() error {
	var missing []string
	for _, f := range []struct{ name, path string }{
		{"the TLS CA file (--tls-ca)", c.TLSCAFile},
		{"the TLS certificate file (--tls-cert)", c.TLSCertFile},
		{"the TLS key file (--tls-key)", c.TLSKeyFile},
	} {
		if f.path == "" {
			missing = append(missing, f.name)
		}
	}
	switch {
	case len(missing) == 1:
		return fmt.Errorf("cluster: certificate mode needs the CA, certificate and key files together; %s is missing", missing[0])
	case len(missing) == 2:
		return fmt.Errorf("cluster: certificate mode needs the CA, certificate and key files together; %s and %s are missing",
			missing[0], missing[1])
	case len(missing) == 0 && c.TLS != nil:
		return errors.New("cluster: give the TLS files or a loaded TLS identity, not both")
	}
	return nil
}
