package checks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/testutil"
)

// caCert returns a certificate of ca's for 127.0.0.1, ::1 and localhost,
// changed first by edit if it is not nil.
func caCert(tb testing.TB, ca *testutil.TestCA, edit func(*x509.Certificate)) tls.Certificate {
	tb.Helper()
	certPEM, keyPEM := ca.IssueWith(tb, "instance", edit)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return pair
}

// selfSigned returns a self-signed certificate for 127.0.0.1 and
// localhost, as an instance without a CA makes one.
func selfSigned(tb testing.TB) tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "self"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serveHTTPS starts h over TLS with cert on 127.0.0.1, port 0 (HTTP/1.1
// only), and returns its port.
func serveHTTPS(tb testing.TB, cert tls.Certificate, h http.Handler, edit func(*tls.Config)) int {
	tb.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if edit != nil {
		edit(srv.TLS)
	}
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	_, port := hostPort(tb, srv.Listener.Addr().String())
	return port
}

// rootsOf returns a Roots function that trusts ca.
func rootsOf(ca *testutil.TestCA) func() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return func() *x509.CertPool { return pool }
}

// TestProber_httpsHTTP: an https instance's HTTP check passes when its
// certificate chains to the registry's CA and names its address, or when
// its key accepts any certificate; otherwise it fails on the
// certificate, and the output says why.
func TestProber_httpsHTTP(t *testing.T) {
	ca := testutil.NewTestCA(t, "instances-ca")
	var gotHost atomic.Value
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		switch r.URL.Path {
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/redirect":
			http.Redirect(w, r, "/", http.StatusFound)
		default:
			io.WriteString(w, "ok")
		}
	})
	good := serveHTTPS(t, caCert(t, ca, nil), handler, nil)
	self := serveHTTPS(t, selfSigned(t), handler, nil)
	expired := serveHTTPS(t, caCert(t, ca, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	}), handler, nil)
	old := serveHTTPS(t, caCert(t, ca, nil), handler, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS11 })
	_, plain := serveHTTP(t, handler)

	verifying, system := newProber(guard(t), rootsOf(ca)), newProber(guard(t), nil)
	for _, tc := range []struct {
		name   string
		p      *prober
		t      Target
		path   string
		ok     bool
		output string
	}{
		{"the registry's CA", verifying, Target{Port: good}, "/", true, "HTTP 200 OK"},
		{"the registry's CA, by name", verifying, Target{Port: good, ServerName: "localhost"}, "/", true, "HTTP 200 OK"},
		{"an error answer", verifying, Target{Port: good}, "/down", false, "HTTP 503 Service Unavailable"},
		{"a redirect", verifying, Target{Port: good}, "/redirect", false, "HTTP 302: redirects are not followed"},
		{"another name", verifying, Target{Port: good, ServerName: "db.example"}, "/", false, "tls: certificate is not valid for the instance's address"},
		{"self-signed", verifying, Target{Port: self}, "/", false, "tls: certificate signed by unknown authority"},
		{"self-signed, any certificate", verifying, Target{Port: self, AnyCertificate: true}, "/", true, "HTTP 200 OK"},
		{"the system's roots", system, Target{Port: good}, "/", false, "tls: certificate signed by unknown authority"},
		{"expired", verifying, Target{Port: expired}, "/", false, "tls: certificate has expired or is not yet valid"},
		{"TLS 1.1 only", verifying, Target{Port: old}, "/", false, "tls: handshake refused by the instance"},
		{"TLS 1.1 only, any certificate", verifying, Target{Port: old, AnyCertificate: true}, "/", false, "tls: handshake refused by the instance"},
		{"not TLS", verifying, Target{Port: plain}, "/", false, "tls: handshake failed: not a TLS server?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.t.Address, tc.t.Scheme = "127.0.0.1", "https"
			gotHost.Store("")
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			res := tc.p.probe(ctx, tc.t, httpCheck(tc.path, time.Second, time.Second))
			if res.ok != tc.ok || res.output != tc.output {
				t.Errorf("probe = %v %q, want %v %q", res.ok, res.output, tc.ok, tc.output)
			}
			if want := tc.t.ServerName; tc.ok && want != "" {
				if got, _ := gotHost.Load().(string); !strings.HasPrefix(got, want+":") {
					t.Errorf("the instance saw Host %q, want %s:port", got, want)
				}
			}
		})
	}
	// A TCP check of an https instance only connects: no handshake.
	tcp := Check{Type: api.CheckTCP, Interval: time.Second, Timeout: time.Second}
	if res := verifying.probe(context.Background(), Target{Address: "127.0.0.1", Port: self, Scheme: "https"}, tcp); !res.ok {
		t.Errorf("tcp check of an https instance: %q", res.output)
	}
}

// serveGRPCTLS starts a grpc-go server over TLS with cert, serving the
// standard health service (the whole server SERVING), and returns its
// port.
func serveGRPCTLS(tb testing.TB, cert tls.Certificate) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	tb.Cleanup(func() {
		s.Stop()
		<-done
	})
	_, port := hostPort(tb, ln.Addr().String())
	return port
}

// serveTLSWithoutALPN accepts TLS connections on 127.0.0.1, port 0,
// with a server that knows no ALPN protocol (so agrees to none), and
// closes each after its handshake. It returns its port.
func serveTLSWithoutALPN(tb testing.TB, cert tls.Certificate) int {
	tb.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
	})
	_, port := hostPort(tb, ln.Addr().String())
	return port
}

// TestProber_httpsGRPC: an https instance's gRPC check speaks HTTP/2 over
// TLS (ALPN h2) to grpc-go's health server, judging its certificate as
// the HTTP check does.
func TestProber_httpsGRPC(t *testing.T) {
	ca := testutil.NewTestCA(t, "instances-ca")
	good := serveGRPCTLS(t, caCert(t, ca, nil))
	self := serveGRPCTLS(t, selfSigned(t))
	_, plain := serveGRPC(t, false)
	h1 := serveTLSWithoutALPN(t, caCert(t, ca, nil))
	p := newProber(guard(t), rootsOf(ca))
	for _, tc := range []struct {
		name   string
		t      Target
		ok     bool
		output string
	}{
		{"the registry's CA", Target{Port: good}, true, "SERVING"},
		{"the registry's CA, by name", Target{Port: good, ServerName: "localhost"}, true, "SERVING"},
		{"another name", Target{Port: good, ServerName: "db.example"}, false, "tls: certificate is not valid for the instance's address"},
		{"self-signed", Target{Port: self}, false, "tls: certificate signed by unknown authority"},
		{"self-signed, any certificate", Target{Port: self, AnyCertificate: true}, true, "SERVING"},
		{"cleartext gRPC", Target{Port: plain}, false, "tls: handshake failed: not a TLS server?"},
		{"HTTPS without HTTP/2", Target{Port: h1}, false, "no gRPC answer: the instance did not negotiate HTTP/2 (ALPN h2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.t.Address, tc.t.Scheme = "127.0.0.1", "https"
			c := Check{Type: api.CheckGRPC, Interval: time.Second, Timeout: time.Second}
			ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
			defer cancel()
			if res := p.probe(ctx, tc.t, c); res.ok != tc.ok || res.output != tc.output {
				t.Errorf("probe = %v %q, want %v %q", res.ok, res.output, tc.ok, tc.output)
			}
		})
	}
}

// TestProber_httpsTimeout: a TLS handshake with a server that never
// answers ends at the check's timeout.
func TestProber_httpsTimeout(t *testing.T) {
	s := listenSilent(t)
	const timeout = 200 * time.Millisecond
	p := newProber(guard(t), nil)
	for _, c := range []Check{httpCheck("/", time.Second, timeout), {Type: api.CheckGRPC, Interval: time.Second, Timeout: timeout}} {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		res := p.probe(ctx, Target{Address: "127.0.0.1", Port: s.port(t), Scheme: "https"}, c)
		cancel()
		if took := time.Since(start); res.ok || res.output != "timed out after 200ms" || took > timeout+time.Second {
			t.Errorf("%s: probe = %v %q after %s", c.Type, res.ok, res.output, took)
		}
	}
}

// TestMonitor_https: the Monitor hands an https target's TLS settings to
// its probes: a check of a self-signed instance turns critical, with the
// certificate's fault as its output, unless the target accepts any
// certificate.
func TestMonitor_https(t *testing.T) {
	ca := testutil.NewTestCA(t, "instances-ca")
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	good := serveHTTPS(t, caCert(t, ca, nil), ok, nil)
	self := serveHTTPS(t, selfSigned(t), ok, nil)
	m, err := NewMonitor(Config{Concurrency: 4, MinInterval: 10 * time.Millisecond, Roots: rootsOf(ca)}, guard(t))
	if err != nil {
		t.Fatal(err)
	}
	c := httpCheck("/", 20*time.Millisecond, 20*time.Millisecond)
	c.FailuresBeforeCritical = 1
	for _, tg := range []Target{
		{ID: "good", Address: "127.0.0.1", ServerName: "localhost", Port: good, Scheme: "https", Checks: []Check{c}},
		{ID: "self", Address: "127.0.0.1", Port: self, Scheme: "https", Checks: []Check{c}},
		{ID: "self-any", Address: "127.0.0.1", Port: self, Scheme: "https", AnyCertificate: true, Checks: []Check{c}},
	} {
		if err := m.Set(tg); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "self critical", func() bool {
		p := m.Pending()
		return len(p) == 1 && p[0] == Transition{ID: "self", Status: api.StatusCritical}
	})
	want := map[string]api.CheckState{
		"good":     {Type: "http", Status: "passing", Output: "HTTP 200 OK"},
		"self":     {Type: "http", Status: "critical", Output: "tls: certificate signed by unknown authority"},
		"self-any": {Type: "http", Status: "passing", Output: "HTTP 200 OK"},
	}
	for id, w := range want {
		waitFor(t, 5*time.Second, id+"'s output", func() bool { return len(m.States(id)) == 1 && m.States(id)[0].Output != "" })
		if got := m.States(id)[0]; got.Type != w.Type || got.Status != w.Status || got.Output != w.Output {
			t.Errorf("%s: %+v, want %+v", id, got, w)
		}
	}
}
