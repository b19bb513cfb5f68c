package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/client"
)

const answerLong = `Answer the registry's verification callback for every registration made
with this enrolment key on this host: for programs that register through
the Consul-compatible API (muster server --consul-addr) with a key whose
consul_verify is callback, the default, and cannot answer the callback
themselves. They name this command's port in their registration's meta,
muster_verify_port; the registry then proves the host, not the port
(proof "address"). It runs until interrupted.

Environment:
  MUSTER_KEY    the enrolment key secret (or --key-file)`

func newAnswerCmd(e env) *cobra.Command {
	var (
		listen, keyFile string
		services        []string
	)
	cmd := &cobra.Command{
		Use:   "answer --listen ADDR [--service PATTERN]... [flags]",
		Short: "answer the registry's callbacks for a key's registrations through the Consul-compatible API",
		Long:  answerLong,
		Example: `  MUSTER_KEY=mk_... muster answer --listen 10.0.3.7:18600 --service 'web*'
  # and in the Consul registration: "Meta": {"muster_verify_port": "18600"}`,
		Args: nArgs(0, "no arguments (give --listen)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listen == "" {
				return usageError("answer needs --listen ADDR, an address of this host and a port")
			}
			key, err := readKey(e, keyFile)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			log := slog.New(slog.NewTextHandler(e.stderr, nil))
			srv := &http.Server{Handler: client.AnswerCallbacks(key, log, services...), ReadHeaderTimeout: 10 * time.Second,
				ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
			go srv.Serve(ln)
			defer srv.Close()
			what := "every service"
			if len(services) > 0 {
				what = strings.Join(services, ", ")
			}
			fmt.Fprintf(e.stdout, "answering callbacks on %s for %s; Ctrl-C to stop\n", ln.Addr(), what)
			<-cmd.Context().Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "address and port to answer on (required): the registry calls the registration's address at this port")
	f.StringArrayVar(&services, "service", nil, "answer only for services matching this pattern; repeatable; * is a wildcard (default: every service)")
	f.StringVar(&keyFile, "key-file", "", "read the enrolment key from this file (default: env MUSTER_KEY)")
	cmd.MarkFlagFilename("key-file")
	return cmd
}

// readKey is the enrolment key: the file's, else MUSTER_KEY's.
func readKey(e env, keyFile string) (string, error) {
	key := e.getenv("MUSTER_KEY")
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return "", fmt.Errorf("--key-file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	if key == "" {
		return "", usageError("an enrolment key is required: set MUSTER_KEY or --key-file")
	}
	return key, nil
}
