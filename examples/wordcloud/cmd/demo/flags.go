package main

import (
	"errors"
	"flag"
	"fmt"
)

// errUsage marks a command-line mistake; the exit code is 2.
var errUsage = errors.New("usage error")

func exitCode(err error) int {
	if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// parse parses fs's flags from args. The demo's commands take no
// positional arguments, so one is a usage error, not something to ignore.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errors.Join(err, errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	return nil
}
