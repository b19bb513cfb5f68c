package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/testutil"
)

// TestErrors_NoStutter: however the SDK's errors nest, their text names
// the package once and no operation twice, and errors.Is still finds
// every sentinel on the way.
func TestErrors_NoStutter(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	deadURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	c, _ := client.New(client.Config{Addr: reg.URL()})
	res, _ := client.NewResolver(client.ResolverConfig{Client: c})
	dead, _ := client.New(client.Config{Addr: deadURL})
	deadRes, _ := client.NewResolver(client.ResolverConfig{Client: dead})

	cases := []struct {
		name string
		err  func(t *testing.T) error
		is   []error
	}{
		{"transport, no instances", func(t *testing.T) error {
			_, err := res.HTTPClient().Get("http://nosuchservice/")
			return err
		}, []error{client.ErrNoInstances}},
		{"transport, registry down", func(t *testing.T) error {
			_, err := deadRes.HTTPClient().Get("http://svc/")
			return err
		}, []error{client.ErrUnavailable}},
		{"pick, no instances", func(t *testing.T) error {
			_, err := res.Pick(ctx, "nosuchservice")
			return err
		}, []error{client.ErrNoInstances}},
		{"lookup, registry down", func(t *testing.T) error {
			_, err := dead.Lookup(ctx, "svc")
			return err
		}, []error{client.ErrUnavailable}},
		{"stale cache", func(t *testing.T) error {
			hung, _ := hungRegistry(t)
			hc, _ := client.New(client.Config{Addr: hung.URL})
			r, _ := client.NewResolver(client.ResolverConfig{Client: hc, MaxAge: time.Millisecond, MaxStale: 2 * time.Millisecond,
				RevalidateTimeout: 50 * time.Millisecond, Logger: testutil.Logger(t)})
			if _, err := r.Lookup(ctx, "svc"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			_, err := r.HTTPClient().Get("http://svc/")
			return err
		}, []error{client.ErrStale, client.ErrUnavailable}},
		{"registration refused", func(t *testing.T) error {
			r, err := client.NewRegistration(client.ServiceConfig{Name: "svc", Address: "127.0.0.1", Port: freePort(t),
				Registry: reg.URL(), Key: "mk_not-a-key", Logger: testutil.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			r.Run(ctx)
			return r.Err()
		}, []error{client.ErrRefused, client.ErrUnauthorized}},
		{"deregistration failed", func(t *testing.T) error {
			own := startRegistry(t, t.TempDir(), "127.0.0.1:0")
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			r, err := client.NewRegistration(client.ServiceConfig{Name: "svc", Address: "127.0.0.1", Listener: ln,
				Registry: own.URL(), Key: newKey(t, own.URL(), "svc"), DrainDelay: -1, Logger: testutil.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			hs := &http.Server{Handler: r.VerifyHandler()}
			go hs.Serve(ln)
			defer hs.Close()
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- r.Run(rctx) }()
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			defer wcancel()
			if _, err := r.WaitRegistered(wctx); err != nil {
				t.Fatal(err)
			}
			own.Close() // the registry is gone when the service shuts down
			cancel()
			return <-done
		}, []error{client.ErrUnavailable}},
		{"bad service config", func(t *testing.T) error {
			_, err := client.NewRegistration(client.ServiceConfig{Registry: reg.URL()})
			return err
		}, nil},
		{"bad registry address", func(t *testing.T) error {
			_, err := client.New(client.Config{Addr: "localhost:9000"})
			return err
		}, nil},
		{"serve cannot listen", func(t *testing.T) error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			return client.Serve(ctx, client.ServiceConfig{Name: "svc", Address: "127.0.0.1", Port: port, Registry: reg.URL(), Key: "k"},
				http.NotFoundHandler())
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err(t)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Log(msg)
			if n := strings.Count(msg, "client:"); n != 1 {
				t.Errorf("%q names the package %d times", msg, n)
			}
			parts := strings.Split(msg, ": ")
			for i := 1; i < len(parts); i++ {
				if parts[i] == parts[i-1] {
					t.Errorf("%q repeats %q", msg, parts[i])
				}
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("%q does not match %v", msg, want)
				}
			}
		})
	}
}
