package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// newClient returns an SDK client from MUSTER_ADDR and MUSTER_TOKEN.
func (e env) newClient() (*client.Client, error) {
	return client.New(client.Config{Addr: e.envOr("MUSTER_ADDR", client.DefaultAddr), Token: e.getenv("MUSTER_TOKEN")})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runKeys(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("keys needs create, list or revoke: %w", errUsage)
	}
	c, err := e.newClient()
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("muster keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	switch args[0] {
	case "create":
		var services multi
		fs.Var(&services, "service", "service name pattern the key may register; repeatable; * is a wildcard")
		desc := fs.String("description", "", "a note shown in key listings")
		maxInst := fs.Int("max-instances", 0, "the most instances registered with the key at once (0: the server's --max-instances-per-key)")
		out := fs.String("o", "table", "output: table or json")
		pos, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		services = append(services, pos...)
		if len(services) == 0 {
			return fmt.Errorf("keys create needs at least one --service PATTERN: %w", errUsage)
		}
		k, err := c.NewKey(ctx, api.CreateKeyRequest{Services: services, Description: *desc, MaxInstances: *maxInst})
		if err != nil {
			return err
		}
		if *out == "json" {
			return printJSON(e.stdout, k)
		}
		fmt.Fprintf(e.stdout, "id:       %s\nsecret:   %s\nservices: %s\nlimit:    %d instances\n\nThe secret is shown only once. Give it to the services as MUSTER_KEY.\n",
			k.ID, k.Secret, strings.Join(k.Services, ", "), k.MaxInstances)
		return nil
	case "list":
		out := fs.String("o", "table", "output: table or json")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		keys, err := c.Keys(ctx)
		if err != nil {
			return err
		}
		if *out == "json" {
			return printJSON(e.stdout, keys)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSERVICES\tINSTANCES\tCREATED\tDESCRIPTION")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", k.ID, strings.Join(k.Services, ","), k.Instances, k.MaxInstances, k.CreatedAt, k.Description)
		}
		return tw.Flush()
	case "revoke":
		pos, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("keys revoke needs one key ID: %w", errUsage)
		}
		if err := c.RevokeKey(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, "revoked", pos[0])
		return nil
	default:
		return fmt.Errorf("unknown keys command %q: %w", args[0], errUsage)
	}
}

func runServices(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("muster services", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	out := fs.String("o", "table", "output: table or json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, err := e.newClient()
	if err != nil {
		return err
	}
	res, err := c.Services(ctx)
	if err != nil {
		return err
	}
	if *out == "json" {
		return printJSON(e.stdout, res)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCES\tPASSING\tCRITICAL\tDRAINING")
	for _, s := range res.Services {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", s.Name, s.Instances, s.Passing, s.Critical, s.Draining)
	}
	return tw.Flush()
}

func runLookup(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("muster lookup", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var tags, metas multi
	fs.Var(&tags, "tag", "only instances with this tag; repeatable")
	fs.Var(&metas, "meta", "only instances with meta key:value; repeatable")
	status := fs.String("status", "", "passing (default), critical, draining or any")
	out := fs.String("o", "table", "output: table or json")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("lookup needs one service NAME: %w", errUsage)
	}
	var opts []client.LookupOption
	for _, t := range tags {
		opts = append(opts, client.WithTag(t))
	}
	for _, m := range metas {
		k, v, ok := strings.Cut(m, ":")
		if !ok {
			return fmt.Errorf("--meta %q must be key:value: %w", m, errUsage)
		}
		opts = append(opts, client.WithMeta(k, v))
	}
	if *status != "" {
		opts = append(opts, client.WithStatus(*status))
	}
	c, err := e.newClient()
	if err != nil {
		return err
	}
	res, err := c.Lookup(ctx, pos[0], opts...)
	if err != nil {
		return err
	}
	switch *out {
	case "json":
		return printJSON(e.stdout, res)
	case "table":
	default:
		return fmt.Errorf("-o must be table or json: %w", errUsage)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tURL\tSTATUS\tLAST SEEN\tQUALITY\tTAGS\tMETA")
	for _, in := range res.Instances {
		seen := "-"
		if in.LastSeenMS >= 0 {
			seen = fmt.Sprintf("%.1fs", float64(in.LastSeenMS)/1000)
		}
		var meta []string
		for k, v := range in.Meta {
			meta = append(meta, k+"="+v)
		}
		sort.Strings(meta)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%s\t%s\n", in.ID, in.URL, in.Status, seen, in.Quality, strings.Join(in.Tags, ","), strings.Join(meta, ","))
	}
	return tw.Flush()
}

func runDeregister(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("muster deregister", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	token := fs.String("token", "", "the instance's session token (default: MUSTER_TOKEN, the admin token)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("deregister needs one instance ID: %w", errUsage)
	}
	c, err := e.newClient()
	if err != nil {
		return err
	}
	if err := c.Deregister(ctx, pos[0], *token); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "deregistered", pos[0])
	return nil
}
