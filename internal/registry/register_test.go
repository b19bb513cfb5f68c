//go:debug netdns=go

package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// The netdns=go directive above keeps name resolution in Go's own
// resolver, which answers .onion names without asking any DNS server
// (RFC 7686): the tests talk to nothing but 127.0.0.1.

func TestRegistry_AdmitKey(t *testing.T) {
	r := newRig(t)
	_, secret := r.key(t, "web-*")
	revokedID, revoked := r.key(t, "web-*")
	if err := r.reg.RevokeKey(t.Context(), adminToken, revokedID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		notReady bool
		secret   string
		service  string
		want     errCheck
	}{
		{"not ready", true, secret, "web-1", is(registry.ErrNotReady)},
		{"not ready before no credential", true, "", "web-1", is(registry.ErrNotReady)},
		{"no credential", false, "", "web-1", is(registry.ErrNoCredential)},
		{"no credential before bad name", false, "", "Bad Name", is(registry.ErrNoCredential)},
		{"unknown key", false, "mk_unknown", "web-1", is(catalog.ErrKeyRevoked)},
		{"unknown key before bad name", false, "mk_unknown", "Bad Name", is(catalog.ErrKeyRevoked)},
		{"revoked key", false, revoked, "web-1", is(catalog.ErrKeyRevoked)},
		{"bad service name", false, secret, "Web 1", fieldErr("service")},
		{"empty service name", false, secret, "", fieldErr("service")},
		{"bad name before scope", false, secret, "db!", fieldErr("service")},
		{"out of scope", false, secret, "db", is(catalog.ErrKeyScope)},
		{"admitted", false, secret, "web-1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.lead.set(!tc.notReady, r.clock.Now().Add(-time.Hour))
			adm, err := r.reg.AdmitKey(context.Background(), tc.secret, tc.service)
			checkErr(t, err, tc.want)
			if err == nil && adm.Service() != tc.service {
				t.Fatalf("Admission.Service = %q, want %q", adm.Service(), tc.service)
			}
		})
	}
}

// TestRegistry_Register_fields: a bad request is refused with a
// FieldError naming its field, before any callback, slot or limit.
func TestRegistry_Register_fields(t *testing.T) {
	long := strings.Repeat("x", 129)
	for _, tc := range []struct {
		name  string
		req   func(port int) api.RegisterRequest
		field string
	}{
		{"no address", func(p int) api.RegisterRequest { return api.RegisterRequest{Port: p} }, "address"},
		{"short IPv4 form", func(p int) api.RegisterRequest { return api.RegisterRequest{Address: "127.1", Port: p} }, "address"},
		{"hex IPv4 form", func(p int) api.RegisterRequest { return api.RegisterRequest{Address: "0x7f.0x1", Port: p} }, "address"},
		{"address with a path", func(p int) api.RegisterRequest { return api.RegisterRequest{Address: "host/x", Port: p} }, "address"},
		{"no port", func(p int) api.RegisterRequest { return api.RegisterRequest{Address: "127.0.0.1"} }, "port"},
		{"port too big", func(p int) api.RegisterRequest { return api.RegisterRequest{Address: "127.0.0.1", Port: 65536} }, "port"},
		{"verify port too big", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, VerifyPort: 65536}
		}, "verify_port"},
		{"negative verify port", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, VerifyPort: -1}
		}, "verify_port"},
		{"scheme", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, Scheme: "ftp"}
		}, "scheme"},
		{"verify scheme", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, VerifyScheme: "gopher"}
		}, "verify_scheme"},
		{"ttl not a duration", func(p int) api.RegisterRequest { return api.RegisterRequest{Address: "127.0.0.1", Port: p, TTL: "10"} }, "ttl"},
		{"ttl too short", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, TTL: "999ms"}
		}, "ttl"},
		{"ttl too long", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, TTL: "1h1s"}
		}, "ttl"},
		{"deregister_after not a duration", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, DeregisterAfter: "soon"}
		}, "deregister_after"},
		{"deregister_after below the ttl", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, TTL: "10s", DeregisterAfter: "9s"}
		}, "deregister_after"},
		{"deregister_after over a week", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, DeregisterAfter: "169h"}
		}, "deregister_after"},
		{"verify path outside the prefix", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, VerifyPath: "/admin/delete"}
		}, "verify_path"},
		{"verify path escaping the prefix", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, VerifyPath: "/.well-known/muster/../../admin"}
		}, "verify_path"},
		{"verify path percent-encoded", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, VerifyPath: "/.well-known/muster/%2e%2e"}
		}, "verify_path"},
		{"nonce with a control character", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, Nonce: "a\nb"}
		}, "nonce"},
		{"nonce too long", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, Nonce: long}
		}, "nonce"},
		{"tag with a space", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, Tags: []string{"a b"}}
		}, "tags"},
		{"empty tag", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, Tags: []string{""}}
		}, "tags"},
		{"meta key", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, Meta: map[string]string{"a key": "v"}}
		}, "meta"},
		{"meta value", func(p int) api.RegisterRequest {
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, Meta: map[string]string{"k": "\x00"}}
		}, "meta"},
		{"tags over the label bytes", func(p int) api.RegisterRequest {
			tags := make([]string, 33) // 33 × 128 bytes > 4096
			for i := range tags {
				tags[i] = fmt.Sprintf("%03d", i) + strings.Repeat("t", 125)
			}
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, Tags: tags}
		}, "tags"},
		{"tags and meta over the label bytes", func(p int) api.RegisterRequest {
			meta := map[string]string{}
			for i := range 8 { // 8 × 512 bytes, plus keys, plus a tag > 4096
				meta[fmt.Sprintf("k%d", i)] = strings.Repeat("v", 510)
			}
			return api.RegisterRequest{Address: "127.0.0.1", Port: p, Tags: []string{"blue"}, Meta: meta}
		}, "meta"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, withConfig(func(c *registry.Config) { c.MaxVerifying, c.FailureBurst = 1, 1 }))
			_, secret := r.key(t, "web")
			in := newInstance(t, secret)
			r.prop.reset()
			req := tc.req(in.Port())
			checkErr(t, registry.ValidateRegistration(req), fieldErr(tc.field))
			// Twice: a refusal of the request's shape spends no failure
			// allowance and holds no slot.
			for range 2 {
				_, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), req)
				checkErr(t, err, fieldErr(tc.field))
			}
			if n := in.CallCount(); n != 0 {
				t.Fatalf("%d callbacks for a refused request", n)
			}
			if cmds := r.prop.proposed(); len(cmds) != 0 {
				t.Fatalf("proposed %v for a refused request", cmds)
			}
			// The allowance and the slot are untouched.
			r.register(t, secret, "web", in, at(in))
		})
	}
}

func TestValidateRegistration(t *testing.T) {
	for _, req := range []api.RegisterRequest{
		{Address: "127.0.0.1", Port: 1},
		{Address: "::1", Port: 65535, Scheme: "https", VerifyScheme: "http", VerifyPort: 8081},
		{Address: "Svc-1.Example.COM.", Port: 80, TTL: "1s", DeregisterAfter: "1s"},
		{Address: "localhost", Port: 80, TTL: "1h", DeregisterAfter: "168h"},
		{Address: "10.0.0.5", Port: 8080, VerifyPath: "/.well-known/muster/sidecar/v2", Nonce: "n-1",
			Tags: []string{"v2", "blue"}, Meta: map[string]string{"zone.name_1-a": "eu west"}},
		// Exactly the label bytes allowed: 32 tags of 128 bytes.
		{Address: "127.0.0.1", Port: 80, Tags: func() []string {
			tags := make([]string, 32)
			for i := range tags {
				tags[i] = fmt.Sprintf("%03d", i) + strings.Repeat("t", 125)
			}
			return tags
		}()},
	} {
		if err := registry.ValidateRegistration(req); err != nil {
			t.Errorf("ValidateRegistration(%+v) = %v", req, err)
		}
	}
}

func TestCanonicalHost(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"::ffff:127.0.0.1", "127.0.0.1", true},
		{"0:0:0:0:0:0:0:1", "::1", true},
		{"Example.COM.", "example.com", true},
		{"localhost", "localhost", true},
		{"127.1", "", false},
		{"2130706433", "", false},
		{"0x7f000001", "", false},
		{"-bad.example", "", false},
		{"", "", false},
	} {
		got, ok := registry.CanonicalHost(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("CanonicalHost(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCheckServiceName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web": true, "fetch_url": true, "a-1": true, strings.Repeat("a", 63): true,
		"": false, "Web": false, "a.b": false, "a b": false, strings.Repeat("a", 64): false,
	} {
		err := registry.CheckServiceName(name)
		if ok {
			checkErr(t, err, nil)
		} else {
			checkErr(t, err, fieldErr("service"))
		}
	}
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestRegistry_Register: what a registration commits, and what it tells
// the instance in the callback.
func TestRegistry_Register(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  func(port int) api.RegisterRequest
		// want holds the fields expected in the committed instance.
		want    catalog.Instance
		wantTTL string
	}{
		{"defaults",
			func(p int) api.RegisterRequest { return api.RegisterRequest{Address: "127.0.0.1", Port: p} },
			catalog.Instance{Address: "127.0.0.1", Scheme: "http", TTL: 10 * time.Second, DeregisterAfter: 100 * time.Second, Proof: api.ProofAddressPort},
			"10s"},
		{"verify port equal to the port",
			func(p int) api.RegisterRequest {
				return api.RegisterRequest{Address: "127.0.0.1", Port: p, VerifyPort: p}
			},
			catalog.Instance{Address: "127.0.0.1", Scheme: "http", TTL: 10 * time.Second, DeregisterAfter: 100 * time.Second, Proof: api.ProofAddressPort},
			"10s"},
		{"sidecar on another port",
			func(p int) api.RegisterRequest {
				return api.RegisterRequest{Address: "127.0.0.1", Port: 8443, Scheme: "https", VerifyScheme: "http", VerifyPort: p}
			},
			catalog.Instance{Address: "127.0.0.1", Port: 8443, Scheme: "https", TTL: 10 * time.Second, DeregisterAfter: 100 * time.Second, Proof: api.ProofAddress},
			"10s"},
		{"ttl normalised, deregister_after 10 ttl",
			func(p int) api.RegisterRequest {
				return api.RegisterRequest{Address: "127.0.0.1", Port: p, TTL: "90000ms"}
			},
			catalog.Instance{Address: "127.0.0.1", Scheme: "http", TTL: 90 * time.Second, DeregisterAfter: 15 * time.Minute, Proof: api.ProofAddressPort},
			"1m30s"},
		{"explicit deregister_after",
			func(p int) api.RegisterRequest {
				return api.RegisterRequest{Address: "127.0.0.1", Port: p, TTL: "5s", DeregisterAfter: "5s"}
			},
			catalog.Instance{Address: "127.0.0.1", Scheme: "http", TTL: 5 * time.Second, DeregisterAfter: 5 * time.Second, Proof: api.ProofAddressPort},
			"5s"},
		{"IPv4-mapped address is stored as IPv4",
			func(p int) api.RegisterRequest { return api.RegisterRequest{Address: "::ffff:127.0.0.1", Port: p} },
			catalog.Instance{Address: "127.0.0.1", Scheme: "http", TTL: 10 * time.Second, DeregisterAfter: 100 * time.Second, Proof: api.ProofAddressPort},
			"10s"},
		{"tags, meta and nonce",
			func(p int) api.RegisterRequest {
				return api.RegisterRequest{Address: "127.0.0.1", Port: p, Tags: []string{"v2", "blue"},
					Meta: map[string]string{"zone": "a"}, Nonce: "my-nonce"}
			},
			catalog.Instance{Address: "127.0.0.1", Scheme: "http", TTL: 10 * time.Second, DeregisterAfter: 100 * time.Second,
				Proof: api.ProofAddressPort, Tags: []string{"v2", "blue"}, Meta: map[string]string{"zone": "a"}},
			"10s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			keyID, secret := r.key(t, "web")
			in := newInstance(t, secret)
			in.Mu.Lock()
			in.EchoNonce = tc.req(0).Nonce
			in.Mu.Unlock()
			r.prop.reset()
			r.clock.Advance(1500 * time.Millisecond)
			now := r.clock.Now()

			req := tc.req(in.Port())
			out, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), req)
			if err != nil {
				t.Fatal(err)
			}

			// The callback: one, to the instance, with a fresh ID, the
			// session token and the instance's nonce.
			call, _ := in.LastCall()
			if n := in.CallCount(); n != 1 {
				t.Fatalf("%d callbacks", n)
			}
			if call.Service != "web" || call.InstanceID != out.ID || call.Nonce != req.Nonce ||
				len(call.Challenge) != 43 || len(call.Token) != 43 || call.Token == call.Challenge {
				t.Fatalf("callback %+v", call)
			}

			// The answer.
			if !hexID.MatchString(out.ID) || out.Service != "web" || out.TTL != tc.wantTTL || out.Index != r.cat.Index() {
				t.Fatalf("Registered %+v (catalog index %d)", out, r.cat.Index())
			}

			// The command: one registration, under the current rules.
			cmds := r.prop.proposed()
			if len(cmds) != 1 || cmds[0].Op != catalog.OpRegister || cmds[0].Rules != catalog.RulesCurrent || cmds[0].Reason != "api" {
				t.Fatalf("proposed %+v", cmds)
			}
			got := cmds[0].Instance
			want := tc.want
			want.ID, want.Service, want.KeyID, want.Status = out.ID, "web", keyID, catalog.StatusPassing
			if want.Port == 0 {
				want.Port = in.Port()
			}
			want.RegisteredAt = now.UTC()
			want.TokenHash = catalog.HashSecret(call.Token)
			checkInstance(t, got, &want)

			// The catalog holds it, and the tracker heard it now.
			stored, ok := r.cat.Instance(out.ID)
			if !ok {
				t.Fatal("not in the catalog")
			}
			want.CreateIndex, want.ModifyIndex = out.Index, out.Index
			checkInstance(t, stored, &want)
			if !stored.TokenMatches(call.Token) || stored.TokenMatches(secret) {
				t.Fatal("the stored token hash is not the hash of the token sent in the callback")
			}
			if seen, ok := r.tracker().Seen(out.ID); !ok || !seen.Equal(now) {
				t.Fatalf("tracker: %v %v, want a beat at %v", seen, ok, now)
			}

			// A second registration gets a fresh ID and token.
			req2 := at(in)
			req2.Port = 9999
			req2.VerifyPort = in.Port()
			req2.Nonce = req.Nonce
			out2, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), req2)
			if err != nil {
				t.Fatal(err)
			}
			call2, _ := in.LastCall()
			if out2.ID == out.ID || !hexID.MatchString(out2.ID) || call2.Token == call.Token || call2.Challenge == call.Challenge {
				t.Fatalf("second registration reused a value: %+v %+v", out2, call2)
			}
		})
	}
}

// checkInstance compares the fields a registration sets.
func checkInstance(tb testing.TB, got, want *catalog.Instance) {
	tb.Helper()
	if got.ID != want.ID || got.Service != want.Service || got.Address != want.Address || got.Port != want.Port ||
		got.Scheme != want.Scheme || got.TTL != want.TTL || got.DeregisterAfter != want.DeregisterAfter ||
		got.KeyID != want.KeyID || got.Proof != want.Proof || got.Status != want.Status || got.Draining ||
		!got.RegisteredAt.Equal(want.RegisteredAt) || got.RegisteredAt.Location() != time.UTC ||
		string(got.TokenHash) != string(want.TokenHash) || got.CreateIndex != want.CreateIndex || got.ModifyIndex != want.ModifyIndex {
		tb.Fatalf("instance\n got %+v\nwant %+v", got, want)
	}
	if strings.Join(got.Tags, ",") != strings.Join(want.Tags, ",") || len(got.Meta) != len(want.Meta) {
		tb.Fatalf("tags/meta %v %v, want %v %v", got.Tags, got.Meta, want.Tags, want.Meta)
	}
	for k, v := range want.Meta {
		if got.Meta[k] != v {
			tb.Fatalf("meta %v, want %v", got.Meta, want.Meta)
		}
	}
}

// TestRegistry_Register_replace: registering the same address again
// replaces the old instance, whose heartbeat history is forgotten.
func TestRegistry_Register_replace(t *testing.T) {
	r := newRig(t)
	_, secret := r.key(t, "web")
	in := newInstance(t, secret)
	first := r.register(t, secret, "web", in, at(in))
	r.clock.Advance(time.Second)
	if _, _, err := r.reg.Heartbeat(t.Context(), first.ID, first.Token); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(time.Second)
	second := r.register(t, secret, "web", in, at(in))

	if second.ID == first.ID {
		t.Fatal("the re-registration kept the ID")
	}
	if _, ok := r.cat.Instance(first.ID); ok {
		t.Fatal("the replaced instance is still in the catalog")
	}
	if _, ok := r.tracker().Seen(first.ID); ok {
		t.Fatal("the replaced instance's heartbeat history was kept")
	}
	if seen, ok := r.tracker().Seen(second.ID); !ok || !seen.Equal(r.clock.Now()) {
		t.Fatalf("the new instance's beat: %v %v", seen, ok)
	}
	sr, _ := r.reg.Service("web")
	if n := len(sr.View.Instances); n != 1 || sr.View.Instances[0].ID != second.ID {
		t.Fatalf("service holds %d instances", n)
	}
	if _, _, err := r.reg.Heartbeat(t.Context(), first.ID, first.Token); !errors.Is(err, registry.ErrInstanceNotFound) {
		t.Fatalf("heartbeat of the replaced instance: %v", err)
	}
	// Another port of the same host is another instance.
	other := at(in)
	other.Port, other.VerifyPort = 9999, in.Port()
	third := r.register(t, secret, "web", in, other)
	if _, ok := r.cat.Instance(second.ID); !ok || third.ID == second.ID {
		t.Fatal("a registration on another port replaced the instance")
	}
}

// TestRegistry_Register_keyRevoked: a key revoked after AdmitKey admits
// nothing, even when its revocation lands during the callback.
func TestRegistry_Register_keyRevoked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		during bool
	}{
		{"before the callback", false},
		{"during the callback", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			keyID, secret := r.key(t, "web")
			in := newInstance(t, secret)
			revoke := func() {
				if err := r.reg.RevokeKey(context.Background(), adminToken, keyID); err != nil {
					t.Error(err)
				}
			}
			adm := r.admit(t, secret, "web")
			if tc.during {
				setHandler(in, answering(in, revoke))
			} else {
				revoke()
			}
			_, err := r.reg.Register(t.Context(), adm, at(in))
			checkErr(t, err, is(catalog.ErrKeyRevoked))
			if in.CallCount() != 1 {
				t.Fatalf("%d callbacks, want 1", in.CallCount())
			}
			if n := len(r.cat.Instances()); n != 0 {
				t.Fatalf("%d instances stored", n)
			}
			if ids := r.tracker().IDs(); len(ids) != 0 {
				t.Fatalf("tracker holds %v", ids)
			}
		})
	}
}

// TestRegistry_Register_verify: an instance that does not prove the
// address is refused with a VerifyError naming the reason, and nothing is
// stored; the network detail stays out of the error.
func TestRegistry_Register_verify(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest)
		timeout time.Duration
		reason  string
	}{
		{"wrong proof", func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest) {
			in.Secret = "not-the-key"
		}, 0, api.ReasonBadProof},
		{"nonce not echoed", func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest) {
			req.Nonce, in.EchoNonce = "mine", "theirs"
		}, 0, api.ReasonNonceMismatch},
		{"error status", func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest) {
			in.Handler = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }
		}, 0, api.ReasonBadStatus},
		{"nothing at the verify path", func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest) {
			req.VerifyPath = "/.well-known/muster/elsewhere"
		}, 0, api.ReasonBadStatus},
		{"redirect", func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest) {
			in.Handler = func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/other", http.StatusFound) }
		}, 0, api.ReasonRedirect},
		{"not JSON", func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest) {
			in.Handler = func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }
		}, 0, api.ReasonBadResponse},
		{"nobody listening", func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest) {
			req.Port = closedPort(tb)
		}, 0, api.ReasonUnreachable},
		{"https to a plain HTTP instance", func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest) {
			req.Scheme = "https"
		}, 0, api.ReasonUnreachable},
		{"no answer in time", func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest) {
			in.Handler = func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
		}, 200 * time.Millisecond, api.ReasonTimeout},
		{"name that cannot resolve", func(tb testing.TB, in *testutil.Instance, req *api.RegisterRequest) {
			req.Address = "no-such-host.onion"
		}, 0, api.ReasonUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, withVerify(func(c *verify.Config) {
				if tc.timeout > 0 {
					c.Timeout = tc.timeout
				}
			}))
			_, secret := r.key(t, "web")
			in := newInstance(t, secret)
			req := at(in)
			in.Mu.Lock()
			tc.setup(t, in, &req)
			in.Mu.Unlock()
			r.prop.reset()
			_, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), req)
			// Until the key holds an instance at the address, every
			// network failure is one reason: the callback is no port
			// scanner.
			opaque := tc.reason
			switch tc.reason {
			case api.ReasonTimeout, api.ReasonBadStatus, api.ReasonRedirect, api.ReasonBadResponse:
				opaque = api.ReasonUnreachable
			}
			checkErr(t, err, verifyErr(opaque))
			for _, detail := range []string{"connection refused", "Internal Server Error", "302 Found", "first record", "no such host"} {
				if strings.Contains(err.Error(), detail) {
					t.Fatalf("error %q carries network detail %q", err, detail)
				}
			}
			if cmds := r.prop.proposed(); len(cmds) != 0 {
				t.Fatalf("proposed %+v", cmds)
			}
			if n := len(r.cat.Instances()); n != 0 {
				t.Fatalf("%d instances stored", n)
			}
			if ids := r.tracker().IDs(); len(ids) != 0 {
				t.Fatalf("tracker holds %v", ids)
			}
			if req.Address != "127.0.0.1" {
				return
			}
			// Once the key holds an instance at the address, the
			// precise reason is given.
			good := newInstance(t, secret)
			r.register(t, secret, "web", good, at(good))
			_, err = r.reg.Register(t.Context(), r.admit(t, secret, "web"), req)
			checkErr(t, err, verifyErr(tc.reason))
		})
	}
}

// closedPort returns a port of 127.0.0.1 on which nothing listens.
func closedPort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestRegistry_Register_addressNotAllowed: an address outside the
// allowlist is refused before any connection, and the refusal counts as a
// failed verification.
func TestRegistry_Register_addressNotAllowed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allow   []netip.Prefix
		address string
	}{
		{"outside a custom allowlist", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, "127.0.0.1"},
		{"link-local outside the default allowlist", nil, "169.254.169.254"},
		{"public address outside the default allowlist", nil, "192.0.2.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t,
				withVerify(func(c *verify.Config) {
					if tc.allow != nil {
						c.Allow = tc.allow
					}
				}),
				withConfig(func(c *registry.Config) { c.FailureBurst, c.FailureEvery = 1, time.Minute }))
			_, secret := r.key(t, "web")
			in := newInstance(t, secret)
			req := at(in)
			req.Address = tc.address
			_, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), req)
			checkErr(t, err, is(registry.ErrAddressNotAllowed))
			checkErr(t, err, is(verify.ErrNotAllowed))
			if !strings.Contains(err.Error(), tc.address) {
				t.Fatalf("error %q does not name the address", err)
			}
			_, err = r.reg.Register(t.Context(), r.admit(t, secret, "web"), req)
			checkErr(t, err, rateLimited("enrolment key and address", time.Minute))
			if n := in.CallCount(); n != 0 {
				t.Fatalf("%d callbacks", n)
			}
			if n := len(r.prop.proposed()); n != 1 { // the key
				t.Fatalf("%d commands proposed", n)
			}
		})
	}
}

// TestRegistry_Register_busy: while every verification slot is taken,
// registrations are refused with ErrBusy (after the request's shape is
// checked); a slot is given back when its registration ends.
func TestRegistry_Register_busy(t *testing.T) {
	seed := registry.DefaultSeedConfig()
	seed.Services = []string{"fetch_url"}
	r := newRig(t, withConfig(func(c *registry.Config) { c.MaxVerifying, c.Seed = 1, &seed }))
	_, secret := r.key(t, "web")
	slow := newInstance(t, secret)
	called, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the instance's server is closed
	setHandler(slow, answering(slow, func() {
		close(called)
		<-release
	}))
	fast := newInstance(t, secret)

	done := make(chan error, 1)
	slowAdm := r.admit(t, secret, "web")
	go func() {
		_, err := r.reg.Register(context.Background(), slowAdm, at(slow))
		done <- err
	}()
	select {
	case <-called:
	case err := <-done:
		t.Fatalf("the slow registration ended first: %v", err)
	}

	_, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), at(fast))
	checkErr(t, err, is(registry.ErrBusy))
	bad := at(fast)
	bad.Port = 0
	_, err = r.reg.Register(t.Context(), r.admit(t, secret, "web"), bad)
	checkErr(t, err, fieldErr("port"))
	adm, err := r.reg.AdmitSeed("127.0.0.1:5000", "fetch_url")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.reg.RegisterSeed(t.Context(), adm, newTutorial(t).addr())
	checkErr(t, err, is(registry.ErrBusy))
	if n := fast.CallCount(); n != 0 {
		t.Fatalf("%d callbacks while busy", n)
	}

	unblock()
	if err := <-done; err != nil {
		t.Fatalf("the slow registration: %v", err)
	}
	// The slot is free again, and a refusal gives it back too.
	wrong := newInstance(t, "not-the-key")
	_, err = r.reg.Register(t.Context(), r.admit(t, secret, "web"), at(wrong))
	checkErr(t, err, verifyErr(api.ReasonBadProof))
	r.register(t, secret, "web", fast, at(fast))
}

// TestRegistry_Register_rateLimit: FailureBurst failed verifications per
// key and address are allowed, then RateLimitError until the allowance
// refills; successful registrations spend nothing.
func TestRegistry_Register_rateLimit(t *testing.T) {
	const every = time.Minute
	limits := withConfig(func(c *registry.Config) { c.FailureBurst, c.FailureEvery = 2, every })

	t.Run("failures", func(t *testing.T) {
		r := newRig(t, limits)
		_, secret := r.key(t, "web")
		_, other := r.key(t, "web")
		bad := newInstance(t, "not-the-key")
		try := func(secret string) error {
			_, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), at(bad))
			return err
		}
		checkErr(t, try(secret), verifyErr(api.ReasonBadProof))
		checkErr(t, try(secret), verifyErr(api.ReasonBadProof))
		checkErr(t, try(secret), rateLimited("enrolment key and address", every))
		if n := bad.CallCount(); n != 2 {
			t.Fatalf("%d callbacks, want 2: a limited attempt calls nobody", n)
		}
		// Another key has its own allowance for the address.
		checkErr(t, try(other), verifyErr(api.ReasonBadProof))
		// One refill period gives one attempt back.
		r.clock.Advance(every / 2)
		checkErr(t, try(secret), rateLimited("enrolment key and address", every/2))
		r.clock.Advance(every / 2)
		checkErr(t, try(secret), verifyErr(api.ReasonBadProof))
		checkErr(t, try(secret), rateLimited("enrolment key and address", every))
		// A correct instance is refused too while the allowance is spent.
		// (The allowance is per address, whatever the port.)
		good := newInstance(t, secret)
		_, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), at(good))
		checkErr(t, err, rateLimited("enrolment key and address", every))
	})

	t.Run("successes spend nothing", func(t *testing.T) {
		r := newRig(t, limits)
		_, secret := r.key(t, "web")
		good := newInstance(t, secret)
		for range 5 {
			r.register(t, secret, "web", good, at(good))
		}
		// The whole burst is still there.
		good.Mu.Lock()
		good.Secret = "not-the-key"
		good.Mu.Unlock()
		for range 2 {
			_, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), at(good))
			checkErr(t, err, verifyErr(api.ReasonBadProof))
		}
		_, err := r.reg.Register(t.Context(), r.admit(t, secret, "web"), at(good))
		checkErr(t, err, rateLimited("enrolment key and address", every))
	})
}
