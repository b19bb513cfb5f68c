package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// newCACmd is `muster ca`: the registry's certificate authority, which
// signs the certificates of verified instances (not the cluster CA of
// `muster tls ca`, which the servers' Raft connections use).
func newCACmd(e env) *cobra.Command {
	group := &cobra.Command{
		Use:   "ca",
		Short: "show or rotate the registry's certificate authority (for instances' certificates)",
		Long: `The registry's certificate authority signs short-lived certificates for
verified instances (POST /v1/instances/{id}/certificate), naming their
service as spiffe://<trust-domain>/svc/<service>. It is not the cluster CA
of "muster tls ca", which only the servers' Raft connections use.`,
		Args: noSubcommand,
		RunE: showGroupHelp(e),
	}
	var out *enumValue
	show := &cobra.Command{
		Use:   "show [flags]",
		Short: "print the CA bundle (PEM) or the CAs' fingerprints",
		Long: withEnv(`Print the registry's CA certificates, the bundle services trust each other
by: PEM (-o pem, the default, ready for a file), a table of each CA's
fingerprint, validity and whether it signs (-o table), the registry's JSON
answer (-o json or yaml), or the fingerprints alone (-o id). During a
rotation the bundle holds the CA rotated out too, until every certificate
it signed has expired. No private key is ever shown: the registry never
gives one out.`, envAddr),
		Args: nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			res, err := c.CAInfo(cmd.Context())
			if err != nil {
				return err
			}
			if out.String() == "pem" {
				_, err := io.WriteString(e.stdout, res.Bundle)
				return err
			}
			var ids []string
			for _, ca := range res.CAs {
				ids = append(ids, ca.Fingerprint)
			}
			return printOut(e.stdout, out.String(), res, ids, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "FINGERPRINT (SHA-256)\tNOT BEFORE\tNOT AFTER\tSIGNING")
				for _, ca := range res.CAs {
					signing := "no"
					if ca.Signing {
						signing = "yes"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ca.Fingerprint, ca.NotBefore, ca.NotAfter, signing)
				}
				fmt.Fprintf(tw, "trust domain: %s\n", res.TrustDomain)
				return tw.Flush()
			})
		},
	}
	out = enumFlag(show, "output", "o", "pem",
		"output format: pem (the bundle); table; json or yaml (the registry's answer); id (the fingerprints, one a line)",
		"pem", "table", "json", "yaml", "id")
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "create a new CA that signs from now on (admin token)",
		Long: withEnv(`Create a new CA, committed through Raft, which signs every certificate
from now on. The CA it replaces stays in the bundle until every
certificate it signed has expired (24 hours and a minute after the
rotation, the longest certificate TTL a server may have); then the leader
retires it. SDK services renew at half
their certificate's life and fetch the bundle again when they meet a peer
signed by a CA they do not know yet. Prints the new CA's fingerprint
(and, on standard error, when the old one retires).`, envAddr, envToken),
		Args: nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			res, err := c.RotateCA(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, res.Fingerprint)
			fmt.Fprintln(e.stderr, "muster: the new CA signs from now on; the one it replaces stays in the bundle until every certificate it signed has expired (24 hours and a minute from now), then the leader retires it")
			return nil
		},
	}
	group.AddCommand(show, rotate)
	return group
}
