package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestCLI_Tokens: tokens create, list and revoke, and a read token used
// as MUSTER_TOKEN against a registry whose reads are private.
func TestCLI_Tokens(t *testing.T) {
	h := testserver.NewHarness(t, func(c *server.Config) { c.Registry.PrivateReads = true })
	admin := map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": h.AdminToken(t)}
	cli := func(env map[string]string, args ...string) (string, string, error) {
		t.Helper()
		out, errOut, _, err := runCLI(t, env, args...)
		return out, errOut, err
	}
	must := func(env map[string]string, args ...string) string {
		t.Helper()
		out, errOut, err := cli(env, args...)
		if err != nil {
			t.Fatalf("muster %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out
	}

	table := must(admin, "tokens", "create", "--role", "operator", "--service", "web", "--ttl", "24h", "--description", "on-call")
	for _, want := range []string{"id:       tok_", "secret:   mt_", "role:     operator", "services: web", "shown only once"} {
		if !strings.Contains(table, want) {
			t.Errorf("tokens create printed %q, want %q in it", table, want)
		}
	}
	secret := strings.TrimSpace(must(admin, "tokens", "create", "--role", "read", "--service", "web*", "-o", "secret"))
	if !strings.HasPrefix(secret, "mt_") {
		t.Fatalf("tokens create -o secret = %q", secret)
	}
	var tok api.Token
	if err := json.Unmarshal([]byte(must(admin, "tokens", "create", "--role", "admin", "-o", "json")), &tok); err != nil || tok.Role != "admin" || tok.Services[0] != "*" {
		t.Fatalf("tokens create --role admin -o json: %+v, %v", tok, err)
	}
	list := must(admin, "tokens", "list")
	if !strings.Contains(list, "ROLE") || strings.Count(list, "tok_") != 3 || !strings.Contains(list, "on-call") || strings.Contains(list, "mt_") {
		t.Errorf("tokens list:\n%s", list)
	}

	// The read token reads what it covers; no token reads nothing.
	key := h.Key(t, "web")
	in := testutil.NewInstance(t, key.Secret, verify.Proof)
	if _, err := h.Anon.Register(context.Background(), "web", key.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "1h"}); err != nil {
		t.Fatal(err)
	}
	reader := map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": secret}
	if out := must(reader, "services", "-o", "id"); out != "web\n" {
		t.Errorf("services with the read token: %q", out)
	}
	_, errOut, err := cli(map[string]string{"MUSTER_ADDR": h.Srv.URL()}, "services")
	if err == nil || !strings.Contains(errOut, "set MUSTER_TOKEN") {
		t.Errorf("services without a token: %v\n%s", err, errOut)
	}
	// A read token manages nothing.
	_, errOut, err = cli(reader, "tokens", "list")
	if err == nil || !strings.Contains(errOut, "neither the admin token nor a token") {
		t.Errorf("tokens list with a read token: %v\n%s", err, errOut)
	}

	// Revoke them all; then the read token reads nothing.
	ids := strings.Fields(must(admin, "tokens", "list", "-o", "id"))
	var toks []string
	for _, id := range ids {
		if strings.HasPrefix(id, "tok_") {
			toks = append(toks, id)
		}
	}
	out := must(admin, append([]string{"tokens", "revoke"}, toks...)...)
	if strings.Count(out, "revoked tok_") != 3 {
		t.Errorf("tokens revoke printed %q", out)
	}
	if _, _, err := cli(reader, "services"); err == nil {
		t.Error("a revoked read token still reads")
	}

	// Usage errors, before any request.
	for _, c := range []struct{ args []string }{
		{[]string{"tokens", "create", "--role", "read"}},
		{[]string{"tokens", "create", "--role", "root", "--service", "web"}},
		{[]string{"tokens", "create", "--role", "read", "--service", "web", "--ttl", "5s"}},
		{[]string{"tokens", "revoke"}},
	} {
		_, _, code, _ := runCLI(t, admin, c.args...)
		if code != 2 {
			t.Errorf("muster %s: exit %d, want 2", strings.Join(c.args, " "), code)
		}
	}
}
