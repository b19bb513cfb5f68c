package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/registry"
)

// newClient returns an SDK client from MUSTER_ADDR and MUSTER_TOKEN.
func (e env) newClient() (*client.Client, error) {
	return e.newClientTimeout(0)
}

// newClientTimeout is newClient with a timeout of each request (0: the
// SDK's default). An https:// registry is trusted as MUSTER_CACERT says,
// with the client certificate of MUSTER_CLIENT_CERT and
// MUSTER_CLIENT_KEY.
func (e env) newClientTimeout(timeout time.Duration) (*client.Client, error) {
	tlsCfg, err := client.TLSFromEnv(e.getenv)
	if err != nil {
		return nil, err
	}
	return client.New(client.Config{Addr: e.envOr("MUSTER_ADDR", client.DefaultAddr), Token: e.getenv("MUSTER_TOKEN"),
		Timeout: timeout, TLS: tlsCfg})
}

// envOr returns the environment value of name, or def.
func (e env) envOr(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

// Environment blocks of the client commands' help.
const (
	envAddr = "  MUSTER_ADDR   the registry's URL (default " + client.DefaultAddr + "), or several servers' separated by commas\n" +
		"  MUSTER_CACERT the CA bundle (PEM) that signed an https:// registry's certificate, instead of the system's\n" +
		"  MUSTER_CLIENT_CERT, MUSTER_CLIENT_KEY\n" +
		"                the client certificate and key, for a registry that requires one (--http-tls-client-ca)\n"
	envToken = "  MUSTER_TOKEN  the admin token, or a token whose role may do this (muster tokens)\n"
)

func withEnv(long string, vars ...string) string {
	return long + "\n\nEnvironment:\n" + strings.TrimSuffix(strings.Join(vars, ""), "\n")
}

// nArgs requires exactly n positional arguments, described by what.
func nArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s", strings.TrimPrefix(cmd.CommandPath(), "muster "), what)
		}
		return nil
	}
}

// completeServices completes a service name from the registry's list.
func completeServices(e env) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := e.newClient()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
		defer cancel()
		res, err := c.Services(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, s := range res.Services {
			names = append(names, s.Name)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func newKeysCreateCmd(e env) *cobra.Command {
	var (
		services []string
		desc     string
		maxInst  int
		out      *enumValue
		cbTLS    *enumValue
		consul   *enumValue
	)
	cmd := &cobra.Command{
		Use:   "create --service PATTERN... [flags]",
		Short: "create an enrolment key; its secret is shown once",
		Long: withEnv(`Create an enrolment key that may register the services its patterns
match ("*" matches any run of characters). The secret is shown only once:
give it to the services as MUSTER_KEY. Patterns may also be given as
arguments.`, envAddr, envToken),
		Example: `  muster keys create --service 'fetch_*' --service dice_scraper
  muster keys create --service web -o json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			services = append(services, args...)
			if len(services) == 0 {
				return usageError("keys create needs at least one --service PATTERN")
			}
			if maxInst < 0 || maxInst > registry.MaxKeyInstances {
				return usagef("--max-instances must be from 0 (the server's --max-instances-per-key) to %d, not %d", registry.MaxKeyInstances, maxInst)
			}
			c, err := e.newClient()
			if err != nil {
				return err
			}
			k, err := c.NewKey(cmd.Context(), api.CreateKeyRequest{Services: services, Description: desc, MaxInstances: maxInst,
				CallbackTLS: cbTLS.String(), ConsulVerify: consul.String()})
			if err != nil {
				return err
			}
			if out.String() == "secret" { // for MUSTER_KEY=$(muster keys create ... -o secret)
				_, err := fmt.Fprintln(e.stdout, k.Secret)
				return err
			}
			return printOut(e.stdout, out.String(), k, []string{k.ID}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "id:       %s\nsecret:   %s\nservices: %s\nlimit:    %s\n\nThe secret is shown only once. Give it to the services as MUSTER_KEY.\n",
					k.ID, k.Secret, strings.Join(k.Services, ", "), count(k.MaxInstances, "instance"))
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&services, "service", nil, "service name pattern the key may register; repeatable; * is a wildcard")
	f.StringVar(&desc, "description", "", "a note shown in key listings")
	f.IntVar(&maxInst, "max-instances", 0, "the most instances registered with the key at once, up to "+strconv.Itoa(registry.MaxKeyInstances)+
		" (0: the server's --max-instances-per-key)")
	cbTLS = enumFlag(cmd, "callback-tls", "", "verify",
		"how the certificate of the key's https verification callbacks is checked: verify (against the registry's --verify-ca or the system's roots), or any (accept any, for instances with self-signed certificates; the proof still binds the answer to the key)",
		"verify", "any")
	consul = enumFlag(cmd, "consul-verify", "", "callback",
		"whether registrations with the key through the Consul-compatible API (--consul-addr) must pass the address callback: callback, or none (the address is taken on the key's word)",
		"callback", "none")
	out = enumFlag(cmd, "output", "o", "table",
		"output format: table; json or yaml (the registry's answer, same field names); id (the key's ID); secret (the secret alone)",
		"table", "json", "yaml", "id", "secret")
	return cmd
}

func newKeysListCmd(e env) *cobra.Command {
	var out *enumValue
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "list enrolment keys",
		Long:  withEnv("List the enrolment keys, without their secrets.", envAddr, envToken),
		Args:  nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			keys, err := c.Keys(cmd.Context())
			if err != nil {
				return err
			}
			var ids []string
			for _, k := range keys {
				ids = append(ids, k.ID)
			}
			return printOut(e.stdout, out.String(), keys, ids, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSERVICES\tINSTANCES\tCALLBACK\tCREATED\tDESCRIPTION")
				for _, k := range keys {
					fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", k.ID, strings.Join(k.Services, ","), k.Instances, k.MaxInstances, callbackPolicy(k),
						k.CreatedAt, k.Description)
				}
				return tw.Flush()
			})
		},
	}
	out = outputFlag(cmd, "the key IDs alone, one a line")
	return cmd
}

// callbackPolicy says how a key's registrations are called back: the
// default (verify), any certificate accepted (tls any), none through the
// Consul-compatible API (consul none).
func callbackPolicy(k api.Key) string {
	var p []string
	if k.CallbackTLS == "any" {
		p = append(p, "tls any")
	}
	if k.ConsulVerify == "none" {
		p = append(p, "consul none")
	}
	if len(p) == 0 {
		return "verify"
	}
	return strings.Join(p, ", ")
}

func newKeysRevokeCmd(e env) *cobra.Command {
	cmd := newRevokeCmd(e, "key", func(c *client.Client) func(context.Context, string) error { return c.RevokeKey },
		func(ctx context.Context, c *client.Client) ([]api.Key, error) { return c.Keys(ctx) })
	cmd.Short = "revoke enrolment keys"
	cmd.Long = withEnv(`Revoke enrolment keys: each registers nothing more. Instances they
registered stay until they leave or expire.

Each ID is revoked in turn, and a line on stdout says so. One that
cannot be (an unknown ID, say) is reported on stderr and the rest are
still tried; the exit status is then 1. When the registry refuses the
admin token, the IDs after the first are not tried: they would be
refused alike.`, envAddr, envToken)
	cmd.Example = `  muster keys revoke key_2283c8f7f3a26b48
  muster keys revoke $(muster keys list -o id)    # every key`
	return cmd
}

// newRevokeCmd is "keys revoke" and "tokens revoke": each ID revoked in
// turn; noun is what they are.
func newRevokeCmd(e env, noun string, revoker func(*client.Client) func(context.Context, string) error,
	list func(context.Context, *client.Client) ([]api.Key, error)) *cobra.Command {
	return &cobra.Command{
		Use: "revoke ID...",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%ss revoke needs one %s ID or more", noun, noun)
			}
			return nil
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			c, err := e.newClient()
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
			defer cancel()
			keys, _ := list(ctx, c)
			var ids []string
			for _, k := range keys {
				if !slices.Contains(args, k.ID) {
					ids = append(ids, k.ID+"\t"+strings.Join(k.Services, ","))
				}
			}
			return ids, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			revoke := revoker(c)
			var ids []string // args, each once
			for _, id := range args {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
			re := &revokeError{noun: noun, asked: len(ids)}
			for i, id := range ids {
				err := revoke(cmd.Context(), id)
				if err == nil {
					fmt.Fprintln(e.stdout, "revoked", id)
					continue
				}
				if len(ids) == 1 {
					return err
				}
				re.failed = append(re.failed, id)
				if re.err == nil {
					re.err = err
				}
				refused := errors.Is(err, client.ErrUnauthorized) || errors.Is(err, client.ErrForbidden) || cmd.Context().Err() != nil
				if refused && i < len(ids)-1 {
					re.err, re.untried = err, ids[i+1:]
					return re
				}
				fmt.Fprintf(e.stderr, "muster: %s: %v\n", id, err)
			}
			if len(re.failed) > 0 {
				return re
			}
			return nil
		},
	}
}

// revokeError is keys (or tokens) revoke failing to revoke some of the
// keys asked for. It unwraps to err, so that report gives err's hint.
type revokeError struct {
	noun    string   // key or token
	asked   int      // keys asked for
	failed  []string // the IDs that failed, each reported as it failed but the last if untried is set
	untried []string // the IDs not tried, after a refusal that would refuse them alike
	err     error    // the refusal that stopped it, or else the first failure
}

func (e *revokeError) Error() string {
	if len(e.untried) > 0 {
		return fmt.Sprintf("%s: %v; not tried, as the registry would refuse them alike: %s",
			e.failed[len(e.failed)-1], e.err, strings.Join(e.untried, ", "))
	}
	return fmt.Sprintf("revoked %d of %d %ss; not revoked: %s (why is above)", e.asked-len(e.failed), e.asked, e.noun, strings.Join(e.failed, ", "))
}
func (e *revokeError) Unwrap() error { return e.err }

func newServicesCmd(e env) *cobra.Command {
	var out *enumValue
	cmd := &cobra.Command{
		Use:   "services [flags]",
		Short: "list services with their instance counts",
		Long:  withEnv("List the services with their instances counted by status. With -o id, the names alone.", envAddr),
		Args:  nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			res, err := c.Services(cmd.Context())
			if err != nil {
				return err
			}
			var names []string
			for _, s := range res.Services {
				names = append(names, s.Name)
			}
			return printOut(e.stdout, out.String(), res, names, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SERVICE\tINSTANCES\tPASSING\tCRITICAL\tDRAINING")
				for _, s := range res.Services {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", s.Name, s.Instances, s.Passing, s.Critical, s.Draining)
				}
				return tw.Flush()
			})
		},
	}
	out = outputFlag(cmd, "the service names alone, one a line")
	return cmd
}

func newLookupCmd(e env) *cobra.Command {
	var (
		tags, metas       []string
		out               *enumValue
		status            *enumValue
		consistent, stale bool
	)
	cmd := &cobra.Command{
		Use:   "lookup NAME [flags]",
		Short: "look up a service's instances",
		Long: withEnv(`Look up a service's instances: the passing ones unless --status says
otherwise. With several --tag or --meta, an instance must match them all.

When no instance matches, the table is empty and a line on stderr says
why: no service has that name, or how many of its instances have
another status (--status any shows them), or none has the --tag and
--meta given. The exit status is 0 all the same, since an empty answer
is an answer; -o id then prints nothing, and json and yaml an empty
list, with no note.`, envAddr),
		Example: `  muster lookup fetch_url --tag v2 --meta site=dice.com
  muster lookup fetch_url --status any -o json
  muster lookup fetch_url --consistent
  ID=$(muster lookup fetch_url -o id | head -n 1)`,
		Args:              nArgs(1, "one service NAME"),
		ValidArgsFunction: completeServices(e),
		RunE: func(cmd *cobra.Command, args []string) error {
			var filters, mode []client.LookupOption // tags and meta; the read's mode
			for _, t := range tags {
				filters = append(filters, client.WithTag(t))
			}
			for _, m := range metas {
				k, v, err := parseMeta(m)
				if err != nil {
					return err
				}
				filters = append(filters, client.WithMeta(k, v))
			}
			switch {
			case consistent && stale:
				return usagef("--consistent and --stale exclude each other")
			case consistent:
				mode = append(mode, client.WithConsistent())
			case stale:
				mode = append(mode, client.WithStale())
			}
			opts := slices.Concat(filters, mode)
			if s := status.String(); s != "" {
				opts = append(opts, client.WithStatus(s))
			}
			c, err := e.newClient()
			if err != nil {
				return err
			}
			res, err := c.Lookup(cmd.Context(), args[0], opts...)
			if err != nil {
				return err
			}
			var ids []string
			for _, in := range res.Instances {
				ids = append(ids, in.ID)
			}
			return printOut(e.stdout, out.String(), res, ids, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tURL\tSTATUS\tLAST SEEN\tQUALITY\tTAGS\tMETA")
				for _, in := range res.Instances {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%s\t%s\n", in.ID, in.URL, in.Status, lastSeen(in.LastSeenMS),
						in.Quality, strings.Join(in.Tags, ","), formatMeta(in.Meta))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				for _, ev := range res.Evicted {
					reason := ""
					if ev.Reason != "" {
						reason = " (" + ev.Reason + ")"
					}
					fmt.Fprintf(w, "evicted: %s until %s%s\n", hostPort(ev.Address, ev.Port), ev.Until, reason)
				}
				if len(res.Instances) == 0 {
					// Only here, for people: scripts read -o id or json.
					fmt.Fprintln(e.stderr, "muster:", emptyLookupNote(cmd.Context(), c, args[0], res, status.String(), filters, mode))
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&tags, "tag", nil, "only instances with this tag; repeatable")
	f.StringArrayVar(&metas, "meta", nil, "only instances with this meta key=value (or key:value); repeatable")
	status = enumFlag(cmd, "status", "", "", "instances of this status: passing (the default), critical, draining or any",
		"passing", "critical", "draining", "any")
	f.BoolVar(&consistent, "consistent", false, "in a cluster, read through the leader: the answer shows every write acknowledged before the lookup began, "+
		"at the cost of a round trip to a majority; it fails when no leader confirms within 2s")
	f.BoolVar(&stale, "stale", false, "in a cluster, take the answering server's replica however far behind it is")
	out = outputFlag(cmd, "the instance IDs alone, one a line")
	return cmd
}

// emptyLookupNote says why the lookup of name with status (""
// for passing), filters and mode answered res, which has no instances:
// a service never registered has index 0; else a lookup of any status
// with the same filters counts the instances of each status. That second
// lookup failing leaves the note without counts.
func emptyLookupNote(ctx context.Context, c *client.Client, name string, res client.Result, status string,
	filters, mode []client.LookupOption) string {
	if res.Index == 0 {
		return fmt.Sprintf("no service named %s (muster services lists the services)", name)
	}
	with := ""
	if len(filters) > 0 {
		with = " with the --tag and --meta given"
	}
	if status == "" {
		status = api.StatusPassing
	}
	if status == "any" {
		if with != "" {
			return fmt.Sprintf("no instance of %s has the --tag and --meta given", name)
		}
		return fmt.Sprintf("%s has no instances now", name)
	}
	all, err := c.Lookup(ctx, name, slices.Concat(filters, mode, []client.LookupOption{client.WithStatus("any")})...)
	if err != nil {
		return fmt.Sprintf("no %s instances of %s%s", status, name, with)
	}
	if len(all.Instances) == 0 {
		if with != "" {
			return fmt.Sprintf("no instance of %s, of any status, has the --tag and --meta given", name)
		}
		return fmt.Sprintf("%s has no instances now", name)
	}
	n := map[string]int{}
	for _, in := range all.Instances {
		n[in.Status]++
	}
	var others []string
	for _, st := range []string{api.StatusPassing, api.StatusDraining, api.StatusCritical} {
		if st != status {
			others = append(others, fmt.Sprintf("%d %s", n[st], st))
		}
	}
	return fmt.Sprintf("no %s instances of %s%s (%s; --status any shows them)", status, name, with, strings.Join(others, ", "))
}

func lastSeen(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fs", float64(ms)/1000)
}

// formatMeta prints meta as key=value pairs in key order, the one form
// the CLI prints (it reads key=value and key:value).
func formatMeta(m map[string]string) string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func newInstanceCmd(e env) *cobra.Command {
	var out *enumValue
	cmd := &cobra.Command{
		Use:   "instance ID [flags]",
		Short: "show one instance, whatever its status",
		Long:  withEnv("Show one instance, whatever its status.", envAddr),
		Args:  nArgs(1, "one instance ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			in, err := c.Instance(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printOut(e.stdout, out.String(), in, []string{in.ID}, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				for _, row := range [][2]string{
					{"id", in.ID}, {"service", in.Service}, {"url", in.URL}, {"status", in.Status},
					{"last seen", lastSeen(in.LastSeenMS)}, {"ttl", (time.Duration(in.TTLMS) * time.Millisecond).String()},
					{"quality", fmt.Sprintf("%.2f", in.Quality)}, {"tags", strings.Join(in.Tags, ",")},
					{"meta", formatMeta(in.Meta)}, {"proof", in.Proof}, {"registered", in.RegisteredAt},
				} {
					fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
				}
				for _, c := range in.Checks {
					// Why an instance is critical, when a check says so.
					when := "not probed yet"
					if c.LastRunMS >= 0 {
						when = lastSeen(c.LastRunMS) + " ago"
					}
					fmt.Fprintf(tw, "check %s:\t%s (%s) %s\n", c.Type, c.Status, when, c.Output)
				}
				return tw.Flush()
			})
		},
	}
	out = outputFlag(cmd, "the instance's ID alone")
	return cmd
}

func newDrainCmd(e env) *cobra.Command {
	var token string
	cmd := &cobra.Command{
		Use:   "drain ID [flags]",
		Short: "take an instance out of default lookups before it leaves",
		Long: withEnv(`Drain an instance: it stays registered and keeps heartbeating, but leaves
default lookups (muster lookup NAME --status draining shows it). Only
registering again undoes it.`, envAddr, envToken),
		Args: nArgs(1, "one instance ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			res, err := c.Drain(cmd.Context(), args[0], token)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "drained %s (status %s)\n", args[0], res.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&token, "token", "", "the instance's session token (default: MUSTER_TOKEN, the admin token)")
	return cmd
}

func newDeregisterCmd(e env) *cobra.Command {
	var token string
	cmd := &cobra.Command{
		Use:   "deregister ID [flags]",
		Short: "remove an instance",
		Long:  withEnv("Remove an instance from the registry at once.", envAddr, envToken),
		Args:  nArgs(1, "one instance ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			if err := c.Deregister(cmd.Context(), args[0], token); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "deregistered", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&token, "token", "", "the instance's session token (default: MUSTER_TOKEN, the admin token)")
	return cmd
}
