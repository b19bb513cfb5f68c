package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// errUsage marks a command-line mistake; the exit code is 2.
var errUsage = errors.New("usage error")

// usageError is a command-line mistake whose message says it all: it
// exits with 2 like errUsage, without the "usage error" suffix.
type usageError string

func (e usageError) Error() string        { return string(e) }
func (e usageError) Is(target error) bool { return target == errUsage }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error { return usageError(fmt.Sprintf(format, args...)) }

// cmdUsageError is a usage mistake in a known command: report points at
// that command's -h.
type cmdUsageError struct {
	cmd string // e.g. "muster keys create"
	err error
}

func (e *cmdUsageError) Error() string        { return e.err.Error() }
func (e *cmdUsageError) Unwrap() error        { return e.err }
func (e *cmdUsageError) Is(target error) bool { return target == errUsage }

// errHelpShown answers a bare `muster` or `muster keys`: the help went to
// stderr already, and the exit code is 2.
var errHelpShown = usageError("a command is needed")

// errDemoMoved answers `muster demo`: the word-cloud demo left this binary
// so that it never depends on the examples.
const errDemoMoved = usageError("the demo is its own command now: go run ./examples/wordcloud/cmd/demo")

func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

// envAnnotation is the pflag annotation naming a flag's environment
// variable.
const envAnnotation = "muster_env"

// bindEnv lets the environment variable env set the flag name when the
// command line does not, and says so in the flag's help.
func bindEnv(fs *pflag.FlagSet, name, env string) {
	f := fs.Lookup(name)
	f.Usage += " (env " + env + ")"
	fs.SetAnnotation(name, envAnnotation, []string{env})
}

// flagEnv returns the environment variable bound to f, or "".
func flagEnv(f *pflag.Flag) string {
	if v := f.Annotations[envAnnotation]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// maxPlaceholder is the longest placeholder (the word after a flag's
// name in its help, such as "duration" or "table|json") a flag may have.
// pflag lines every flag's description up after the longest flag and
// placeholder of the command, so one long placeholder pushes every line
// of the command's help to the right.
const maxPlaceholder = 20

// enumValue is a string flag that takes one of a fixed set of values and
// names them when given another.
type enumValue struct {
	value   string
	allowed []string
	fold    bool // compare case-insensitively, keep the lower case
	// placeholder is what the help shows for the value: the values
	// themselves (on|off), or a name (ACTION) when they would be longer
	// than maxPlaceholder, in which case the flag's description lists
	// them.
	placeholder string
}

func (v *enumValue) String() string { return v.value }

// Type is the value's placeholder in the help (pflag shows a flag's type
// there).
func (v *enumValue) Type() string { return v.placeholder }

// named returns the allowed values but the empty one (a flag's "none").
func (v *enumValue) named() []string {
	return slices.DeleteFunc(slices.Clone(v.allowed), func(s string) bool { return s == "" })
}

func (v *enumValue) Set(s string) error {
	if v.fold {
		s = strings.ToLower(s)
	}
	if !slices.Contains(v.allowed, s) {
		return fmt.Errorf("must be one of %s", strings.Join(v.named(), ", "))
	}
	v.value = s
	return nil
}

// enumFlag defines a flag of cmd that takes one of allowed (def first by
// convention), with shell completion of the values. Its help shows the
// values as its placeholder (table|json) when they fit in
// maxPlaceholder, and else a name (ACTION, FORMAT): usage must then list
// the values itself (TestFlags_Placeholders holds every flag to this).
func enumFlag(cmd *cobra.Command, name, short, def, usage string, allowed ...string) *enumValue {
	v := &enumValue{value: def, allowed: allowed}
	if v.placeholder = strings.Join(v.named(), "|"); len(v.placeholder) > maxPlaceholder {
		v.placeholder = placeholderName(name)
	}
	cmd.Flags().VarP(v, name, short, usage)
	cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
	return v
}

// placeholderName is the placeholder of a flag whose values are too
// many to show: FORMAT for --output, else the last word of the flag's
// name in capitals (--log-level LEVEL).
func placeholderName(flag string) string {
	if flag == "output" {
		return "FORMAT"
	}
	return strings.ToUpper(flag[strings.LastIndex(flag, "-")+1:])
}

// orList joins words as a sentence lists them: "a", "a or b", "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// shortDuration formats d as the help texts write durations: 720h, 1h,
// 10s, 100ms, rather than time.Duration's 720h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// parseMeta reads a meta flag's key=value or key:value. Meta keys hold
// neither character (docs/api.md), so the first of them splits.
func parseMeta(s string) (key, value string, err error) {
	i := strings.IndexAny(s, "=:")
	if i <= 0 {
		return "", "", usagef("--meta %q must be key=value (or key:value)", s)
	}
	return s[:i], s[i+1:], nil
}

// singleDashLong rewrites -name to --name for every long flag of the
// command args select. Go's flag package, which muster used before, took
// both forms and printed the single-dash one in its help, so scripts may
// hold them; pflag would read -http-addr as the shorthands -h -t -t ….
// A flag's value and everything after "--" are left alone.
func singleDashLong(root *cobra.Command, args []string) []string {
	out := make([]string, 0, len(args))
	cmd := root
	lookup := func(name string) *pflag.Flag {
		if name == "help" || name == "version" && cmd == root {
			// Defined by cobra only when the command runs.
			return &pflag.Flag{Name: name, NoOptDefVal: "true"}
		}
		if f := cmd.Flags().Lookup(name); f != nil {
			return f
		}
		for c := cmd.Parent(); c != nil; c = c.Parent() {
			if f := c.PersistentFlags().Lookup(name); f != nil {
				return f
			}
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		var f *pflag.Flag
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case strings.HasPrefix(a, "--"):
			f = lookup(strings.SplitN(a[2:], "=", 2)[0])
		case strings.HasPrefix(a, "-") && len(a) > 2:
			name, _, _ := strings.Cut(a[1:], "=")
			if f = lookup(name); f != nil && len(name) > 1 {
				a = "-" + a
			}
		case strings.HasPrefix(a, "-") && len(a) == 2:
			f = cmd.Flags().ShorthandLookup(a[1:])
		default:
			for _, sub := range cmd.Commands() {
				if sub.Name() == a || slices.Contains(sub.Aliases, a) {
					cmd = sub
					break
				}
			}
		}
		out = append(out, a)
		// A flag that takes a value, given without "=", takes the next
		// argument whatever it looks like.
		if f != nil && f.NoOptDefVal == "" && !strings.Contains(a, "=") && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// hint suggests the likely fix for a CLI command's error, or "".
func hint(err error, getenv func(string) string) string {
	var ce *client.Error
	if errors.As(err, &ce) && ce.Op == "register" {
		switch {
		case ce.Code == api.CodeUnauthorized:
			return "the enrolment key (MUSTER_KEY or --key-file) is unknown to this registry or was revoked"
		case ce.Code == api.CodeForbidden:
			return "the enrolment key's service patterns do not admit this name (muster keys list shows them)"
		case ce.Code == api.CodeAddressNotAllowed:
			return "the registry's --verify-allow does not cover --address"
		case ce.Code == api.CodeNotFound || ce.Code == api.CodeMethodNotAllowed:
			return "is MUSTER_ADDR the URL of a muster registry?"
		}
	}
	if le := (*listenError)(nil); errors.As(err, &le) && le.hint != "" {
		return le.hint
	}
	var (
		answer  *client.Error
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		host    x509.HostnameError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &unknown):
		return "the registry's certificate is not signed by a CA this machine trusts: set MUSTER_CACERT to the CA bundle (PEM) that signed it"
	case errors.As(err, &host):
		return "the registry's certificate does not name the host in MUSTER_ADDR: use the name or address it was made for"
	case errors.As(err, &invalid):
		return "the registry's certificate is not valid now (expired, or not yet valid)"
	case strings.Contains(msg, "tls: certificate required"):
		return "the registry asks for a client certificate (--http-tls-client-ca): set MUSTER_CLIENT_CERT and MUSTER_CLIENT_KEY"
	case strings.Contains(msg, "HTTP request to an HTTPS server"):
		return "the registry serves HTTPS: write MUSTER_ADDR as https://..."
	case errors.Is(err, client.ErrUnauthorized) && getenv("MUSTER_TOKEN") == "":
		return "set MUSTER_TOKEN to a token that may do this: the admin token (" + adminTokenSource + "), or one an admin makes with muster tokens create"
	case errors.As(err, &answer) && answer.Field == "service" && errors.Is(err, client.ErrForbidden):
		return "" // the answer names the service the token does not cover
	case errors.Is(err, client.ErrForbidden) && getenv("MUSTER_TOKEN") != "":
		return "MUSTER_TOKEN may not do this: it is unknown, revoked, or of a role that does not allow it (muster tokens list shows the tokens); the admin token is " + adminTokenSource
	case errors.Is(err, client.ErrUnavailable) && !errors.As(err, &answer):
		// No server answered at all (a registry that answered, 503 say,
		// is running: its answer says what is wrong).
		addr := getenv("MUSTER_ADDR")
		if addr == "" {
			addr = client.DefaultAddr
		}
		return "is a registry running at " + addr + "? (MUSTER_ADDR sets where the CLI looks)"
	}
	return ""
}

// adminTokenSource says where a registry's admin token comes from.
const adminTokenSource = "the one its servers were given (MUSTER_ADMIN_TOKEN, or the file --admin-token-file names), " +
	"or else the one a server wrote at its first start to its admin-token file, by default <data-dir>/admin-token"

// inCLITerms rewrites what a registry's answer in err tells an API
// client to do (?stale) in the terms of the command that ran (cmdPath):
// its flag, or the command that has one.
func inCLITerms(cmdPath string, err error) error {
	var answer *client.Error
	if err == nil || !errors.As(err, &answer) {
		return err
	}
	text := err.Error()
	if !strings.Contains(text, "add ?stale") {
		return err
	}
	with := "add --stale to accept it"
	if cmdPath != "muster lookup" {
		with = "accept a replica however far behind with muster lookup NAME --stale"
	}
	return &reworded{err: err, text: strings.ReplaceAll(text, "add ?stale to accept it", with)}
}

// reworded is an error with other words: errors.Is and errors.As see
// the error it rewords.
type reworded struct {
	err  error
	text string
}

func (e *reworded) Error() string { return e.text }
func (e *reworded) Unwrap() error { return e.err }
