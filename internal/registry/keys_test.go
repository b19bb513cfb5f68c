package registry_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

func TestKeySpec_Validate(t *testing.T) {
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "svc-" + strings.Repeat("a", i+1)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		spec registry.KeySpec
		want errCheck
	}{
		{"one name", registry.KeySpec{Services: []string{"web"}}, nil},
		{"wildcards", registry.KeySpec{Services: []string{"*", "web-*", "*-api"}}, nil},
		{"32 patterns", registry.KeySpec{Services: many(32)}, nil},
		{"256-byte description", registry.KeySpec{Services: []string{"web"}, Description: strings.Repeat("d", 256)}, nil},
		{"no services", registry.KeySpec{}, fieldErr("services")},
		{"empty list", registry.KeySpec{Services: []string{}}, fieldErr("services")},
		{"33 patterns", registry.KeySpec{Services: many(33)}, fieldErr("services")},
		{"empty pattern", registry.KeySpec{Services: []string{""}}, fieldErr("services")},
		{"upper case", registry.KeySpec{Services: []string{"Web"}}, fieldErr("services")},
		{"dot", registry.KeySpec{Services: []string{"web.internal"}}, fieldErr("services")},
		{"one bad among good", registry.KeySpec{Services: []string{"web", "a b"}}, fieldErr("services")},
		{"257-byte description", registry.KeySpec{Services: []string{"web"}, Description: strings.Repeat("d", 257)}, fieldErr("description")},
		{"services checked first", registry.KeySpec{Description: strings.Repeat("d", 257)}, fieldErr("services")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, tc.spec.Validate(), tc.want)
		})
	}
}

func TestRegistry_CreateKey(t *testing.T) {
	good := registry.KeySpec{Services: []string{"web-*"}, Description: "web fleet"}
	for _, tc := range []struct {
		name  string
		token string
		spec  registry.KeySpec
		want  errCheck
	}{
		{"no token", "", good, is(registry.ErrNoCredential)},
		{"wrong token", "guess", good, is(registry.ErrWrongToken)},
		{"wrong token before a bad spec", "guess", registry.KeySpec{}, is(registry.ErrWrongToken)},
		{"no services", adminToken, registry.KeySpec{Description: "x"}, fieldErr("services")},
		{"bad pattern", adminToken, registry.KeySpec{Services: []string{"Web!"}}, fieldErr("services")},
		{"long description", adminToken, registry.KeySpec{Services: []string{"web"}, Description: strings.Repeat("d", 257)}, fieldErr("description")},
		{"created", adminToken, good, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.clock.Advance(1500 * time.Millisecond)
			k, secret, err := r.reg.CreateKey(t.Context(), tc.token, tc.spec)
			checkErr(t, err, tc.want)
			if err != nil {
				if k != nil || secret != "" || len(r.prop.proposed()) != 0 || len(r.cat.Keys()) != 0 {
					t.Fatalf("refused CreateKey returned %v %q, proposed %v", k, secret, r.prop.proposed())
				}
				return
			}
			if !strings.HasPrefix(k.ID, "key_") || len(k.ID) != len("key_")+16 || !strings.HasPrefix(secret, "mk_") || len(secret) != len("mk_")+43 {
				t.Fatalf("key %q, secret %q", k.ID, secret)
			}
			if !bytes.Equal(k.SecretHash, catalog.HashSecret(secret)) {
				t.Fatal("SecretHash is not SHA-256 of the secret")
			}
			if !slices.Equal(k.Services, good.Services) || k.Description != good.Description ||
				!k.CreatedAt.Equal(r.clock.Now().Truncate(time.Second)) || k.CreatedAt.Location() != time.UTC {
				t.Fatalf("key %+v", k)
			}
			cmds := r.prop.proposed()
			if len(cmds) != 1 || cmds[0].Op != catalog.OpCreateKey || cmds[0].Key.ID != k.ID || cmds[0].Reason != "api" {
				t.Fatalf("proposed %+v", cmds)
			}
			stored, ok := r.cat.Key(k.ID)
			if !ok || !bytes.Equal(stored.SecretHash, catalog.HashSecret(secret)) || strings.Contains(string(stored.SecretHash), secret) {
				t.Fatalf("stored %+v", stored)
			}
			// The secret admits its services, and only those.
			if adm, err := r.reg.AdmitKey(context.Background(), secret, "web-1"); err != nil || adm.Service() != "web-1" {
				t.Fatalf("AdmitKey with the new secret: %v", err)
			}
			if _, err := r.reg.AdmitKey(context.Background(), secret, "db"); !errors.Is(err, catalog.ErrKeyScope) {
				t.Fatalf("AdmitKey out of scope: %v", err)
			}
			// Every key is new.
			k2, secret2, err := r.reg.CreateKey(t.Context(), tc.token, tc.spec)
			if err != nil || k2.ID == k.ID || secret2 == secret {
				t.Fatalf("second key %+v %q %v", k2, secret2, err)
			}
		})
	}
}

func TestRegistry_Keys(t *testing.T) {
	r := newRig(t)
	var ids []string
	for range 5 {
		id, _ := r.key(t, "web")
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, tc := range []struct {
		name     string
		notReady bool
		token    string
		want     errCheck
	}{
		{"no token", false, "", is(registry.ErrNoCredential)},
		{"wrong token", false, "guess", is(registry.ErrWrongToken)},
		{"wrong token before not ready", true, "guess", is(registry.ErrWrongToken)},
		{"not ready", true, adminToken, is(registry.ErrNotReady)},
		{"admin", false, adminToken, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.lead.set(!tc.notReady, r.clock.Now().Add(-time.Hour))
			keys, err := r.reg.Keys(context.Background(), tc.token)
			checkErr(t, err, tc.want)
			if err != nil {
				if keys != nil {
					t.Fatalf("refused Keys returned %v", keys)
				}
				return
			}
			var got []string
			for _, k := range keys {
				got = append(got, k.ID)
			}
			if !slices.Equal(got, ids) {
				t.Fatalf("Keys = %v, want %v (sorted by ID)", got, ids)
			}
		})
	}
}

func TestRegistry_RevokeKey(t *testing.T) {
	for _, tc := range []struct {
		name  string
		token string
		id    string // "" means the key created for the test
		want  errCheck
	}{
		{"no token", "", "", is(registry.ErrNoCredential)},
		{"wrong token", "guess", "", is(registry.ErrWrongToken)},
		{"the key's secret is no admin token", "secret", "", is(registry.ErrWrongToken)},
		{"unknown key", adminToken, "key_unknown", is(catalog.ErrNotFound)},
		{"revoked", adminToken, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			keyID, secret := r.key(t, "web")
			in := newInstance(t, secret)
			reg := r.register(t, secret, "web", in, at(in))
			r.prop.reset()
			id, token := tc.id, tc.token
			if id == "" {
				id = keyID
			}
			if token == "secret" {
				token = secret
			}
			err := r.reg.RevokeKey(t.Context(), token, id)
			checkErr(t, err, tc.want)
			_, admitErr := r.reg.AdmitKey(context.Background(), secret, "web")
			if tc.want != nil {
				if admitErr != nil {
					t.Fatalf("the key stopped working after a refused revocation: %v", admitErr)
				}
				return
			}
			cmds := r.prop.proposed()
			if len(cmds) != 1 || cmds[0].Op != catalog.OpRevokeKey || cmds[0].ID != keyID || cmds[0].Reason != "api" {
				t.Fatalf("proposed %+v", cmds)
			}
			checkErr(t, admitErr, is(catalog.ErrKeyRevoked))
			if _, ok := r.cat.Key(keyID); ok {
				t.Fatal("the key is still in the catalog")
			}
			// What the key admitted stays, and keeps heartbeating.
			if _, status, err := r.reg.Heartbeat(t.Context(), reg.ID, reg.Token); err != nil || status != catalog.StatusPassing {
				t.Fatalf("heartbeat of an instance of a revoked key: %q %v", status, err)
			}
			// Revoking twice: the key is gone.
			checkErr(t, r.reg.RevokeKey(t.Context(), adminToken, keyID), is(catalog.ErrNotFound))
		})
	}
}
