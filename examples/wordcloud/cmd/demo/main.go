package main

import (
	"context"
	"errors"
	"flag"
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
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "demo:", err)
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

const usage = `demo: the tutorial's word-cloud app, rebuilt on muster

  go run ./examples/wordcloud/cmd/demo [-online] [-v]
        start a registry, the services, the sample job board and the
        gateway, all on free ports; Ctrl-C stops them
  go run ./examples/wordcloud/cmd/demo scraper --site SITE [--state FILE]
        add a scraper for SITE to the running demo
        (built-in layouts: dice.com, jobs.example.com, example.org);
        --state names the demo's state file when several demos run

Flags of the first:
  -online   let fetch_url reach the internet instead of the offline sample job board
  -v        show the services' logs
`

// run is the whole command; main only wires the process to it. The
// services run as child processes of this same binary, through the hidden
// "service NAME" command.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	e := env{getenv: getenv, stdout: stdout, stderr: stderr}
	if len(args) > 0 {
		switch args[0] {
		case "scraper":
			return runService(ctx, e, append([]string{"scraper"}, args[1:]...), true)
		case "service":
			return runService(ctx, e, args[1:], false)
		case "-h", "--help", "help":
			fmt.Fprint(stdout, usage)
			return nil
		}
	}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	online := fs.Bool("online", false, "let fetch_url reach the internet instead of the offline sample job board")
	verbose := fs.Bool("v", false, "show the services' logs")
	if err := parse(fs, args); err != nil {
		return err
	}
	return runDemo(ctx, e, *online, *verbose)
}
