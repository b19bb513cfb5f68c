package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/checks"
	"github.com/musterhq/muster/internal/registry"
)

const registerLong = `Register a process that cannot embed the SDK, and keep it registered:
the sidecar answers the registry's verification callback on its own port
of --address, heartbeats until interrupted, and drains and deregisters on
Ctrl-C (or SIGTERM). The callback proves that the process runs at
--address, so the sidecar runs on the same host as the process: --address
must be an address of this host.

With --check-http, --check-tcp or --check-grpc the registry also probes
the process itself on --port, and lists it as passing only while the
sidecar heartbeats and every check passes (three failed probes in a row
make it critical, two good ones bring it back). With --ttl 0 the sidecar
sends no heartbeats at all: the checks alone decide, for a process that
should be judged by itself rather than by its sidecar.

It retries, with backoff, whatever may pass: the registry down, busy or
without a leader (503), a rate limit or quota (429), a callback that
failed (422 verification_failed: the address may not be reachable yet).
It exits with status 1 and the registry's message when the registry
refuses the registration for good: an unknown or revoked key (401), a
name outside the key's patterns (403), a bad request (400), no
registration endpoint at MUSTER_ADDR (404, 405), a conflict (409), or an
address outside the registry's --verify-allow (422 address_not_allowed).

Environment:
` + envAddr + `  MUSTER_KEY    the enrolment key secret (or --key-file)`

// pollState is how often the sidecar looks at its registration's state,
// to report a new instance ID on stdout.
const pollState = 200 * time.Millisecond

func newRegisterCmd(e env) *cobra.Command {
	var (
		name, address, keyFile string
		port, verifyPort       int
		tags, metas            []string
		ttl                    time.Duration
		scheme                 *enumValue
		checkHTTP              []string
		checkTCP, checkGRPC    bool
		grpcService            string
		checkEvery, checkLimit time.Duration
	)
	cmd := &cobra.Command{
		Use:   "register --service NAME --address A --port P [flags]",
		Short: "register a process as a sidecar: answer the callback, heartbeat, deregister on Ctrl-C",
		Long:  registerLong,
		Example: `  MUSTER_KEY=mk_... muster register --service fetch_url --address 127.0.0.1 --port 8888 \
      --tag v2 --meta site=dice.com --ttl 10s
  MUSTER_KEY=mk_... muster register --service db --address 10.0.3.7 --port 5432 --check-tcp`,
		Args: nArgs(0, "no arguments (give --service, --address and --port)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || address == "" || port == 0 {
				return usageError("register needs --service, --address and --port")
			}
			decls := sidecarChecks(checkHTTP, checkTCP, checkGRPC, grpcService, checkEvery, checkLimit)
			if err := checkSidecarFlags(port, verifyPort, ttl, scheme.String(), decls); err != nil {
				return err
			}
			meta := map[string]string{}
			for _, m := range metas {
				k, v, err := parseMeta(m)
				if err != nil {
					return err
				}
				meta[k] = v
			}
			key, err := readKey(e, keyFile)
			if err != nil {
				return err
			}
			if grpcService != "" && !checkGRPC {
				return usageError("--check-grpc-service needs --check-grpc")
			}
			if ttl == 0 && len(decls) == 0 {
				return usageError("--ttl 0 (no heartbeats) needs a check: --check-http, --check-tcp or --check-grpc")
			}
			return sidecar(cmd.Context(), e, client.ServiceConfig{
				Name: name, Address: address, Port: port, Scheme: scheme.String(), Tags: tags, Meta: meta, TTL: ttl,
				Registry: e.envOr("MUSTER_ADDR", client.DefaultAddr), Key: key, VerifyPort: verifyPort, VerifyScheme: "http",
				Checks: decls, ChecksOnly: ttl == 0,
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "service", "", "service name (required)")
	f.StringVar(&address, "address", "", "address clients use to reach the process (required); the sidecar listens on it "+
		"for the registry's callback, so it must be an address of this host (an IP address, or a name that resolves to one)")
	f.IntVar(&port, "port", 0, "port clients use to reach the process, 1 to 65535 (required)")
	scheme = enumFlag(cmd, "scheme", "", "http", "the process's scheme", "http", "https")
	f.StringArrayVar(&tags, "tag", nil, "tag; repeatable")
	f.StringArrayVar(&metas, "meta", nil, "meta key=value (or key:value); repeatable")
	f.DurationVar(&ttl, "ttl", 10*time.Second, "heartbeat TTL, "+shortDuration(registry.MinTTL)+" to "+shortDuration(registry.MaxTTL)+
		"; 0 with a check: no heartbeats, the registry judges the process by its checks alone")
	f.IntVar(&verifyPort, "verify-port", 0, "port on --address where this sidecar answers the registry's callback (default: any free port)")
	f.StringVar(&keyFile, "key-file", "", "read the enrolment key from this file (default: env MUSTER_KEY)")
	f.StringArrayVar(&checkHTTP, "check-http", nil, "ask the registry to GET this path on --port and expect 2xx (an active check); repeatable")
	f.BoolVar(&checkTCP, "check-tcp", false, "ask the registry to connect to --port (an active check)")
	f.BoolVar(&checkGRPC, "check-grpc", false, "ask the registry to call grpc.health.v1 on --port (an active check)")
	f.StringVar(&grpcService, "check-grpc-service", "", "the service name --check-grpc asks about (default: the server as a whole)")
	f.DurationVar(&checkEvery, "check-interval", checks.DefaultInterval, "how often the registry runs each check, "+
		shortDuration(checks.MinInterval)+" to "+shortDuration(checks.MaxInterval))
	f.DurationVar(&checkLimit, "check-timeout", 0, "how long one check may take, "+shortDuration(checks.MinTimeout)+" to "+
		shortDuration(checks.MaxTimeout)+" and at most the interval (default: the smaller of the interval and "+shortDuration(checks.DefaultTimeout)+")")
	cmd.MarkFlagFilename("key-file")
	return cmd
}

// checkSidecarFlags refuses, as a usage error naming the flag, a value
// the registry would refuse (with 400, and the sidecar would exit 1): a
// port out of range, a TTL out of the registry's bounds, a check the
// registry would not run.
func checkSidecarFlags(port, verifyPort int, ttl time.Duration, scheme string, decls []api.CheckDecl) error {
	switch {
	case port < 1 || port > 65535:
		return usagef("--port must be from 1 to 65535, not %d", port)
	case verifyPort < 0 || verifyPort > 65535:
		return usagef("--verify-port must be from 1 to 65535 (or 0 for any free port), not %d", verifyPort)
	case ttl < 0 || ttl > 0 && (ttl < registry.MinTTL || ttl > registry.MaxTTL):
		return usagef("--ttl must be from %s to %s (or 0, with a check, for no heartbeats), not %s",
			shortDuration(registry.MinTTL), shortDuration(registry.MaxTTL), shortDuration(ttl))
	}
	if len(decls) == 0 {
		return nil
	}
	// The flags give every check the same interval and timeout.
	every, _ := time.ParseDuration(decls[0].Interval)
	if every < checks.MinInterval || every > checks.MaxInterval {
		return usagef("--check-interval must be from %s to %s, not %s",
			shortDuration(checks.MinInterval), shortDuration(checks.MaxInterval), shortDuration(every))
	}
	if decls[0].Timeout != "" {
		limit, _ := time.ParseDuration(decls[0].Timeout)
		if limit < checks.MinTimeout || limit > min(checks.MaxTimeout, every) {
			return usagef("--check-timeout must be from %s to %s and at most --check-interval (%s), not %s",
				shortDuration(checks.MinTimeout), shortDuration(checks.MaxTimeout), shortDuration(every), shortDuration(limit))
		}
	}
	// The rest of the registry's rules, in its words, with the flag that
	// set the field named.
	if _, err := checks.Parse(decls, scheme); err != nil {
		var fe *checks.FieldError
		if !errors.As(err, &fe) {
			return usagef("checks: %v", err)
		}
		flag := "--check-http, --check-tcp and --check-grpc"
		switch field := fe.Field[strings.LastIndex(fe.Field, ".")+1:]; field {
		case "path":
			flag = "--check-http"
		case "grpc_service":
			flag = "--check-grpc-service"
		}
		return usagef("%s: %s", flag, fe.Message)
	}
	return nil
}

// sidecarChecks builds the active checks the sidecar's flags ask for.
func sidecarChecks(paths []string, tcp, grpc bool, grpcService string, every, limit time.Duration) []api.CheckDecl {
	var out []api.CheckDecl
	decl := func(typ string) api.CheckDecl {
		d := api.CheckDecl{Type: typ, Interval: every.String()}
		if limit > 0 {
			d.Timeout = limit.String()
		}
		return d
	}
	for _, p := range paths {
		d := decl(api.CheckHTTP)
		d.Path = p
		out = append(out, d)
	}
	if tcp {
		out = append(out, decl(api.CheckTCP))
	}
	if grpc {
		d := decl(api.CheckGRPC)
		d.GRPCService = grpcService
		out = append(out, d)
	}
	return out
}

// sidecar registers cfg's instance, answering its callback on
// cfg.VerifyPort of cfg.Address, until ctx ends or the registry refuses
// it for good.
func sidecar(ctx context.Context, e env, cfg client.ServiceConfig) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.VerifyPort)))
	if err != nil {
		return newListenError(cfg.Address, cfg.VerifyPort, err)
	}
	defer ln.Close()
	cfg.VerifyPort = ln.Addr().(*net.TCPAddr).Port
	cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, nil))
	reg, err := client.NewRegistration(cfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(api.DefaultVerifyPath, reg.VerifyHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	cfg.Logger.Info("sidecar answering verification callbacks", "verify_addr", ln.Addr().String(), "service", cfg.Name)

	// Run retries what may pass and returns at once, with an error that
	// matches client.ErrRefused, when the registry refuses for good.
	ran := make(chan error, 1)
	go func() { ran <- reg.Run(ctx) }()
	printed := "" // the instance ID last reported as registered
	report := func(st client.State, suffix string) {
		if st.InstanceID != "" && st.InstanceID != printed {
			printed = st.InstanceID
			fmt.Fprintf(e.stdout, "registered %s as %s%s\n", cfg.Name, st.InstanceID, suffix)
		}
	}
	tick := time.NewTicker(pollState)
	defer tick.Stop()
	for {
		select {
		case err := <-ran:
			st := reg.State()
			report(st, "")
			var ce *client.Error
			switch {
			case errors.Is(err, client.ErrRefused) && errors.As(err, &ce):
				return refusedError{ce: ce, err: err}
			case err != nil && !errors.Is(err, context.Canceled):
				return err
			case st.InstanceID != "":
				// An instance was registered, and Run deregistered it (or
				// found the registry had already forgotten it).
				fmt.Fprintf(e.stdout, "deregistered %s (%s)\n", cfg.Name, st.InstanceID)
			}
			return nil
		case <-tick.C:
			if st := reg.State(); st.Registered {
				report(st, "; Ctrl-C to deregister")
			}
		}
	}
}

// listenError is the sidecar failing to listen for the verification
// callback on --address; its hint says which flag to change, and how.
type listenError struct {
	address string
	err     error
	hint    string
}

func (e *listenError) Error() string {
	return fmt.Sprintf("listen on %s for the verification callback: %v", e.address, e.err)
}
func (e *listenError) Unwrap() error { return e.err }

// newListenError explains why listening on address, port (0: any) failed.
func newListenError(address string, port int, err error) error {
	le := &listenError{address: net.JoinHostPort(address, strconv.Itoa(port)), err: err}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		le.hint = fmt.Sprintf("--address %s is not an address of this host: the sidecar listens on --address for the registry's "+
			"verification callback, which proves the process runs there, so run muster register on the host that holds %s", address, address)
	case errors.As(err, &dnsErr):
		le.hint = fmt.Sprintf("--address %s does not resolve on this host: give an IP address of this host, or a name that resolves to one", address)
	case errors.Is(err, syscall.EADDRINUSE):
		le.hint = fmt.Sprintf("--verify-port %d is in use on %s: give a free port, or leave --verify-port out for any free one", port, address)
	case errors.Is(err, syscall.EACCES):
		le.hint = fmt.Sprintf("--verify-port %d needs privileges to listen on: give a port above 1023, or leave --verify-port out", port)
	}
	return le
}

// refusedError is the registry refusing the sidecar's registration for
// good; it matches client.ErrRefused and the registry's error.
type refusedError struct {
	ce  *client.Error
	err error
}

func (e refusedError) Error() string {
	msg := fmt.Sprintf("the registry refused the registration: %s (%d %s", e.ce.Message, e.ce.Status, e.ce.Code)
	if e.ce.Field != "" {
		msg += ", field " + e.ce.Field
	}
	return msg + ")"
}
func (e refusedError) Unwrap() error { return e.err }
