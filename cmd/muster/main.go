// Command muster is the muster service registry: the server and its CLI.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "muster:", err)
		if h := hint(err, os.Getenv); h != "" {
			fmt.Fprintln(os.Stderr, "hint:", h)
		}
		os.Exit(exitCode(err))
	}
}

// env is the process environment as run sees it.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

const usage = `muster: a service registry for microservices

Usage:
  muster server [flags]                       run a registry node
  muster keys create --service PATTERN...     create an enrolment key
  muster keys list                            list enrolment keys
  muster keys revoke ID                       revoke an enrolment key
  muster services                             list services
  muster lookup NAME [--tag T] [--meta k:v] [--status S] [-o table|json]
  muster deregister ID                        remove an instance (admin token)
  muster register --service NAME --address A --port P [--tag T] [--meta k=v] [--ttl D]
                                              register a process as a sidecar: answer the
                                              callback, heartbeat, deregister on Ctrl-C
  muster version

CLI commands read MUSTER_ADDR (default http://127.0.0.1:9000),
MUSTER_TOKEN (the admin token) and, for register, MUSTER_KEY (an enrolment
key secret). Run "muster COMMAND -h" for a command's flags.
`

// run is the whole CLI; main only wires the process to it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	e := env{getenv: getenv, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "server":
		return runServer(ctx, e, args[1:])
	case "keys":
		return runKeys(ctx, e, args[1:])
	case "services":
		return runServices(ctx, e, args[1:])
	case "lookup":
		return runLookup(ctx, e, args[1:])
	case "deregister":
		return runDeregister(ctx, e, args[1:])
	case "register":
		return runRegister(ctx, e, args[1:])
	case "demo":
		return errDemoMoved
	case "version":
		fmt.Fprintln(stdout, "muster", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q: %w", args[0], errUsage)
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"
