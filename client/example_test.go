package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
)

// exampleRegistry starts an embedded registry for the examples and returns
// its URL, an enrolment key for every service, and a stop function. In real
// use the registry is `muster server`, and the URL and key come from
// MUSTER_ADDR and MUSTER_KEY.
func exampleRegistry() (url, key string, stop func()) {
	dir, _ := os.MkdirTemp("", "muster-example")
	cfg := server.DefaultConfig()
	cfg.HTTPAddr, cfg.Cluster.RaftAddr, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", "127.0.0.1:0", dir, adminToken
	cfg.Cluster.HeartbeatTimeout, cfg.Cluster.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond
	s, _ := server.New(cfg)
	s.Start(context.Background())
	s.Ready(context.Background())
	admin, _ := client.New(client.Config{Addr: s.URL(), Token: adminToken})
	k, _ := admin.CreateKey(context.Background(), []string{"*"}, "examples")
	return s.URL(), k.Secret, func() { s.Close(); os.RemoveAll(dir) }
}

// within10s retries f every 10 ms for up to 10 s, so that an example
// fails instead of hanging when something is wrong.
func within10s(f func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return false
}

// A service that registers itself, heartbeats, and deregisters when its
// context ends.
func ExampleServe() {
	registry, key, stop := exampleRegistry()
	defer stop()

	ln, err := net.Listen("tcp", "127.0.0.1:0") // any free port
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- client.Serve(ctx, client.ServiceConfig{
			Name: "greeter", Address: "127.0.0.1", Listener: ln,
			Tags: []string{"v1"}, TTL: 3 * time.Second,
			Registry: registry, Key: key, // default: $MUSTER_ADDR, $MUSTER_KEY
			DrainDelay: 100 * time.Millisecond,
		}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "hello")
		}))
	}()

	c, _ := client.New(client.Config{Addr: registry})
	found := within10s(func() bool {
		res, err := c.Lookup(context.Background(), "greeter", client.WithTag("v1"))
		if err == nil && len(res.Instances) == 1 {
			fmt.Println("greeter is", res.Instances[0].Status)
			return true
		}
		return false
	})
	if !found {
		fmt.Println("greeter never registered")
	}
	cancel()
	fmt.Println("Serve returned:", <-done)
	res, _ := c.Lookup(context.Background(), "greeter")
	fmt.Println("instances after shutdown:", len(res.Instances))
	// Output:
	// greeter is passing
	// Serve returned: <nil>
	// instances after shutdown: 0
}

// A client that calls a service by name: the host of the URL is the
// service name, and the resolver picks a live instance.
func ExampleResolver_HTTPClient() {
	registry, key, stop := exampleRegistry()
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error)
	go func() {
		served <- client.Serve(ctx, client.ServiceConfig{
			Name: "fetch_url", Address: "127.0.0.1", Listener: ln, Registry: registry, Key: key,
			DrainDelay: -1, // no clients to drain away from
		}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "fetched %s", r.URL.Query().Get("url"))
		}))
	}()
	defer func() { cancel(); <-served }()

	c, _ := client.New(client.Config{Addr: registry})
	resolver, _ := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: 100 * time.Millisecond})
	httpc := resolver.HTTPClient()
	ok := within10s(func() bool { // until the service has registered
		resp, err := httpc.Get("http://fetch_url/api/v1/fetchurl/?url=example.org")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(body))
		return true
	})
	if !ok {
		fmt.Println("fetch_url never answered")
	}
	// Output:
	// fetched example.org
}

// A client that follows a service's instances as they change: the
// resolver's event stream delivers each change within milliseconds.
func ExampleResolver_Watch() {
	registry, key, stop := exampleRegistry()
	defer stop()
	c, _ := client.New(client.Config{Addr: registry})
	resolver, _ := client.NewResolver(client.ResolverConfig{Client: c, Logger: slog.New(slog.DiscardHandler)})
	defer resolver.Close() // ends the stream

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sets, err := resolver.Watch(ctx, "greeter")
	if err != nil {
		fmt.Println(err)
		return
	}
	next := func() {
		if res, ok := <-sets; ok {
			fmt.Println("greeter instances:", len(res.Instances))
		}
	}
	next() // the current set, at once

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	svcCtx, stopService := context.WithCancel(ctx)
	served := make(chan error)
	go func() {
		served <- client.Serve(svcCtx, client.ServiceConfig{
			Name: "greeter", Address: "127.0.0.1", Listener: ln, Registry: registry, Key: key,
			DrainDelay: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		}, http.NotFoundHandler())
	}()
	next() // registered
	stopService()
	next() // drained: out of the passing set
	<-served
	// Output:
	// greeter instances: 0
	// greeter instances: 1
	// greeter instances: 0
}

// A registration the registry refuses for good (here, a wrong key) stops
// retrying, and says why through Err, which Run and WaitRegistered
// return too.
func ExampleRegistration_Err() {
	registry, _, stop := exampleRegistry()
	defer stop()

	reg, err := client.NewRegistration(client.ServiceConfig{
		Name: "greeter", Address: "127.0.0.1", Port: 8080,
		Registry: registry, Key: "mk_wrong",
		Logger: slog.New(slog.DiscardHandler), // the default logs to slog.Default()
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go reg.Run(ctx)
	_, err = reg.WaitRegistered(ctx)
	fmt.Println("refused:", errors.Is(err, client.ErrRefused), err == reg.Err())
	fmt.Println("wrong key:", errors.Is(reg.Err(), client.ErrUnauthorized))
	fmt.Println(reg.Err())
	// Output:
	// refused: true true
	// wrong key: true
	// client: registration refused: register: enrolment key is unknown or revoked (401 unauthorized)
}

// The defaults a ServiceConfig's zero fields take.
func ExampleDefaultServiceConfig() {
	cfg := client.DefaultServiceConfig()
	fmt.Println(cfg.Scheme, cfg.TTL, cfg.VerifyPath, cfg.DrainDelay, cfg.MinBackoff, cfg.MaxBackoff)
	cfg.Name, cfg.Address, cfg.Port, cfg.Key = "greeter", "127.0.0.1", 8080, "mk_..."
	cfg.TTL = 30 * time.Second
	fmt.Println(cfg.Validate())
	// Output:
	// http 10s /.well-known/muster/verify 3s 200ms 30s
	// <nil>
}
