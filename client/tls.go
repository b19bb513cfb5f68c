package client

import (
	"crypto/tls"
	"net/http"
	"os"
	"time"

	"github.com/musterhq/muster/internal/tlsfiles"
)

// The environment variables of a registry served over TLS (https://), as
// etcdctl's and the consul CLI's: the CA bundle that signed the
// registry's certificate (instead of the system's roots), and the
// client's certificate and key when the registry requires one.
const (
	EnvCACert     = "MUSTER_CACERT"
	EnvClientCert = "MUSTER_CLIENT_CERT"
	EnvClientKey  = "MUSTER_CLIENT_KEY"
)

// TLSFromEnv returns the TLS configuration $MUSTER_CACERT,
// $MUSTER_CLIENT_CERT and $MUSTER_CLIENT_KEY describe (read with getenv;
// nil is os.Getenv), or nil when none is set (the system's roots, no
// client certificate). The CA bundle is read once; the client's
// certificate and key are read again when their files change, so a
// renewed certificate is used without a restart.
func TLSFromEnv(getenv func(string) string) (*tls.Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	ca, cert, key := getenv(EnvCACert), getenv(EnvClientCert), getenv(EnvClientKey)
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pool, err := tlsfiles.ReadPool(ca)
		if err != nil {
			return nil, errorf("$%s: %v", EnvCACert, err)
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, errorf("$%s and $%s go together: the client's certificate and its key", EnvClientCert, EnvClientKey)
	}
	if cert != "" {
		pair, err := tlsfiles.LoadPair(cert, key, nil, nil)
		if err != nil {
			return nil, errorf("$%s, $%s: %v", EnvClientCert, EnvClientKey, err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.Certificate(), nil }
	}
	return cfg, nil
}

// httpClient is the default HTTP client of a Config or a ServiceConfig:
// HTTPClient's, with tlsCfg, or the environment's TLS configuration
// when nil.
func httpClient(timeout time.Duration, tlsCfg *tls.Config, getenv func(string) string) (*http.Client, error) {
	if tlsCfg == nil {
		var err error
		if tlsCfg, err = TLSFromEnv(getenv); err != nil {
			return nil, err
		}
	}
	return HTTPClient(timeout, tlsCfg), nil
}

// HTTPClient returns an HTTP client for a registry: net/http's default
// transport (a copy of it, with tlsCfg for https:// when tlsCfg is set),
// each request within timeout (none when 0).
func HTTPClient(timeout time.Duration, tlsCfg *tls.Config) *http.Client {
	base, ok := http.DefaultTransport.(*http.Transport)
	if tlsCfg == nil || !ok {
		return &http.Client{Timeout: timeout}
	}
	t := base.Clone()
	t.TLSClientConfig = tlsCfg
	return &http.Client{Timeout: timeout, Transport: t}
}
