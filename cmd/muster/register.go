package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// runRegister is the sidecar: it registers a process that cannot embed the
// SDK, answers the verification callback on its own port of the same
// address, heartbeats until interrupted, and deregisters on the way out.
func runRegister(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("muster register", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	name := fs.String("service", "", "service name (required)")
	address := fs.String("address", "", "address clients use to reach the process (required)")
	port := fs.Int("port", 0, "port clients use to reach the process (required)")
	scheme := fs.String("scheme", "http", "http or https")
	var tags, metas multi
	fs.Var(&tags, "tag", "tag; repeatable")
	fs.Var(&metas, "meta", "meta key=value (or key:value); repeatable")
	ttl := fs.Duration("ttl", 10*time.Second, "heartbeat TTL")
	verifyPort := fs.Int("verify-port", 0, "port on --address where this sidecar answers the registry's callback (default: any free port)")
	keyFile := fs.String("key-file", "", "read the enrolment key from this file (default: $MUSTER_KEY)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *name == "" || *address == "" || *port == 0 {
		return fmt.Errorf("register needs --service, --address and --port: %w", errUsage)
	}
	meta := map[string]string{}
	for _, m := range metas {
		k, v, ok := strings.Cut(m, "=")
		if !ok {
			k, v, ok = strings.Cut(m, ":")
		}
		if !ok || k == "" {
			return fmt.Errorf("--meta %q must be key=value: %w", m, errUsage)
		}
		meta[k] = v
	}
	key := e.getenv("MUSTER_KEY")
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("--key-file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	if key == "" {
		return fmt.Errorf("an enrolment key is required: set MUSTER_KEY or --key-file: %w", errUsage)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*address, strconv.Itoa(*verifyPort)))
	if err != nil {
		return fmt.Errorf("listen for the verification callback: %w", err)
	}
	defer ln.Close()
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	reg, err := client.NewRegistration(client.ServiceConfig{
		Name: *name, Address: *address, Port: *port, Scheme: *scheme, Tags: tags, Meta: meta, TTL: *ttl,
		Registry: e.envOr("MUSTER_ADDR", client.DefaultAddr), Key: key,
		VerifyPort: ln.Addr().(*net.TCPAddr).Port, VerifyScheme: "http", Logger: log,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(api.DefaultVerifyPath, reg.VerifyHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	log.Info("sidecar answering verification callbacks", "verify_addr", ln.Addr().String(), "service", *name)
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		if st, err := reg.WaitRegistered(ctx); err == nil {
			fmt.Fprintf(e.stdout, "registered %s as %s; Ctrl-C to deregister\n", *name, st.InstanceID)
		}
	}()
	err = reg.Run(ctx)
	<-printed
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Fprintf(e.stdout, "deregistered %s\n", *name)
	return nil
}
