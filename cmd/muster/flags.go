package main

import (
	"errors"
	"flag"
	"strings"

	"github.com/musterhq/muster/client"
)

// errUsage marks a command-line mistake; the exit code is 2.
var errUsage = errors.New("usage error")

// usageError is a command-line mistake whose message says it all: it
// exits with 2 like errUsage, without the "usage error" suffix.
type usageError string

func (e usageError) Error() string        { return string(e) }
func (e usageError) Is(target error) bool { return target == errUsage }

// errDemoMoved answers `muster demo`: the word-cloud demo left this binary
// so that it never depends on the examples.
const errDemoMoved = usageError("the demo is its own command now: go run ./examples/wordcloud/cmd/demo")

func exitCode(err error) int {
	if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// parse parses flags that may come before or after positional arguments
// ("lookup NAME --tag x") and returns the positionals.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errors.Join(err, errUsage)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// given reports whether the flag name was set on the command line.
func given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// envOr returns the environment value of name, or def.
func (e env) envOr(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

// hint suggests the likely fix for a CLI command's error, or "".
func hint(err error, getenv func(string) string) string {
	switch {
	case errors.Is(err, client.ErrUnauthorized) && getenv("MUSTER_TOKEN") == "":
		return "set MUSTER_TOKEN to the admin token, e.g. export MUSTER_TOKEN=$(cat muster-data/admin-token)"
	case errors.Is(err, client.ErrForbidden) && getenv("MUSTER_TOKEN") != "":
		return "MUSTER_TOKEN is not this registry's admin token (see <data-dir>/admin-token)"
	case errors.Is(err, client.ErrUnavailable):
		addr := getenv("MUSTER_ADDR")
		if addr == "" {
			addr = client.DefaultAddr
		}
		return "is a registry running at " + addr + "? (MUSTER_ADDR sets where the CLI looks)"
	}
	return ""
}
