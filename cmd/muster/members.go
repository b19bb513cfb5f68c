package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

func newMembersCmd(e env) *cobra.Command {
	var out *enumValue
	cmd := &cobra.Command{
		Use:   "members [flags]",
		Short: "list the servers of the cluster, or remove one (admin token)",
		Long: withEnv(`List the servers of the registry's cluster: each one's Raft state
(leader, follower, candidate, or unreachable from the server asked), its
addresses, whether it votes, how long ago it last heard from its leader,
and the log index it has applied ("-" where the server asked does not
know). Sorted by ID; with -o id, the IDs alone. "(answered)" marks the
server that answered; one that is not in the configuration it reports
(it was removed, or left) says so.`, envAddr, "  MUSTER_TOKEN  the admin token, for members remove\n"),
		Args: nArgs(0, "no arguments, or the remove subcommand"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			res, err := c.Members(cmd.Context())
			if err != nil {
				return err
			}
			slices.SortFunc(res.Members, func(a, b api.Member) int { return strings.Compare(a.ID, b.ID) })
			var ids []string
			member := false
			for _, m := range res.Members {
				ids = append(ids, m.ID)
				member = member || m.ID == res.Node
			}
			// A server that was removed, or left, still answers with the
			// configuration it last knew, in which it is not.
			notMember := fmt.Sprintf("%s, the server that answered, is not in the configuration it reports: it was removed or left, and this list may be out of date", res.Node)
			if !member && out.String() == "id" {
				fmt.Fprintln(e.stderr, "muster:", notMember)
			}
			return printOut(e.stdout, out.String(), res, ids, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tVOTER\tRAFT ADDR\tHTTP ADDR\tLAST CONTACT\tAPPLIED\tTERM")
				for _, m := range res.Members {
					contact := "-"
					if m.LastContactMS >= 0 {
						contact = strconv.FormatInt(m.LastContactMS, 10) + "ms"
					}
					voter := "yes"
					if m.Suffrage != "voter" {
						voter = "no"
					}
					state := m.State
					if m.ID == res.Node {
						state += " (answered)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, state, voter, m.RaftAddr, orDash(m.HTTPAddr), contact,
						known(m.AppliedIndex), known(m.Term))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if !member {
					_, err := fmt.Fprintln(w, notMember)
					return err
				}
				return nil
			})
		},
	}
	out = outputFlag(cmd, "the server IDs alone, one a line, sorted")
	cmd.AddCommand(&cobra.Command{
		Use:   "remove NODE",
		Short: "remove a server from the cluster",
		Long: withEnv(`Remove a server from the cluster's Raft configuration, through the
leader: a dead server, or one whose data dir was wiped (it cannot join
again under a new ID while its address belongs to the old one). A server
that is still running and is removed stops taking part; to take a live
server out, stop it with --leave-on-terminate instead.`, envAddr, envToken),
		Example: "  muster members remove n3",
		Args:    nArgs(1, "one node ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			if err := c.RemoveMember(cmd.Context(), args[0]); err != nil {
				var answer *client.Error
				if errors.As(err, &answer) && answer.Code == api.CodeNotFound && answer.Field == "id" {
					return fmt.Errorf("remove member: no server of the cluster has the ID %q (muster members lists them)", args[0])
				}
				return err
			}
			fmt.Fprintln(e.stdout, "removed", args[0])
			return nil
		},
	})
	return cmd
}

// known formats a count the answer leaves out when it is unknown (0).
func known(n uint64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatUint(n, 10)
}

// orDash is s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
