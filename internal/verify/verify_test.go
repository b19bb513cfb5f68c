package verify_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/verify"
)

// keySecret is the enrolment key secret every test instance proves.
const keySecret = "mk_test-secret"

// request returns the callback body the registry sends.
func request() api.VerifyRequest {
	return api.VerifyRequest{
		Service:    "web",
		InstanceID: "0123456789abcdef",
		Challenge:  "challenge-Zm9vYmFy",
		Nonce:      "nonce-42",
		Token:      "session-token",
	}
}

// instance is a real HTTP server on 127.0.0.1 standing in for a service
// instance; it counts the requests it receives.
type instance struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func serve(tb testing.TB, h http.HandlerFunc) *instance {
	tb.Helper()
	in := &instance{}
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.hits.Add(1)
		h(w, r)
	}))
	tb.Cleanup(in.srv.Close)
	return in
}

// target returns the callback target of a server started by serve.
func target(tb testing.TB, srv *httptest.Server) verify.Target {
	tb.Helper()
	ap, err := netip.ParseAddrPort(srv.Listener.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	return verify.Target{Scheme: "http", Address: ap.Addr().String(), Port: int(ap.Port()), Path: api.DefaultVerifyPath}
}

// pin returns tgt with the address the registry pins (DialIP): its
// Address, an IP. A plain-HTTP callback to a pinned address may use a
// kept connection; one without gets a connection of its own.
func pin(tgt verify.Target) verify.Target {
	tgt.DialIP = netip.MustParseAddr(tgt.Address)
	return tgt
}

// paths are the two ways a callback goes: over a connection of its own
// ("fresh"), and pinned, over a kept connection when there is one
// ("kept"), which is how the registry calls every plain-HTTP instance.
var paths = []struct {
	name  string
	apply func(verify.Target) verify.Target
}{
	{"fresh", func(tgt verify.Target) verify.Target { return tgt }},
	{"kept", pin},
}

// newVerifier returns a verifier with the default config changed by mod.
func newVerifier(tb testing.TB, mod func(*verify.Config)) *verify.Verifier {
	tb.Helper()
	cfg := verify.DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	v, err := verify.New(cfg)
	if err != nil {
		tb.Fatalf("verify.New: %v", err)
	}
	return v
}

// hmacProof is the proof computed independently of package verify.
func hmacProof(secret, challenge string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(challenge))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// answer is the handler of a well-behaved instance that proves secret and
// echoes the nonce.
func answer(secret string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req api.VerifyRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.VerifyResponse{Proof: hmacProof(secret, req.Challenge), Nonce: req.Nonce})
	}
}

// reply is a handler answering status and body whatever the request.
func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// reason returns the Reason of a *verify.Error, "" for nil, and fails tb
// for any other error.
func reason(tb testing.TB, err error) string {
	tb.Helper()
	if err == nil {
		return ""
	}
	var ve *verify.Error
	if !errors.As(err, &ve) {
		tb.Fatalf("error %v (%T) is not a *verify.Error", err, err)
	}
	if !strings.Contains(err.Error(), ve.Reason) {
		tb.Errorf("Error() = %q does not name the reason %q", err.Error(), ve.Reason)
	}
	return ve.Reason
}

// closedPort returns a 127.0.0.1 port nothing listens on.
func closedPort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// TestVerifier_Verify_noEnvProxy must stay the first test to call Verify in
// this package: net/http reads the proxy environment once per process, so a
// verifier that wrongly used it would only be caught by the first call.
func TestVerifier_Verify_noEnvProxy(t *testing.T) {
	proxy := "http://127.0.0.1:" + strconv.Itoa(closedPort(t))
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"} {
		t.Setenv(k, proxy)
	}
	for _, k := range []string{"NO_PROXY", "no_proxy"} {
		t.Setenv(k, "")
	}

	t.Run("loopback", func(t *testing.T) {
		in := serve(t, answer(keySecret))
		if err := newVerifier(t, nil).Verify(context.Background(), target(t, in.srv), request(), keySecret); err != nil {
			t.Errorf("Verify with HTTP_PROXY set: %v", err)
		}
	})

	// Go never proxies loopback addresses, so only a non-loopback address
	// shows that the verifier ignores the environment.
	t.Run("non-loopback", func(t *testing.T) {
		addr, ok := nonLoopbackAddr(t)
		if !ok {
			t.Skip("no non-loopback IPv4 address on this host")
		}
		ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		if err != nil {
			t.Skipf("cannot listen on %s: %v", addr, err)
		}
		srv := httptest.NewUnstartedServer(answer(keySecret))
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		t.Cleanup(srv.Close)
		v := newVerifier(t, func(c *verify.Config) { c.Allow = []netip.Prefix{netip.PrefixFrom(addr, 32)} })
		if err := v.Verify(context.Background(), target(t, srv), request(), keySecret); err != nil {
			t.Errorf("Verify to %s with HTTP_PROXY=%s: %v", addr, proxy, err)
		}
	})
}

func nonLoopbackAddr(tb testing.TB) (netip.Addr, bool) {
	tb.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		if ip := p.Addr(); ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func TestVerifier_Verify(t *testing.T) {
	req := request()
	good := hmacProof(keySecret, req.Challenge)
	jsonBody := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		cfg        func(*verify.Config)
		wantReason string // "" means success
	}{
		{name: "good proof", handler: answer(keySecret)},
		{name: "good proof without nonce", handler: reply(200, jsonBody(api.VerifyResponse{Proof: good}))},
		{name: "good proof with unknown fields", handler: reply(200, `{"proof":"`+good+`","version":2}`)},
		{name: "bad proof", handler: answer("another-secret"), wantReason: api.ReasonBadProof},
		// No proof at all: any service's answer, not the protocol's.
		{name: "empty proof", handler: reply(200, `{}`), wantReason: api.ReasonBadResponse},
		{name: "null answer", handler: reply(200, `null`), wantReason: api.ReasonBadResponse},
		{name: "a catch-all status answer", handler: reply(200, `{"status":"ok"}`), wantReason: api.ReasonBadResponse},
		{name: "a proof that is wrong", handler: reply(200, `{"proof":"AAAA"}`), wantReason: api.ReasonBadProof},
		{name: "proof of another challenge", handler: reply(200, jsonBody(api.VerifyResponse{Proof: hmacProof(keySecret, "other")})), wantReason: api.ReasonBadProof},
		{name: "unpadded proof", handler: reply(200, jsonBody(api.VerifyResponse{Proof: strings.TrimRight(good, "=")})), wantReason: api.ReasonBadProof},
		{name: "hex proof", handler: reply(200, jsonBody(api.VerifyResponse{Proof: hexProof(keySecret, req.Challenge)})), wantReason: api.ReasonBadProof},
		{name: "nonce mismatch", handler: reply(200, jsonBody(api.VerifyResponse{Proof: good, Nonce: "other"})), wantReason: api.ReasonNonceMismatch},
		{name: "nonce mismatch with bad proof", handler: reply(200, jsonBody(api.VerifyResponse{Proof: "x", Nonce: "other"})), wantReason: api.ReasonNonceMismatch},
		{name: "status 500", handler: reply(500, jsonBody(api.VerifyResponse{Proof: good})), wantReason: api.ReasonBadStatus},
		{name: "status 404", handler: reply(404, ""), wantReason: api.ReasonBadStatus},
		{name: "status 201", handler: reply(201, jsonBody(api.VerifyResponse{Proof: good})), wantReason: api.ReasonBadStatus},
		{name: "status 204", handler: reply(204, ""), wantReason: api.ReasonBadStatus},
		{name: "not json", handler: reply(200, "OK"), wantReason: api.ReasonBadResponse},
		{name: "json array", handler: reply(200, "[]"), wantReason: api.ReasonBadResponse},
		{name: "empty body", handler: reply(200, ""), wantReason: api.ReasonBadResponse},
		{name: "proof not a string", handler: reply(200, `{"proof":1}`), wantReason: api.ReasonBadResponse},
		{
			name:    "body exactly MaxBody",
			cfg:     func(c *verify.Config) { c.MaxBody = 256 },
			handler: reply(200, padTo(jsonBody(api.VerifyResponse{Proof: good}), 256)),
		},
		{
			name:       "body larger than MaxBody",
			cfg:        func(c *verify.Config) { c.MaxBody = 256 },
			handler:    reply(200, padTo(jsonBody(api.VerifyResponse{Proof: good}), 257)),
			wantReason: api.ReasonBadResponse,
		},
		{
			name:       "huge body",
			handler:    reply(200, `{"proof":"`+strings.Repeat("A", 1<<20)+`"}`),
			wantReason: api.ReasonBadResponse,
		},
		{
			name: "connection closed without an answer",
			handler: func(w http.ResponseWriter, r *http.Request) {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
			},
			wantReason: api.ReasonUnreachable,
		},
	}
	for _, tt := range tests {
		for _, path := range paths {
			t.Run(tt.name+"/"+path.name, func(t *testing.T) {
				t.Parallel()
				in := serve(t, tt.handler)
				v := newVerifier(t, tt.cfg)
				// Twice on one verifier: the second callback may use the
				// connection the first one left, and must come out the same.
				for i := int64(1); i <= 2; i++ {
					err := v.Verify(context.Background(), path.apply(target(t, in.srv)), req, keySecret)
					if got := reason(t, err); got != tt.wantReason {
						t.Errorf("callback %d: Verify reason = %q (%v), want %q", i, got, err, tt.wantReason)
					}
					if n := in.hits.Load(); n != i {
						t.Errorf("after callback %d the instance received %d requests, want %d", i, n, i)
					}
				}
			})
		}
	}
}

func hexProof(secret, challenge string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(challenge))
	return hex.EncodeToString(m.Sum(nil))
}

// padTo pads a JSON object with trailing spaces to n bytes.
func padTo(s string, n int) string {
	if len(s) > n {
		panic("padTo: too long")
	}
	return s + strings.Repeat(" ", n-len(s))
}

func TestVerifier_Verify_request(t *testing.T) {
	type seen struct {
		method, path, contentType, userAgent string
		body                                 api.VerifyRequest
	}
	var mu sync.Mutex
	var got []seen
	in := serve(t, func(w http.ResponseWriter, r *http.Request) {
		var s seen
		s.method, s.path, s.contentType, s.userAgent = r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("User-Agent")
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s.body); err != nil {
			t.Errorf("callback body: %v", err)
		}
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
		json.NewEncoder(w).Encode(api.VerifyResponse{Proof: hmacProof(keySecret, s.body.Challenge)})
	})
	tgt := target(t, in.srv)
	tgt.Path = "/custom/verify"
	if err := newVerifier(t, nil).Verify(context.Background(), tgt, request(), keySecret); err != nil {
		t.Fatal(err)
	}
	want := []seen{{http.MethodPost, "/custom/verify", "application/json", "muster-verify/1", request()}}
	if !slices.Equal(got, want) {
		t.Errorf("callbacks = %+v, want %+v", got, want)
	}
}

func TestVerifier_Verify_redirect(t *testing.T) {
	for _, code := range []int{301, 302, 303, 307, 308} {
		for _, path := range paths {
			t.Run(strconv.Itoa(code)+"/"+path.name, func(t *testing.T) {
				t.Parallel()
				elsewhere := serve(t, answer(keySecret))
				in := serve(t, func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, elsewhere.srv.URL+api.DefaultVerifyPath, code)
				})
				err := newVerifier(t, nil).Verify(context.Background(), path.apply(target(t, in.srv)), request(), keySecret)
				if got := reason(t, err); got != api.ReasonRedirect {
					t.Errorf("Verify reason = %q (%v), want redirect", got, err)
				}
				if n := elsewhere.hits.Load(); n != 0 {
					t.Errorf("redirect target received %d requests, want 0", n)
				}
				if n := in.hits.Load(); n != 1 {
					t.Errorf("instance received %d requests, want 1", n)
				}
			})
		}
	}
}

func TestVerifier_Verify_timeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	// stall serves a handler that holds until the client gives up, so that
	// nothing depends on how fast the test machine is. Reading the body
	// first lets the server notice the client's hang-up; the release on
	// cleanup (run before the server's Close) frees the handler regardless.
	stall := func(t *testing.T, before func(http.ResponseWriter)) *instance {
		release := make(chan struct{})
		in := serve(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			before(w)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		t.Cleanup(func() { close(release) })
		return in
	}
	tests := []struct {
		name   string
		before func(http.ResponseWriter)
	}{
		{"no headers", func(http.ResponseWriter) {}},
		{"headers then stall", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, `{"proof":"`)
			http.NewResponseController(w).Flush()
		}},
	}
	for _, tt := range tests {
		for _, path := range paths {
			t.Run(tt.name+"/"+path.name, func(t *testing.T) {
				t.Parallel()
				in := stall(t, tt.before)
				v := newVerifier(t, func(c *verify.Config) { c.Timeout = timeout })
				start := time.Now()
				err := v.Verify(context.Background(), path.apply(target(t, in.srv)), request(), keySecret)
				if got := reason(t, err); got != api.ReasonTimeout {
					t.Errorf("Verify reason = %q (%v), want timeout", got, err)
				}
				// Only a lower bound: the verifier must not give up early.
				if d := time.Since(start); d < timeout {
					t.Errorf("Verify returned after %v, before the %v timeout", d, timeout)
				}
			})
		}
	}
	for _, path := range paths {
		t.Run("caller's context/"+path.name, func(t *testing.T) {
			t.Parallel()
			in := stall(t, func(http.ResponseWriter) {})
			v := newVerifier(t, nil) // 2s timeout; the caller's deadline is shorter
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			err := v.Verify(ctx, path.apply(target(t, in.srv)), request(), keySecret)
			if got := reason(t, err); got != api.ReasonTimeout {
				t.Errorf("Verify reason = %q (%v), want timeout", got, err)
			}
		})
		t.Run("caller gone/"+path.name, func(t *testing.T) {
			t.Parallel()
			in := stall(t, func(http.ResponseWriter) {})
			v := newVerifier(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(timeout, cancel)
			start := time.Now()
			err := v.Verify(ctx, path.apply(target(t, in.srv)), request(), keySecret)
			if got := reason(t, err); got != api.ReasonUnreachable {
				t.Errorf("Verify reason = %q (%v), want unreachable (the caller went away; it is no timeout)", got, err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Verify returned %v after the caller went away", d-timeout)
			}
		})
	}
}

func TestVerifier_Verify_unreachable(t *testing.T) {
	tests := []struct {
		name string
		tgt  verify.Target
	}{
		{"closed port", verify.Target{Scheme: "http", Address: "127.0.0.1", Port: closedPort(t), Path: "/"}},
		{"unresolvable host", verify.Target{Scheme: "http", Address: "no-such-host.invalid", Port: 80, Path: "/"}},
		{"bad scheme", verify.Target{Scheme: "gopher", Address: "127.0.0.1", Port: closedPort(t), Path: "/"}},
		{"bad path", verify.Target{Scheme: "http", Address: "127.0.0.1", Port: closedPort(t), Path: "/%zz"}},
		{"bad path, pinned", pin(verify.Target{Scheme: "http", Address: "127.0.0.1", Port: closedPort(t), Path: "/%zz"})},
		{"closed port, pinned", pin(verify.Target{Scheme: "http", Address: "127.0.0.1", Port: closedPort(t), Path: "/"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newVerifier(t, func(c *verify.Config) { c.Timeout = time.Second }).Verify(context.Background(), tt.tgt, request(), keySecret)
			if got := reason(t, err); got != api.ReasonUnreachable {
				t.Errorf("Verify reason = %q (%v), want unreachable", got, err)
			}
		})
	}
}

func TestVerifier_Verify_allowlist(t *testing.T) {
	notLoopback := func(c *verify.Config) {
		c.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	tests := []struct {
		name    string
		address func(tgt verify.Target) string
	}{
		{"IP", func(tgt verify.Target) string { return tgt.Address }},
		{"host name", func(verify.Target) string { return "localhost" }},
		{"IPv4-mapped IPv6", func(tgt verify.Target) string { return "::ffff:" + tgt.Address }},
	}
	for _, tt := range tests {
		for _, pinned := range []bool{false, true} {
			name := tt.name
			if pinned {
				name += "/pinned"
			}
			t.Run(name, func(t *testing.T) {
				in := serve(t, answer(keySecret))
				tgt := target(t, in.srv)
				if pinned {
					tgt = pin(tgt)
				}
				tgt.Address = tt.address(tgt)
				err := newVerifier(t, notLoopback).Verify(context.Background(), tgt, request(), keySecret)
				if !errors.Is(err, verify.ErrNotAllowed) {
					t.Errorf("Verify to %s = %v, want ErrNotAllowed", tgt.Address, err)
				}
				var ve *verify.Error
				if errors.As(err, &ve) {
					t.Errorf("ErrNotAllowed came as a verification failure (%s)", ve.Reason)
				}
				if n := in.hits.Load(); n != 0 {
					t.Errorf("server outside the allowlist received %d requests", n)
				}
			})
		}
	}
	t.Run("host name inside", func(t *testing.T) {
		in := serve(t, answer(keySecret))
		tgt := target(t, in.srv)
		tgt.Address = "localhost"
		if err := newVerifier(t, nil).Verify(context.Background(), tgt, request(), keySecret); err != nil {
			t.Errorf("Verify to localhost with the default allowlist: %v", err)
		}
	})
}

func TestVerifier_Verify_concurrent(t *testing.T) {
	in := serve(t, answer(keySecret))
	v := newVerifier(t, nil)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := request()
			req.Challenge = fmt.Sprint("challenge-", i)
			secret := keySecret
			if i%2 == 1 {
				secret = "wrong"
			}
			tgt := target(t, in.srv)
			if i%4 < 2 {
				tgt = pin(tgt)
			}
			err := v.Verify(context.Background(), tgt, req, secret)
			if (err == nil) != (i%2 == 0) {
				t.Errorf("Verify %d = %v", i, err)
			}
		}()
	}
	wg.Wait()
}

func TestVerifier_CheckAddress(t *testing.T) {
	def := newVerifier(t, func(c *verify.Config) { c.Timeout = time.Second })
	narrow := newVerifier(t, func(c *verify.Config) {
		c.Timeout = time.Second
		c.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	tests := []struct {
		name       string
		v          *verify.Verifier
		host       string
		wantErr    error
		wantReason string
	}{
		{name: "loopback", v: def, host: "127.0.0.1"},
		{name: "loopback range", v: def, host: "127.8.9.10"},
		{name: "10/8", v: def, host: "10.1.2.3"},
		{name: "172.16/12", v: def, host: "172.31.255.255"},
		{name: "192.168/16", v: def, host: "192.168.0.1"},
		{name: "IPv6 loopback", v: def, host: "::1"},
		{name: "IPv6 ULA", v: def, host: "fd12:3456::1"},
		{name: "IPv4-mapped loopback", v: def, host: "::ffff:127.0.0.1"},
		{name: "localhost", v: def, host: "localhost"},

		{name: "public", v: def, host: "8.8.8.8", wantErr: verify.ErrNotAllowed},
		{name: "just outside 172.16/12", v: def, host: "172.32.0.1", wantErr: verify.ErrNotAllowed},
		{name: "cloud metadata", v: def, host: "169.254.169.254", wantErr: verify.ErrNotAllowed},
		{name: "IPv4-mapped metadata", v: def, host: "::ffff:169.254.169.254", wantErr: verify.ErrNotAllowed},
		{name: "unspecified", v: def, host: "0.0.0.0", wantErr: verify.ErrNotAllowed},
		{name: "IPv6 unspecified", v: def, host: "::", wantErr: verify.ErrNotAllowed},
		{name: "IPv6 link-local", v: def, host: "fe80::1", wantErr: verify.ErrNotAllowed},
		{name: "IPv6 link-local with zone", v: def, host: "fe80::1%lo", wantErr: verify.ErrNotAllowed},
		{name: "public IPv6", v: def, host: "2001:4860:4860::8888", wantErr: verify.ErrNotAllowed},
		{name: "broadcast", v: def, host: "255.255.255.255", wantErr: verify.ErrNotAllowed},

		{name: "narrow: inside", v: narrow, host: "10.0.0.1"},
		{name: "narrow: loopback", v: narrow, host: "127.0.0.1", wantErr: verify.ErrNotAllowed},
		{name: "narrow: localhost", v: narrow, host: "localhost", wantErr: verify.ErrNotAllowed},

		{name: "unresolvable", v: def, host: "no-such-host.invalid", wantReason: api.ReasonUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.CheckAddress(context.Background(), tt.host)
			switch {
			case tt.wantReason != "":
				if got := reason(t, err); got != tt.wantReason {
					t.Errorf("CheckAddress(%q) reason = %q (%v), want %q", tt.host, got, err, tt.wantReason)
				}
			case !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil):
				t.Errorf("CheckAddress(%q) = %v, want %v", tt.host, err, tt.wantErr)
			}
			if ip, perr := netip.ParseAddr(tt.host); perr == nil {
				if got := tt.v.Allowed(ip); got != (tt.wantErr == nil) {
					t.Errorf("Allowed(%s) = %v, want %v", ip, got, tt.wantErr == nil)
				}
			}
		})
	}
}

func TestParseAllow(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name    string
		in      []string
		want    []netip.Prefix
		wantErr bool
	}{
		{name: "nil", in: nil, want: nil},
		{name: "empty strings skipped", in: []string{"", ""}, want: nil},
		{name: "prefix", in: []string{"10.0.0.0/8"}, want: []netip.Prefix{p("10.0.0.0/8")}},
		{name: "prefix is masked", in: []string{"10.1.2.3/8"}, want: []netip.Prefix{p("10.0.0.0/8")}},
		{name: "address", in: []string{"192.0.2.7"}, want: []netip.Prefix{p("192.0.2.7/32")}},
		{name: "IPv6 address", in: []string{"::1"}, want: []netip.Prefix{p("::1/128")}},
		{name: "IPv6 prefix", in: []string{"fd00::1/8"}, want: []netip.Prefix{p("fd00::/8")}},
		{name: "several in order", in: []string{"10.0.0.0/8", "", "::1"}, want: []netip.Prefix{p("10.0.0.0/8"), p("::1/128")}},
		{name: "everything", in: []string{"0.0.0.0/0"}, want: []netip.Prefix{p("0.0.0.0/0")}},

		{name: "garbage", in: []string{"nonsense"}, wantErr: true},
		{name: "prefix too long", in: []string{"10.0.0.0/33"}, wantErr: true},
		{name: "negative prefix", in: []string{"10.0.0.0/-1"}, wantErr: true},
		{name: "host name", in: []string{"localhost"}, wantErr: true},
		{name: "bad octet", in: []string{"256.0.0.1"}, wantErr: true},
		{name: "unsplit list", in: []string{"10.0.0.0/8,192.168.0.0/16"}, wantErr: true},
		{name: "surrounding space is trimmed", in: []string{" 10.0.0.0/8 ", "192.168.0.0/16"}, want: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.0/16")}},
		{name: "one bad among good", in: []string{"10.0.0.0/8", "bad"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := verify.ParseAllow(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseAllow(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				if got != nil {
					t.Errorf("ParseAllow returned %v with an error", got)
				}
				if !strings.Contains(err.Error(), "verify: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseAllow(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestProof(t *testing.T) {
	tests := []struct{ secret, challenge string }{
		{keySecret, request().Challenge},
		{"", ""},
		{"k", strings.Repeat("c", 1000)},
		{strings.Repeat("s", 200), "longer than the block size"},
	}
	for _, tt := range tests {
		if got, want := verify.Proof(tt.secret, tt.challenge), hmacProof(tt.secret, tt.challenge); got != want {
			t.Errorf("Proof(%q, %q) = %s, want %s", tt.secret, tt.challenge, got, want)
		}
	}
	// RFC 4231 test case 2.
	want, _ := hex.DecodeString("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
	if got := verify.Proof("Jefe", "what do ya want for nothing?"); got != base64.StdEncoding.EncodeToString(want) {
		t.Errorf("Proof(RFC 4231 case 2) = %s", got)
	}
	if got := verify.Proof("a", "b"); len(got) != 44 || !strings.HasSuffix(got, "=") {
		t.Errorf("Proof = %q, want 44 characters of padded standard base64", got)
	}
}

func TestConfig_Validate(t *testing.T) {
	ok := verify.DefaultConfig()
	tests := []struct {
		name    string
		mod     func(*verify.Config)
		wantErr bool
	}{
		{"default", func(*verify.Config) {}, false},
		{"zero timeout", func(c *verify.Config) { c.Timeout = 0 }, true},
		{"negative timeout", func(c *verify.Config) { c.Timeout = -time.Second }, true},
		{"zero max body", func(c *verify.Config) { c.MaxBody = 0 }, true},
		{"empty allowlist", func(c *verify.Config) { c.Allow = nil }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			cfg.Allow = slices.Clone(ok.Allow)
			tt.mod(&cfg)
			err := cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
			if _, nerr := verify.New(cfg); (nerr != nil) != tt.wantErr {
				t.Errorf("New() = %v, wantErr %v", nerr, tt.wantErr)
			}
		})
	}
	if ok.Timeout != 2*time.Second || ok.MaxBody != 64<<10 {
		t.Errorf("DefaultConfig() = %+v, want 2s and 64 KiB", ok)
	}
}

func TestDefaultAllow(t *testing.T) {
	p := netip.MustParsePrefix
	want := []netip.Prefix{p("127.0.0.0/8"), p("::1/128"), p("10.0.0.0/8"), p("172.16.0.0/12"), p("192.168.0.0/16"), p("fc00::/7")}
	got := verify.DefaultAllow()
	if !slices.Equal(got, want) {
		t.Errorf("DefaultAllow() = %v, want %v", got, want)
	}
	got[0] = p("0.0.0.0/0")
	if again := verify.DefaultAllow(); !slices.Equal(again, want) {
		t.Errorf("changing one DefaultAllow() result changed the next: %v", again)
	}
}

func TestTarget_URL(t *testing.T) {
	tests := []struct {
		tgt  verify.Target
		want string
	}{
		{verify.Target{Scheme: "http", Address: "127.0.0.1", Port: 8080, Path: "/v"}, "http://127.0.0.1:8080/v"},
		{verify.Target{Scheme: "https", Address: "::1", Port: 443, Path: api.DefaultVerifyPath}, "https://[::1]:443/.well-known/muster/verify"},
		{verify.Target{Scheme: "http", Address: "svc.internal", Port: 1, Path: ""}, "http://svc.internal:1"},
	}
	for _, tt := range tests {
		if got := tt.tgt.URL(); got != tt.want {
			t.Errorf("URL() = %q, want %q", got, tt.want)
		}
	}
}

// TestVerifier_Verify_dialIP: with DialIP the callback connects to that
// address only, whatever the host name resolves to: a name that resolves
// to the instance's listener is refused when the pinned address is
// another one, and the Host header still names the host.
func TestVerifier_Verify_dialIP(t *testing.T) {
	var host atomic.Value
	in := serve(t, func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
		answer("s3cret")(w, r)
	})
	v := newVerifier(t, nil)
	tg := target(t, in.srv)
	tg.Address = "localhost"
	req := api.VerifyRequest{Service: "svc", InstanceID: "i", Challenge: "c"}

	tg.DialIP = netip.MustParseAddr("127.0.0.1")
	if err := v.Verify(context.Background(), tg, req, "s3cret"); err != nil {
		t.Fatalf("pinned to the listener's address: %v", err)
	}
	if got, _ := host.Load().(string); !strings.HasPrefix(got, "localhost:") {
		t.Errorf("Host header %q, want the host name", got)
	}
	before := in.hits.Load()
	tg.DialIP = netip.MustParseAddr("127.0.0.2") // nothing listens there
	if err := v.Verify(context.Background(), tg, req, "s3cret"); err == nil {
		t.Fatal("pinned to another address, the callback still reached the listener")
	}
	if in.hits.Load() != before {
		t.Fatal("the listener was called through the name")
	}
}
