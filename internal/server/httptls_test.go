package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// tlsGet asks url with cfg and returns the status, or the error; the
// server's certificate serial, when the handshake succeeded.
func tlsGet(t *testing.T, url string, cfg *tls.Config) (int, *big.Int, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber, nil
}

func pool(ca *testutil.TestCA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// TestHTTPTLS_ServesAndRenews: with --http-tls-cert and --http-tls-key
// the API is HTTPS only (a plain HTTP request is refused, a client that
// does not trust the CA fails its handshake), the SDK reaches it with
// MUSTER_CACERT's CA, and a certificate renewed on disk is served to new
// connections without a restart.
func TestHTTPTLS_ServesAndRenews(t *testing.T) {
	ca := testutil.NewTestCA(t, "api-ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, dir, "api")
	srv := testserver.Start(t, func(c *server.Config) {
		c.HTTPTLS = server.HTTPTLS{CertFile: certFile, KeyFile: keyFile}
		c.AdminToken = "ma_tls-test-admin-token"
	})
	if !strings.HasPrefix(srv.URL(), "https://") {
		t.Fatalf("URL() = %s", srv.URL())
	}
	code, first, err := tlsGet(t, srv.URL()+"/livez", &tls.Config{RootCAs: pool(ca)})
	if err != nil || code != 200 {
		t.Fatalf("GET /livez over TLS: %d, %v", code, err)
	}
	// Plain HTTP to the HTTPS port, and TLS without the CA: refused.
	if resp, err := http.Get("http://" + srv.Addr() + "/livez"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP was answered 200")
		}
	}
	// Nor does a plain heartbeat reach the lean reader, which is not on a
	// TLS listener: net/http's TLS server refuses it.
	if status, _, body := rawAnswer(t, srv.Addr(), "PUT /v1/instances/i-1/heartbeat HTTP/1.1\r\nHost: x\r\n\r\n"); status != http.StatusBadRequest {
		t.Fatalf("a plain heartbeat to the TLS port: %d %s", status, body)
	}
	if _, _, err := tlsGet(t, srv.URL()+"/livez", &tls.Config{}); err == nil {
		t.Fatal("a client that does not trust the CA completed its handshake")
	}
	// The SDK and the CLI's way: the CA from MUSTER_CACERT.
	tlsCfg, err := client.TLSFromEnv(func(k string) string {
		if k == client.EnvCACert {
			return ca.File
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{Addr: srv.URL(), Token: "ma_tls-test-admin-token", TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateKey(context.Background(), []string{"web"}, ""); err != nil {
		t.Fatalf("a key created over TLS: %v", err)
	}
	// Renewal: the files replaced (certificate first, then its key, as
	// a renewal tool writes them); new connections get the new one.
	newCert, newKey := ca.IssuePEM(t, "api")
	testutil.WriteFile(t, certFile, newCert, 0o644)
	testutil.WriteFile(t, keyFile, newKey, 0o600)
	testserver.Eventually(t, 10*time.Second, "the renewed certificate to be served", func() bool {
		code, serial, err := tlsGet(t, srv.URL()+"/livez", &tls.Config{RootCAs: pool(ca)})
		return err == nil && code == 200 && serial.Cmp(first) != 0
	})
}

// TestHTTPTLS_ClientCertificates: with --http-tls-client-ca, a client
// without a certificate, or with one another CA signed, is refused in
// its handshake, before any request; one with a certificate the client
// CA signed is served, through the SDK's MUSTER_CLIENT_CERT and
// MUSTER_CLIENT_KEY too.
func TestHTTPTLS_ClientCertificates(t *testing.T) {
	serverCA, clientCA, stranger := testutil.NewTestCA(t, "server-ca"), testutil.NewTestCA(t, "client-ca"), testutil.NewTestCA(t, "stranger-ca")
	dir := t.TempDir()
	certFile, keyFile := serverCA.Issue(t, dir, "api")
	srv := testserver.Start(t, func(c *server.Config) {
		c.HTTPTLS = server.HTTPTLS{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCA.File}
	})
	url := srv.URL() + "/v1/services"
	if _, _, err := tlsGet(t, url, &tls.Config{RootCAs: pool(serverCA)}); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	for name, ca := range map[string]*testutil.TestCA{"stranger": stranger, "client": clientCA} {
		cp, kp := ca.IssuePEM(t, name)
		pair, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			t.Fatal(err)
		}
		code, _, err := tlsGet(t, url, &tls.Config{RootCAs: pool(serverCA), Certificates: []tls.Certificate{pair}})
		if name == "stranger" && err == nil {
			t.Fatalf("a client certificate of another CA was served: %d", code)
		}
		if name == "client" && (err != nil || code != 200) {
			t.Fatalf("a client certificate of the client CA: %d, %v", code, err)
		}
	}
	clientCert, clientKey := clientCA.Issue(t, t.TempDir(), "sdk")
	env := map[string]string{client.EnvCACert: serverCA.File, client.EnvClientCert: clientCert, client.EnvClientKey: clientKey}
	tlsCfg, err := client.TLSFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{Addr: srv.URL(), TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Services(context.Background()); err != nil {
		t.Fatalf("the SDK with a client certificate: %v", err)
	}
}

// TestHTTPTLS_Refusals: a start with half a TLS configuration, a key
// others may read, or files that do not hold a matching pair fails, says
// why, and leaves a new data dir unwritten.
func TestHTTPTLS_Refusals(t *testing.T) {
	ca := testutil.NewTestCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, dir, "api")
	_, otherKey := ca.Issue(t, dir, "other")
	looseKey := filepath.Join(dir, "loose-key.pem")
	b, _ := os.ReadFile(keyFile)
	os.WriteFile(looseKey, b, 0o644)
	for name, c := range map[string]struct {
		tls  server.HTTPTLS
		want string
	}{
		"cert without key":      {server.HTTPTLS{CertFile: certFile}, "both"},
		"client CA without TLS": {server.HTTPTLS{ClientCAFile: ca.File}, "need the API served over TLS"},
		"loose key":             {server.HTTPTLS{CertFile: certFile, KeyFile: looseKey}, "chmod 600"},
		"key of another":        {server.HTTPTLS{CertFile: certFile, KeyFile: otherKey}, "private key does not match"},
		"client CA not PEM":     {server.HTTPTLS{CertFile: certFile, KeyFile: keyFile, ClientCAFile: keyFile}, "no PEM certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testserver.Config(t)
			cfg.DataDir = filepath.Join(t.TempDir(), "data")
			cfg.HTTPTLS = c.tls
			s, err := server.New(cfg)
			if err == nil {
				err = s.Start(context.Background())
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("start: %v, want an error saying %q", err, c.want)
			}
			if name == "loose key" && !errors.Is(err, durable.ErrNotPrivate) {
				t.Fatalf("a loose key: %v", err)
			}
			if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the failed start wrote the data dir: %v", err)
			}
		})
	}
}

// TestServer_AddressInUseSaysSo: a start on an address another program
// holds says which address, which flag, and what to do, once.
func TestServer_AddressInUseSaysSo(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	for flag, mutate := range map[string]func(*server.Config){
		"--http-addr": func(c *server.Config) { c.HTTPAddr = addr },
		"--dns-addr":  func(c *server.Config) { c.DNS.Addr = addr },
	} {
		cfg := testserver.Config(t)
		mutate(&cfg)
		s, err := server.New(cfg)
		if err == nil {
			err = s.Start(context.Background())
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "is in use") || !strings.Contains(err.Error(), flag) ||
			strings.Count(err.Error(), addr) != 1 || !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("%s in use: %v", flag, err)
		}
	}
}

// TestVerify_HTTPSCallback: an instance that asks to be called back over
// https is registered only when its certificate chains to the CA the
// registry was given (--verify-ca); without it, or with a certificate of
// another CA, the callback fails on the certificate, which the log says.
func TestVerify_HTTPSCallback(t *testing.T) {
	ca, other := testutil.NewTestCA(t, "instances-ca"), testutil.NewTestCA(t, "other-ca")
	for _, c := range []struct {
		name       string
		verifyCA   string
		instanceCA *testutil.TestCA
		anyCert    bool // the key's callback_tls is any
		ok         bool
	}{
		{"system roots", "", ca, false, false},
		{"the instance's CA", ca.File, ca, false, true},
		{"another CA", other.File, ca, false, false},
		{"a key that accepts any certificate", other.File, ca, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := testserver.NewHarness(t, func(cfg *server.Config) { cfg.VerifyCAFile = c.verifyCA })
			k := h.Key(t, "web")
			if c.anyCert {
				var err error
				if k, err = h.Admin.NewKey(context.Background(), api.CreateKeyRequest{Services: []string{"web"}, CallbackTLS: "any"}); err != nil {
					t.Fatal(err)
				}
				keys, err := h.Admin.Keys(context.Background())
				if err != nil || !slices.ContainsFunc(keys, func(l api.Key) bool { return l.ID == k.ID && l.CallbackTLS == "any" }) {
					t.Fatalf("the key's listing does not say it accepts any certificate: %+v, %v", keys, err)
				}
			}
			inst := testutil.NewTLSInstance(t, k.Secret, verify.Proof, c.instanceCA)
			reg, err := h.Anon.Register(context.Background(), "web", k.Secret,
				api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), Scheme: "https"})
			if c.ok {
				if err != nil || inst.TokenOf(reg.ID) == "" {
					t.Fatalf("registration over https with the CA trusted: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("registered although the instance's certificate is not trusted")
			}
			if !strings.Contains(h.Logs.String(), "reason=bad_certificate") {
				t.Fatalf("the log does not say the certificate was not trusted:\n%s", h.Logs.String())
			}
		})
	}
}

// TestKeys_CallbackTLSRefused: a key's callback_tls is verify or any;
// anything else is a 400 naming the field.
func TestKeys_CallbackTLSRefused(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	_, err := h.Admin.NewKey(context.Background(), api.CreateKeyRequest{Services: []string{"web"}, CallbackTLS: "maybe"})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 400 || ce.Field != "callback_tls" {
		t.Fatalf("callback_tls maybe: %v", err)
	}
	k, err := h.Admin.NewKey(context.Background(), api.CreateKeyRequest{Services: []string{"web"}, CallbackTLS: "verify"})
	if err != nil || k.CallbackTLS != "" {
		t.Fatalf("callback_tls verify (the default): %+v, %v", k, err)
	}
}

// TestServer_BadImportedCARefusedBeforeWriting: a start whose --ca-cert
// is not a CA's certificate (here a leaf's) fails, says so, and leaves a
// new data dir unwritten: no admin token, no audit trail.
func TestServer_BadImportedCARefusedBeforeWriting(t *testing.T) {
	ca := testutil.NewTestCA(t, "ca")
	certFile, keyFile := ca.Issue(t, t.TempDir(), "leaf")
	cfg := testserver.Config(t)
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.CACertFile, cfg.CAKeyFile = certFile, keyFile
	s, err := server.New(cfg)
	if err == nil {
		err = s.Start(context.Background())
		s.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "CA") {
		t.Fatalf("start with a leaf as --ca-cert: %v, want an error about the CA", err)
	}
	if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the failed start wrote the data dir: %v", err)
	}
}
