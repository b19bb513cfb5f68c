package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/musterhq/muster/client"
)

// TestNew_MusterAddr: an empty Config.Addr takes $MUSTER_ADDR, as
// ServiceConfig.Registry does; an Addr that is set wins over it.
func TestNew_MusterAddr(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	ctx := context.Background()
	for _, tc := range []struct {
		name, env, addr string
	}{
		{"from MUSTER_ADDR", reg.URL(), ""},
		{"Addr wins over MUSTER_ADDR", dead, reg.URL()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MUSTER_ADDR", tc.env)
			c, err := client.New(client.Config{Addr: tc.addr})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Services(ctx); err != nil {
				t.Fatalf("the client did not reach the registry at %s: %v", reg.URL(), err)
			}
		})
	}
	t.Run("bad MUSTER_ADDR is named", func(t *testing.T) {
		t.Setenv("MUSTER_ADDR", "localhost:9000")
		_, err := client.New(client.Config{})
		if err == nil || !strings.Contains(err.Error(), "$MUSTER_ADDR") || !strings.Contains(err.Error(), "localhost:9000") {
			t.Fatalf("New: %v; want an error naming $MUSTER_ADDR and its value", err)
		}
	})
	t.Run("resolver through MUSTER_ADDR", func(t *testing.T) {
		key := newKey(t, reg.URL(), "echo")
		startBackend(t, reg.URL(), key, "echo", "ok")
		t.Setenv("MUSTER_ADDR", reg.URL())
		c, _ := client.New(client.Config{})
		res, _ := client.NewResolver(client.ResolverConfig{Client: c})
		if _, err := res.Pick(ctx, "echo"); err != nil {
			t.Fatal(err)
		}
	})
}
