package catalog_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// newToken returns a complete key of the role whose secret is
// "secret-"+id, created at t0, with no expiry.
func newToken(id string, role catalog.Role, patterns ...string) *catalog.Key {
	k := newKey(id, patterns...)
	k.Role = role
	return k
}

func withExpiry(k *catalog.Key, at time.Time) *catalog.Key { k.ExpiresAt = at; return k }

func withCallbackTLS(k *catalog.Key, m catalog.CallbackTLS) *catalog.Key { k.CallbackTLS = m; return k }

func createToken(k *catalog.Key) catalog.Command {
	return catalog.Command{Op: catalog.OpCreateToken, Key: k, Reason: "test"}
}

func TestKey_RoleOrDefault(t *testing.T) {
	for _, tt := range []struct {
		role catalog.Role
		want catalog.Role
	}{
		{"", catalog.RoleRegister}, // a key of create_key
		{catalog.RoleRegister, catalog.RoleRegister},
		{catalog.RoleRead, catalog.RoleRead},
		{catalog.RoleOperator, catalog.RoleOperator},
		{catalog.RoleAdmin, catalog.RoleAdmin},
	} {
		if got := (&catalog.Key{Role: tt.role}).RoleOrDefault(); got != tt.want {
			t.Errorf("RoleOrDefault of role %q = %q, want %q", tt.role, got, tt.want)
		}
	}
}

func TestKey_CallbackTLSOrDefault(t *testing.T) {
	for m, want := range map[catalog.CallbackTLS]catalog.CallbackTLS{
		"": catalog.CallbackTLSVerify, catalog.CallbackTLSVerify: catalog.CallbackTLSVerify, catalog.CallbackTLSAny: catalog.CallbackTLSAny,
	} {
		if got := (&catalog.Key{CallbackTLS: m}).CallbackTLSOrDefault(); got != want {
			t.Errorf("CallbackTLSOrDefault of %q = %q, want %q", m, got, want)
		}
	}
}

func TestKey_Expired(t *testing.T) {
	at := t0.Add(time.Hour)
	for _, tt := range []struct {
		name      string
		expiresAt time.Time
		now       time.Time
		want      bool
	}{
		{"never expires", time.Time{}, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"before", at, at.Add(-time.Nanosecond), false},
		{"at the instant", at, at, true},
		{"after", at, at.Add(time.Second), true},
		{"another zone, same instant", at, at.In(time.FixedZone("x", 3600)), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := (&catalog.Key{ExpiresAt: tt.expiresAt}).Expired(tt.now); got != tt.want {
				t.Errorf("Expired(%s) of a key expiring at %s = %v, want %v", tt.now, tt.expiresAt, got, tt.want)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range catalog.Roles() {
		if got, err := catalog.ParseRole(string(r)); err != nil || got != r || !r.Valid() {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, s := range []string{"", "Read", "root", "register "} {
		_, err := catalog.ParseRole(s)
		if err == nil || !strings.Contains(err.Error(), "use register, read, operator or admin") {
			t.Errorf("ParseRole(%q) = %v, want an error listing the roles", s, err)
		}
		if catalog.Role(s).Valid() {
			t.Errorf("Role(%q).Valid() = true", s)
		}
	}
}

func TestParseCallbackTLS(t *testing.T) {
	for _, s := range []string{"", "verify", "any"} {
		if got, err := catalog.ParseCallbackTLS(s); err != nil || string(got) != s {
			t.Errorf("ParseCallbackTLS(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"none", "ANY", "insecure"} {
		if _, err := catalog.ParseCallbackTLS(s); err == nil || !strings.Contains(err.Error(), "use verify or any") {
			t.Errorf("ParseCallbackTLS(%q) = %v, want an error listing the ways", s, err)
		}
	}
}

// TestCatalog_Apply_createToken: create_token stores a key of any role
// with its expiry and callback mode, found by ID and by secret like any
// key, revoked by revoke_key; a registration names only an enrolment
// key, whether created by create_key or create_token; and create_token
// refuses what no stored key may be, as create_key refuses the fields
// of tokens.
func TestCatalog_Apply_createToken(t *testing.T) {
	t.Run("every role, found and revoked", func(t *testing.T) {
		l := newReplica()
		read := withExpiry(newToken("tr", catalog.RoleRead, "web-*"), t0.Add(time.Hour))
		reg := withCallbackTLS(newToken("tg", catalog.RoleRegister, "web-*"), catalog.CallbackTLSAny)
		l.must(t,
			createKey(newKey("k1", "web-*")),
			createToken(read),
			createToken(newToken("to", catalog.RoleOperator, "web-a")),
			createToken(newToken("ta", catalog.RoleAdmin, "*")),
			createToken(reg),
		)
		var ids []string
		for _, k := range l.c.Keys() {
			ids = append(ids, k.ID)
		}
		if want := []string{"k1", "ta", "tg", "to", "tr"}; !slices.Equal(ids, want) {
			t.Errorf("Keys() = %v, want %v", ids, want)
		}
		for id, want := range map[string]catalog.Role{"k1": catalog.RoleRegister, "tr": catalog.RoleRead, "to": catalog.RoleOperator, "ta": catalog.RoleAdmin, "tg": catalog.RoleRegister} {
			k, ok := l.c.KeyBySecretHash(catalog.HashSecret("secret-" + id))
			if !ok || k.ID != id || k.RoleOrDefault() != want {
				t.Errorf("KeyBySecretHash of %s = %+v, %v; want role %s", id, k, ok, want)
			}
		}
		k, _ := l.c.Key("tr")
		if !k.ExpiresAt.Equal(t0.Add(time.Hour)) || k.Expired(t0) || !k.Expired(t0.Add(time.Hour)) || k.CreateIndex != 2 {
			t.Errorf("read token stored as %+v", k)
		}
		if k, _ := l.c.Key("tg"); k.CallbackTLSOrDefault() != catalog.CallbackTLSAny {
			t.Errorf("register token stored as %+v", k)
		}
		if k, _ := l.c.Key("k1"); k.Role != "" || k.CallbackTLSOrDefault() != catalog.CallbackTLSVerify || !k.ExpiresAt.IsZero() {
			t.Errorf("key of create_key stored as %+v", k)
		}
		// The caller's values may be reused.
		read.Services[0], reg.CallbackTLS = "changed", catalog.CallbackTLSVerify
		if k, _ := l.c.Key("tr"); k.Services[0] != "web-*" {
			t.Errorf("stored token follows the caller's changes: %+v", k)
		}

		for _, id := range []string{"tr", "ta"} {
			l.must(t, catalog.Command{Op: catalog.OpRevokeKey, ID: id})
			if _, ok := l.c.Key(id); ok {
				t.Errorf("revoked token %s is still found by ID", id)
			}
			if _, ok := l.c.KeyBySecretHash(catalog.HashSecret("secret-" + id)); ok {
				t.Errorf("revoked token %s still authenticates", id)
			}
		}
		// Its ID and secret are free again.
		l.must(t, createToken(newToken("tr", catalog.RoleOperator, "web-*")))
	})

	t.Run("registrations", func(t *testing.T) {
		l := newReplica()
		l.must(t,
			createToken(newToken("tr", catalog.RoleRead, "*")),
			createToken(newToken("to", catalog.RoleOperator, "*")),
			createToken(newToken("ta", catalog.RoleAdmin, "*")),
			createToken(withExpiry(newToken("tg", catalog.RoleRegister, "web-*"), t0.Add(time.Hour))),
		)
		for _, id := range []string{"tr", "to", "ta"} {
			in := newInstance("i-"+id, "web-a", "10.0.0.1", 80)
			in.KeyID = id
			res := l.apply(register(in))
			if !errors.Is(res.Err, catalog.ErrKeyScope) || !strings.Contains(res.Err.Error(), "only a key of role register registers") {
				t.Errorf("registration with a token of role %s: %v, want ErrKeyScope saying only register registers", id, res.Err)
			}
		}
		if l.c.Len() != 0 {
			t.Fatalf("%d instances registered with tokens of other roles", l.c.Len())
		}
		in := newInstance("i1", "web-a", "10.0.0.1", 80)
		in.KeyID = "tg"
		l.must(t, register(in))
		in2 := newInstance("i2", "db", "10.0.0.1", 80)
		in2.KeyID = "tg"
		if res := l.apply(register(in2)); !errors.Is(res.Err, catalog.ErrKeyScope) {
			t.Errorf("out-of-scope registration with a register token: %v", res.Err)
		}
		l.must(t, catalog.Command{Op: catalog.OpRevokeKey, ID: "tg"})
		in3 := newInstance("i3", "web-a", "10.0.0.3", 80)
		in3.KeyID = "tg"
		if res := l.apply(register(in3)); !errors.Is(res.Err, catalog.ErrKeyRevoked) {
			t.Errorf("registration with a revoked register token: %v", res.Err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, tt := range []struct {
			name  string
			cmd   catalog.Command
			want  error
			field string // named in the error, for ErrBadCommand
		}{
			{"no key", catalog.Command{Op: catalog.OpCreateToken}, catalog.ErrBadCommand, ""},
			{"no role", createToken(newKey("t2", "web-*")), catalog.ErrBadCommand, "key.role"},
			{"unknown role", createToken(newToken("t2", "root", "*")), catalog.ErrBadCommand, "key.role"},
			{"admin of some services", createToken(newToken("t2", catalog.RoleAdmin, "web-*")), catalog.ErrBadCommand, "key.services"},
			{"admin of * and more", createToken(newToken("t2", catalog.RoleAdmin, "*", "web")), catalog.ErrBadCommand, "key.services"},
			{"callback any on a read token", createToken(withCallbackTLS(newToken("t2", catalog.RoleRead, "*"), catalog.CallbackTLSAny)), catalog.ErrBadCommand, "key.callback_tls"},
			{"unknown callback mode", createToken(withCallbackTLS(newToken("t2", catalog.RoleRegister, "*"), "none")), catalog.ErrBadCommand, "key.callback_tls"},
			{"expiry at creation", createToken(withExpiry(newToken("t2", catalog.RoleRead, "*"), t0)), catalog.ErrBadCommand, "key.expires_at"},
			{"duplicate ID", createToken(newToken("k1", catalog.RoleRead, "*")), catalog.ErrExists, ""},
			{"duplicate secret", createToken(&catalog.Key{ID: "t2", SecretHash: catalog.HashSecret("secret-k1"), Services: []string{"*"}, Role: catalog.RoleRead}), catalog.ErrExists, ""},
			{"create_key with a role", createKey(newToken("t2", catalog.RoleRead, "*")), catalog.ErrBadCommand, "create_token"},
			{"create_key with role register", createKey(newToken("t2", catalog.RoleRegister, "*")), catalog.ErrBadCommand, "create_token"},
			{"create_key with an expiry", createKey(withExpiry(newKey("t2", "*"), t0.Add(time.Hour))), catalog.ErrBadCommand, "create_token"},
			{"create_key with a callback mode", createKey(withCallbackTLS(newKey("t2", "*"), catalog.CallbackTLSVerify)), catalog.ErrBadCommand, "create_token"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				l := newReplica()
				l.must(t, createKey(newKey("k1", "web-*")))
				before := snapshotJSON(t, l.c)
				res := l.c.Apply(1, tt.cmd)
				if !errors.Is(res.Err, tt.want) || !strings.Contains(res.Err.Error(), tt.field) {
					t.Fatalf("Apply = %v, want %v naming %q", res.Err, tt.want, tt.field)
				}
				if after := snapshotJSON(t, l.c); !bytes.Equal(after, before) {
					t.Errorf("a refused command changed the catalog:\n%s\n%s", before, after)
				}
				// Validate refuses it too, naming the same field, unless
				// only the catalog's state refuses it.
				if tt.want == catalog.ErrBadCommand {
					if err := tt.cmd.Validate(); !errors.Is(err, catalog.ErrBadCommand) || !strings.Contains(err.Error(), tt.field) {
						t.Errorf("Validate = %v, want ErrBadCommand naming %q", err, tt.field)
					}
				} else if err := tt.cmd.Validate(); err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
			})
		}
	})
}

// TestCommand_Validate_tokens: the rules of a key's role, expiry and
// callback mode, each refused with the field it breaks and a message
// that says what would do; create_key keeps to enrolment keys.
func TestCommand_Validate_tokens(t *testing.T) {
	for _, tt := range []struct {
		name  string
		cmd   catalog.Command
		field string // "" when valid
		says  string
	}{
		{"register token", createToken(newToken("t", catalog.RoleRegister, "web-*")), "", ""},
		{"read token", createToken(newToken("t", catalog.RoleRead, "web-*", "api")), "", ""},
		{"operator token", createToken(newToken("t", catalog.RoleOperator, "web-*")), "", ""},
		{"admin token", createToken(newToken("t", catalog.RoleAdmin, "*")), "", ""},
		{"token with an expiry", createToken(withExpiry(newToken("t", catalog.RoleRead, "*"), t0.Add(time.Nanosecond))), "", ""},
		{"register token, callback any", createToken(withCallbackTLS(newToken("t", catalog.RoleRegister, "*"), catalog.CallbackTLSAny)), "", ""},
		{"register token, callback verify", createToken(withCallbackTLS(newToken("t", catalog.RoleRegister, "*"), catalog.CallbackTLSVerify)), "", ""},
		{"read token, callback verify (meaningless, harmless)", createToken(withCallbackTLS(newToken("t", catalog.RoleRead, "*"), catalog.CallbackTLSVerify)), "", ""},

		{"token without a key", catalog.Command{Op: catalog.OpCreateToken}, "key", "missing"},
		{"token without a role", createToken(newKey("t", "*")), "key.role", "create_token needs the key's role"},
		{"token of an unknown role", createToken(newToken("t", "superuser", "*")), "key.role", "is not register, read, operator or admin"},
		{"token of a role in capitals", createToken(newToken("t", "Admin", "*")), "key.role", "is not register"},
		{"admin of one service", createToken(newToken("t", catalog.RoleAdmin, "web")), "key.services", `must be exactly ["*"]`},
		{"admin of **", createToken(newToken("t", catalog.RoleAdmin, "**")), "key.services", `must be exactly ["*"]`},
		{"admin of two patterns", createToken(newToken("t", catalog.RoleAdmin, "*", "*")), "key.services", `must be exactly ["*"]`},
		{"unknown callback mode", createToken(withCallbackTLS(newToken("t", catalog.RoleRegister, "*"), "skip")), "key.callback_tls", "is not verify or any"},
		{"callback any on a read token", createToken(withCallbackTLS(newToken("t", catalog.RoleRead, "*"), catalog.CallbackTLSAny)), "key.callback_tls", "for keys of role register"},
		{"callback any on an operator token", createToken(withCallbackTLS(newToken("t", catalog.RoleOperator, "*"), catalog.CallbackTLSAny)), "key.callback_tls", "for keys of role register"},
		{"callback any on an admin token", createToken(withCallbackTLS(newToken("t", catalog.RoleAdmin, "*"), catalog.CallbackTLSAny)), "key.callback_tls", "for keys of role register"},
		{"expiry at creation", createToken(withExpiry(newToken("t", catalog.RoleRead, "*"), t0)), "key.expires_at", "is not after created_at"},
		{"expiry before creation", createToken(withExpiry(newToken("t", catalog.RoleRead, "*"), t0.Add(-time.Hour))), "key.expires_at", "is not after created_at"},
		{"token with a bad pattern", createToken(newToken("t", catalog.RoleRead, "Web")), "key.services", "pattern"},
		{"token with a short hash", createToken(func() *catalog.Key {
			k := newToken("t", catalog.RoleRead, "*")
			k.SecretHash = k.SecretHash[:8]
			return k
		}()), "key.secret_hash", ""},

		{"create_key of a read token", createKey(newToken("t", catalog.RoleRead, "*")), "key", "propose create_token"},
		{"create_key naming role register", createKey(newToken("t", catalog.RoleRegister, "*")), "key", "propose create_token"},
		{"create_key with an expiry", createKey(withExpiry(newKey("t", "*"), t0.Add(time.Hour))), "key", "propose create_token"},
		{"create_key with callback any", createKey(withCallbackTLS(newKey("t", "*"), catalog.CallbackTLSAny)), "key", "propose create_token"},
		{"create_key of an admin token of some services", createKey(newToken("t", catalog.RoleAdmin, "web")), "key.services", `must be exactly ["*"]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cmd.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, catalog.ErrBadCommand) || !strings.Contains(err.Error(), ": "+tt.field+": ") || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Validate() = %v, want ErrBadCommand naming %q and saying %q", err, tt.field, tt.says)
			}
		})
	}
}

// TestDecodeCommand_createToken: create_token travels in the command's
// JSON with every field of the key, and create_key's encoding is the
// same bytes as before tokens (no field of tokens appears in it).
func TestDecodeCommand_createToken(t *testing.T) {
	cmd := createToken(withCallbackTLS(withExpiry(newToken("t1", catalog.RoleRegister, "web-*"), t0.Add(time.Hour)), catalog.CallbackTLSAny))
	cmd.Key.MaxInstances = 3
	b, err := catalog.EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"op":"create_token"`, `"role":"register"`, `"expires_at":"2025-01-02T04:04:05.000006Z"`, `"callback_tls":"any"`, `"max_instances":3`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("the encoding of create_token lacks %s: %s", field, b)
		}
	}
	plain, err := catalog.EncodeCommand(createKey(newKey("k1", "web-*")))
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"role", "expires_at", "callback_tls"} {
		if bytes.Contains(plain, []byte(`"`+field+`"`)) {
			t.Errorf("the encoding of create_key holds %s: %s", field, plain)
		}
	}
	// An older replica reads create_token as an operation it does not
	// know, and must halt there: never skippable.
	if cmd.SkipIfUnknown {
		t.Error("create_token is marked SkipIfUnknown")
	}
}
