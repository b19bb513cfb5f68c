package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newMembersCmd(e env) *cobra.Command {
	var out *enumValue
	cmd := &cobra.Command{
		Use:   "members [flags]",
		Short: "list the servers of the cluster, or remove one (admin token)",
		Long: withEnv(`List the servers of the registry's cluster: each one's Raft state
(leader, follower, candidate, or unreachable from the server asked), its
addresses, whether it votes, how long ago it last heard from its leader,
and the log index it has applied. With -o id, the IDs alone.`, envAddr),
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
			var ids []string
			for _, m := range res.Members {
				ids = append(ids, m.ID)
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
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", m.ID, state, voter, m.RaftAddr, m.HTTPAddr, contact, m.AppliedIndex, m.Term)
				}
				return tw.Flush()
			})
		},
	}
	out = outputFlag(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "remove NODE",
		Short: "remove a server from the cluster",
		Long: withEnv(`Remove a server from the cluster's Raft configuration, through the
leader: a dead server, or one whose data dir was wiped (it cannot join
again under a new ID while its address belongs to the old one). A server
that is still running and is removed stops taking part; to take a live
server out, stop it with --leave-on-terminate instead.`, envAddr, envToken),
		Args: nArgs(1, "one node ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			if err := c.RemoveMember(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "removed", args[0])
			return nil
		},
	})
	return cmd
}
