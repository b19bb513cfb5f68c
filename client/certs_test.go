package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
)

// certService is an SDK service that keeps a certificate: its verify
// handler on a plain-HTTP listener of its own (VerifyPort), and, when
// serve is set, its API over TLS with the Registration's TLSConfig.
type certService struct {
	reg  *client.Registration
	addr string // of the TLS listener, when serving
}

func startCertService(t *testing.T, h *testserver.Harness, name string, serve http.Handler, allowedClients ...string) *certService {
	t.Helper()
	k := h.Key(t, name)
	verifyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := client.ServiceConfig{
		Name: name, Address: "127.0.0.1", Port: appLn.Addr().(*net.TCPAddr).Port, Scheme: "https",
		VerifyPort: verifyLn.Addr().(*net.TCPAddr).Port, VerifyScheme: "http",
		TTL: 3 * time.Second, Registry: h.Srv.URL(), Key: k.Secret, Certificate: true, DrainDelay: -1,
		Logger: testutil.Logger(t),
	}
	reg, err := client.NewRegistration(cfg)
	if err != nil {
		t.Fatal(err)
	}
	vs := &http.Server{Handler: reg.VerifyHandler()}
	go vs.Serve(verifyLn)
	t.Cleanup(func() { vs.Close() })
	s := &certService{reg: reg}
	if serve != nil {
		as := &http.Server{Handler: serve, TLSConfig: reg.TLSConfig(allowedClients...), ErrorLog: nil}
		go as.ServeTLS(appLn, "", "")
		t.Cleanup(func() { as.Close() })
		s.addr = appLn.Addr().String()
	} else {
		appLn.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := reg.WaitCertificate(wctx); err != nil {
		t.Fatalf("%s got no certificate: %v (registration: %v)", name, err, reg.Err())
	}
	return s
}

// whoAmI answers with the SPIFFE ID of the client's certificate.
var whoAmI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, r.TLS.PeerCertificates[0].URIs[0].String())
})

// TestRegistration_MTLS: two SDK services authenticate each other with
// the registry's certificates. A server that accepts only dice_scraper
// callers answers dice_scraper's MTLSTransport and refuses word_counter's
// certificate; a client that expects another service refuses the server;
// a client without a certificate is refused; and the certificate is
// renewed after the instance registers again under a new ID.
func TestRegistration_MTLS(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	server := startCertService(t, h, "fetch_url", whoAmI, "dice_scraper")
	dice := startCertService(t, h, "dice_scraper", nil)
	words := startCertService(t, h, "word_counter", nil)
	res, err := client.NewResolver(client.ResolverConfig{Client: h.Anon, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	get := func(rt http.RoundTripper) (string, error) {
		hc := &http.Client{Transport: rt, Timeout: 5 * time.Second}
		resp, err := hc.Get("https://fetch_url/whoami")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	got, err := get(dice.reg.MTLSTransport(res))
	if err != nil || got != "spiffe://muster.local/svc/dice_scraper" {
		t.Fatalf("dice_scraper to fetch_url: %q, %v", got, err)
	}
	if got, err := get(dice.reg.MTLSTransport(res, "fetch_url", "other")); err != nil || got == "" {
		t.Errorf("dice_scraper allowing fetch_url among others: %q, %v", got, err)
	}
	if got, err := get(words.reg.MTLSTransport(res)); err == nil {
		t.Errorf("word_counter reached a server that accepts only dice_scraper: %q", got)
	}
	if got, err := get(dice.reg.MTLSTransport(res, "word_counter")); err == nil || !strings.Contains(err.Error(), `"fetch_url"`) {
		t.Errorf("dice_scraper expecting word_counter accepted fetch_url: %q, %v", got, err)
	}
	anon := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	if resp, err := (&http.Client{Transport: anon, Timeout: 5 * time.Second}).Get("https://" + server.addr + "/whoami"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate was answered %d", resp.StatusCode)
	}
	if _, err := (&http.Client{Transport: dice.reg.MTLSTransport(res)}).Get("https://example.com/"); !errors.Is(err, client.ErrNotServiceName) {
		t.Errorf("a host that is no service: %v, want ErrNotServiceName", err)
	}

	// Registered again under a new ID (the registry forgot the
	// instance), the service gets a new certificate and goes on.
	first, _ := dice.reg.Certificate()
	oldID := dice.reg.State().InstanceID
	if err := h.Admin.Deregister(context.Background(), oldID, ""); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 15*time.Second, "a new certificate after registering again", func() bool {
		c, err := dice.reg.Certificate()
		return err == nil && c != first && dice.reg.State().InstanceID != oldID
	})
	if got, err := get(dice.reg.MTLSTransport(res)); err != nil || got != "spiffe://muster.local/svc/dice_scraper" {
		t.Errorf("after renewal: %q, %v", got, err)
	}
}
