package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync/atomic"

	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/tlsfiles"
)

// HTTPTLS serves the HTTP API (and everything on its port: the event
// stream, /metrics, the tutorial protocol) over TLS. Off when CertFile
// is empty.
type HTTPTLS struct {
	// CertFile and KeyFile are the server's certificate (with its
	// chain) and key, PEM; the key's file must be its owner's alone. Both
	// are read again when they change, without a restart (see package
	// tlsfiles).
	CertFile, KeyFile string
	// ClientCAFile, when set, is a bundle of CA certificates: every
	// client must then present a certificate one of them signed, valid
	// now, for client authentication, or its handshake fails. Read again
	// when it changes.
	ClientCAFile string
}

// Enabled reports whether the API is served over TLS.
func (t HTTPTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

func (t HTTPTLS) validate() error {
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		return errors.New("the API's TLS needs both a certificate and its key (--http-tls-cert and --http-tls-key)")
	case t.ClientCAFile != "" && t.CertFile == "":
		return errors.New("client certificates (--http-tls-client-ca) need the API served over TLS (--http-tls-cert and --http-tls-key)")
	}
	return nil
}

// apiTLS returns the TLS configuration of the API's listener: TLS 1.2
// and up with Go's default suites, HTTP/1.1, the certificate read from
// its files and kept current, and with a client CA, a client's
// certificate required and verified against the CA bundle in use.
func (s *Server) apiTLS() (*tls.Config, error) {
	t := s.cfg.HTTPTLS
	pair, err := tlsfiles.LoadPair(t.CertFile, t.KeyFile, durable.ReadPrivateFile, func(err error) {
		s.log.Error("the API's renewed TLS certificate could not be loaded; serving the one in use", "err", err)
	})
	if err != nil {
		return nil, err
	}
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return pair.Certificate(), nil
		},
	}
	if t.ClientCAFile == "" {
		return base, nil
	}
	cas, err := tlsfiles.LoadPool(t.ClientCAFile, func(err error) {
		s.log.Error("the API's renewed client CA bundle could not be loaded; using the one in use", "err", err)
	})
	if err != nil {
		return nil, err
	}
	// A handshake takes the configuration of the bundle in use; it is
	// made again only when the bundle changed.
	type derived struct {
		pool *x509.CertPool
		cfg  *tls.Config
	}
	var cur atomic.Pointer[derived]
	derive := func(pool *x509.CertPool) *tls.Config {
		if d := cur.Load(); d != nil && d.pool == pool {
			return d.cfg
		}
		cfg := base.Clone()
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pool
		cur.Store(&derived{pool: pool, cfg: cfg})
		return cfg
	}
	out := base.Clone()
	out.ClientAuth, out.ClientCAs = tls.RequireAndVerifyClientCert, cas.CertPool()
	out.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return derive(cas.CertPool()), nil }
	return out, nil
}
