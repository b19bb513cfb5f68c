package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/registry"
	"github.com/spf13/cobra"
)

// newTokensCmd is "muster tokens": tokens of every role, enrolment keys
// among them.
func newTokensCmd(e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "create, list and revoke tokens of a role: read, register, operator, admin (admin token)",
		Args:  noSubcommand,
		RunE:  showGroupHelp(e),
	}
	cmd.AddCommand(newTokensCreateCmd(e), newTokensListCmd(e), newTokensRevokeCmd(e))
	return cmd
}

func newTokensCreateCmd(e env) *cobra.Command {
	var (
		services []string
		desc     string
		ttl      time.Duration
		maxInst  int
		role     *enumValue
		cbTLS    *enumValue
		consul   *enumValue
		out      *enumValue
	)
	cmd := &cobra.Command{
		Use:   "create --role ROLE --service PATTERN... [flags]",
		Short: "create a token of a role; its secret is shown once",
		Long: withEnv(`Create a token whose holder may do what its role allows, for the
services its patterns match ("*" matches any run of characters):

  read      look services up, list them, stream their changes, read
            their instances (all anyone may do, unless the registry
            runs with --anonymous-reads=false)
  register  register instances: an enrolment key, as keys create makes
  operator  drain, deregister and evict any instance of its services,
            and read the audit trail's records of them; and read
  admin     everything the admin token may do (its services are "*")

The secret is shown only once. With --ttl the token expires, by the
registry's clock; expired or not, it stays listed until it is revoked.`, envAddr, envToken),
		Example: `  muster tokens create --role read --service 'fetch_*' --ttl 24h
  muster tokens create --role operator --service web --description on-call
  MUSTER_TOKEN=$(muster tokens create --role read --service web -o secret) muster lookup web`,
		RunE: func(cmd *cobra.Command, args []string) error {
			services = append(services, args...)
			if len(services) == 0 && role.String() != "admin" {
				return usageError("tokens create needs at least one --service PATTERN")
			}
			if ttl != 0 && (ttl < registry.MinTokenTTL || ttl > registry.MaxTokenTTL) {
				return usagef("--ttl must be from %s to %s, or 0 for a token that lasts until it is revoked", registry.MinTokenTTL, registry.MaxTokenTTL)
			}
			if maxInst < 0 || maxInst > registry.MaxKeyInstances {
				return usagef("--max-instances must be from 0 (the server's --max-instances-per-key) to %d, not %d", registry.MaxKeyInstances, maxInst)
			}
			req := api.CreateTokenRequest{Role: role.String(), Services: services, Description: desc, MaxInstances: maxInst}
			if cmd.Flags().Changed("callback-tls") {
				req.CallbackTLS = cbTLS.String()
			}
			if cmd.Flags().Changed("consul-verify") {
				req.ConsulVerify = consul.String()
			}
			if ttl > 0 {
				req.TTL = ttl.String()
			}
			c, err := e.newClient()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			if out.String() == "secret" {
				_, err := fmt.Fprintln(e.stdout, t.Secret)
				return err
			}
			return printOut(e.stdout, out.String(), t, []string{t.ID}, func(w io.Writer) error {
				expires := t.ExpiresAt
				if expires == "" {
					expires = "never (until revoked)"
				}
				_, err := fmt.Fprintf(w, "id:       %s\nsecret:   %s\nrole:     %s\nservices: %s\nexpires:  %s\n\nThe secret is shown only once.\n",
					t.ID, t.Secret, t.Role, strings.Join(t.Services, ", "), expires)
				return err
			})
		},
	}
	f := cmd.Flags()
	role = enumFlag(cmd, "role", "", "read", "what the token may do: read, register, operator or admin", "read", "register", "operator", "admin")
	f.StringArrayVar(&services, "service", nil, "service name pattern the token covers; repeatable; * is a wildcard")
	f.StringVar(&desc, "description", "", "a note shown in token listings")
	f.DurationVar(&ttl, "ttl", 0, "how long the token lasts, from 1m to 87600h (0: until it is revoked)")
	f.IntVar(&maxInst, "max-instances", 0, "register role: the most instances registered with the token at once, up to "+strconv.Itoa(registry.MaxKeyInstances)+
		" (0: the server's --max-instances-per-key)")
	cbTLS = enumFlag(cmd, "callback-tls", "", "verify", "register role: how the certificate of https verification callbacks is checked: verify or any (as keys create)", "verify", "any")
	consul = enumFlag(cmd, "consul-verify", "", "callback", "register role: whether registrations through the Consul-compatible API must pass the address callback: callback or none (as keys create)", "callback", "none")
	out = enumFlag(cmd, "output", "o", "table",
		"output format: table; json or yaml (the registry's answer, same field names); id (the token's ID); secret (the secret alone)",
		"table", "json", "yaml", "id", "secret")
	return cmd
}

func newTokensListCmd(e env) *cobra.Command {
	var out *enumValue
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "list tokens of every role, without their secrets",
		Long:  withEnv("List the tokens of every role, enrolment keys among them, without their secrets.", envAddr, envToken),
		Args:  nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			toks, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			var ids []string
			for _, t := range toks {
				ids = append(ids, t.ID)
			}
			return printOut(e.stdout, out.String(), toks, ids, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tROLE\tSERVICES\tEXPIRES\tCREATED\tDESCRIPTION")
				for _, t := range toks {
					expires := t.ExpiresAt
					switch {
					case expires == "":
						expires = "-"
					case t.Expired:
						expires += " (expired)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Role, strings.Join(t.Services, ","), expires, t.CreatedAt, t.Description)
				}
				return tw.Flush()
			})
		},
	}
	out = outputFlag(cmd, "the token IDs alone, one a line")
	return cmd
}

func newTokensRevokeCmd(e env) *cobra.Command {
	cmd := newRevokeCmd(e, "token", func(c *client.Client) func(context.Context, string) error { return c.RevokeToken },
		func(ctx context.Context, c *client.Client) ([]api.Key, error) { return c.Tokens(ctx) })
	cmd.Short = "revoke tokens of any role"
	cmd.Long = withEnv(`Revoke tokens of any role, enrolment keys among them: each authorises
nothing from then on. Instances an enrolment key registered stay until
they leave or expire.

Each ID is revoked in turn, as keys revoke does.`, envAddr, envToken)
	cmd.Example = `  muster tokens revoke tok_5b1f0c9e2d7a4e83`
	return cmd
}
