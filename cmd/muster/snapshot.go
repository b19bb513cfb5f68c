package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/server"
)

func newEvictCmd(e env) *cobra.Command {
	var (
		d      time.Duration
		reason string
	)
	cmd := &cobra.Command{
		Use:   "evict ID [--for DURATION] [--reason TEXT]",
		Short: "remove an instance and keep its endpoint out for a while (admin token)",
		Long: withEnv(`Evict an instance: it is removed, and its endpoint (service, address and
port) may not register again until the time printed, even while its
process keeps trying (the SDK and muster register re-register by design).
The bar is replicated: every node and every restart keeps it. To keep a
key's instances out for good, revoke the key.`, envAddr, envToken),
		Args: nArgs(1, "one instance ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			ev, err := c.Evict(cmd.Context(), args[0], d, reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "evicted %s; %s at %s:%d may register again after %s\n", ev.ID, ev.Service, ev.Address, ev.Port, ev.Until)
			return nil
		},
	}
	cmd.Flags().DurationVar(&d, "for", 10*time.Minute, "how long the endpoint stays out (1s to 720h)")
	cmd.Flags().StringVar(&reason, "reason", "", "a note shown in the refusals and the log")
	return cmd
}

func newSnapshotCmd(e env) *cobra.Command {
	group := &cobra.Command{
		Use:   "snapshot",
		Short: "save, inspect and restore backups of the catalog",
		Args:  noSubcommand,
		RunE:  showGroupHelp(e),
	}
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "write the running registry's catalog to FILE (admin token)",
		Long: withEnv(`Write the whole catalog of the running registry, as one snapshot, to FILE
(mode 0600: it holds the hashes of every secret). The server keeps
serving.`, envAddr, envToken),
		Args: nArgs(1, "one file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.newClient()
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			index, err := c.Snapshot(cmd.Context(), &buf)
			if err != nil {
				return err
			}
			if _, err := server.InspectSnapshot(buf.Bytes()); err != nil {
				return fmt.Errorf("the registry's snapshot does not check: %w", err)
			}
			if err := durable.WriteFile(args[0], buf.Bytes(), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "saved the catalog at index %d to %s (%d bytes)\n", index, args[0], buf.Len())
			return nil
		},
	}
	var out *enumValue
	inspect := &cobra.Command{
		Use:   "inspect FILE",
		Short: "check a saved snapshot and summarise it",
		Args:  nArgs(1, "one file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			s, err := server.InspectSnapshot(b)
			if err != nil {
				return err
			}
			return printOut(e.stdout, out.String(), s, nil, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "index:     %d\ninstances: %d\nservices:  %d\nkeys:      %d\nevictions: %d\n",
					s.Index, s.Instances, s.Services, s.Keys, s.Evictions)
				return err
			})
		},
	}
	out = enumFlag(inspect, "output", "o", "table", "output format: table, json or yaml", "table", "json", "yaml")
	var dataDir string
	restore := &cobra.Command{
		Use:   "restore FILE --data-dir DIR",
		Short: "make a new data dir hold a saved snapshot; then start a server on it",
		Long: `Make DIR, which must not hold a cluster yet, a single-node registry whose
catalog is the snapshot in FILE. Start muster server --data-dir DIR to
bring the backup back: it resumes from the snapshot's index, and the
instances that still run heartbeat or register again as after any
restart. The admin token is the new server's: it writes one to
DIR/admin-token at its first start, unless MUSTER_ADMIN_TOKEN or
--admin-token-file gives it one.`,
		Args: nArgs(1, "one file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" {
				return usagef("snapshot restore needs --data-dir DIR")
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			index, err := server.RestoreSnapshot(dataDir, b)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "restored the catalog at index %d into %s; start it with: muster server --data-dir %s\n", index, dataDir, dataDir)
			return nil
		},
	}
	restore.Flags().StringVar(&dataDir, "data-dir", "", "the new data directory")
	group.AddCommand(save, inspect, restore)
	return group
}
