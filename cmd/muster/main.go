// Command muster is the muster service registry: the server and its CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/bench"
	"github.com/musterhq/muster/internal/server"
)

// version is the release version, set at build time with
// -ldflags "-X main.version=v1.2.3". When empty, `muster version` shows
// the main module's version from the build info, or "dev".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(report(err, os.Getenv, os.Stderr))
}

// env is the process environment as run sees it.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	// serve runs a registry with cfg until ctx ends; tests replace it to
	// see the configuration `muster server` would run.
	serve func(ctx context.Context, e env, cfg server.Config) error
	// bench runs the benchmark suite (bench.Run); tests replace it to see
	// the configuration `muster bench` would run.
	bench func(ctx context.Context, cfg bench.Config) (*bench.Report, error)
}

// run is the whole CLI; main only wires the process to it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return execute(ctx, env{getenv: getenv, stdout: stdout, stderr: stderr, serve: serve, bench: bench.Run}, args)
}

// execute runs the command args name in e.
func execute(ctx context.Context, e env, args []string) error {
	root := newRootCmd(e)
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	if len(args) == 0 || !strings.HasPrefix(args[0], "__complete") {
		args = singleDashLong(root, args)
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if cmd != nil {
		err = inCLITerms(cmd.CommandPath(), err)
	}
	var ce *cmdUsageError
	if errors.Is(err, errUsage) && !errors.As(err, &ce) && err != errDemoMoved && err != errHelpShown {
		err = &cmdUsageError{cmd: cmd.CommandPath(), err: err}
	}
	return err
}

// report tells the user about err on stderr and returns the exit code: 0
// ok, 1 runtime error, 2 usage error. A usage error is one line and a
// pointer to the command's help, never the whole usage.
func report(err error, getenv func(string) string, stderr io.Writer) int {
	if err == nil || err == errHelpShown {
		return exitCode(err)
	}
	fmt.Fprintln(stderr, "muster:", err)
	var ce *cmdUsageError
	if errors.As(err, &ce) {
		fmt.Fprintf(stderr, "Run '%s -h' for usage.\n", ce.cmd)
	} else if h := hint(err, getenv); h != "" {
		fmt.Fprintln(stderr, "hint:", h)
	}
	return exitCode(err)
}

const rootLong = `muster is a service registry for microservices. "muster server" runs a
registry node; the other commands talk to a running registry.

Environment:
  MUSTER_ADDR   the registry's URL (default ` + client.DefaultAddr + `), or several
                servers' of one cluster, separated by commas
  MUSTER_TOKEN  the admin token, for keys, drain, evict, deregister, snapshot save
                and restore, and members remove
  MUSTER_KEY    an enrolment key secret, for register`

// newRootCmd builds the command tree. It holds no state beyond one run.
func newRootCmd(e env) *cobra.Command {
	info := currentBuildInfo()
	root := &cobra.Command{
		Use:               "muster",
		Short:             "a service registry for microservices",
		Long:              rootLong,
		Version:           info.Version,
		SilenceErrors:     true,
		SilenceUsage:      true,
		Args:              noSubcommand,
		RunE:              showGroupHelp(e),
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		Annotations:       map[string]string{"version": info.text()},
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetVersionTemplate(`{{index .Annotations "version"}}`)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &cmdUsageError{cmd: c.CommandPath(), err: err}
	})
	// Commands that are runnable only to refuse a missing or unknown
	// subcommand show the [command] form alone.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(),
		"{{if .Runnable}}", "{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))

	root.SetHelpCommand(newHelpCmd())
	keys := &cobra.Command{
		Use:   "keys",
		Short: "create, list and revoke enrolment keys (admin token)",
		Args:  noSubcommand,
		RunE:  showGroupHelp(e),
	}
	keys.AddCommand(newKeysCreateCmd(e), newKeysListCmd(e), newKeysRevokeCmd(e))
	root.AddCommand(
		newServerCmd(e),
		keys,
		newTokensCmd(e),
		newServicesCmd(e),
		newLookupCmd(e),
		newWatchCmd(e),
		newInstanceCmd(e),
		newDrainCmd(e),
		newEvictCmd(e),
		newDeregisterCmd(e),
		newSnapshotCmd(e),
		newMembersCmd(e),
		newAuditCmd(e),
		newTLSCmd(e),
		newCACmd(e),
		newRegisterCmd(e),
		newAnswerCmd(e),
		newHealthCmd(e),
		newBenchCmd(e),
		newVersionCmd(info),
		newCompletionCmd(),
		&cobra.Command{
			Use:                "demo",
			Hidden:             true,
			DisableFlagParsing: true,
			RunE:               func(*cobra.Command, []string) error { return errDemoMoved },
		},
	)
	return root
}

// noSubcommand refuses arguments to a command that only groups others.
func noSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	cmd.SuggestionsMinimumDistance = 2
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
	}
	return usageError(msg)
}

// showGroupHelp answers a group command given no subcommand: its help, on
// stderr, and exit code 2, as `go` does.
func showGroupHelp(e env) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		cmd.SetOut(e.stderr)
		cmd.Help()
		return errHelpShown
	}
}

// newHelpCmd replaces cobra's help command, which answers an unknown
// topic with the root's help and exit code 0.
func newHelpCmd() *cobra.Command {
	find := func(c *cobra.Command, args []string) (*cobra.Command, error) {
		cmd, rest, err := c.Root().Find(args)
		if err != nil || len(rest) > 0 {
			return nil, usagef("unknown help topic %q", strings.Join(args, " "))
		}
		return cmd, nil
	}
	return &cobra.Command{
		Use:   "help [command]",
		Short: "help about any command",
		Args: func(c *cobra.Command, args []string) error {
			_, err := find(c, args)
			return err
		},
		ValidArgsFunction: func(c *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
			cmd, err := find(c, args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []string
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), prefix) {
					names = append(names, sub.Name()+"\t"+sub.Short)
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, _ := find(c, args)
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			return cmd.Help()
		},
	}
}
