package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
)

func newEvictCmd(e env) *cobra.Command {
	var (
		d      time.Duration
		reason string
	)
	cmd := &cobra.Command{
		Use:   "evict ID [--for DURATION] [--reason TEXT]",
		Short: "remove an instance and keep its endpoint out for a while (admin or operator token)",
		Long: withEnv(`Evict an instance: it is removed, and its endpoint (service, address and
port) may not register again until the time printed, even while its
process keeps trying (the SDK and muster register re-register by design).
The bar is replicated: every node and every restart keeps it. To keep a
key's instances out for good, revoke the key.`, envAddr, envToken),
		Args: nArgs(1, "one instance ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if d < registry.MinEviction || d > registry.MaxEviction {
				return usagef("--for must be from %s to %s, not %s",
					shortDuration(registry.MinEviction), shortDuration(registry.MaxEviction), shortDuration(d))
			}
			c, err := e.newClient()
			if err != nil {
				return err
			}
			ev, err := c.Evict(cmd.Context(), args[0], d, reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "evicted %s; %s at %s may register again after %s\n", ev.ID, ev.Service, hostPort(ev.Address, ev.Port), ev.Until)
			return nil
		},
	}
	cmd.Flags().DurationVar(&d, "for", 10*time.Minute, "how long the endpoint stays out ("+
		shortDuration(registry.MinEviction)+" to "+shortDuration(registry.MaxEviction)+")")
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
			if err := server.CheckSavedSnapshot(buf.Bytes()); err != nil {
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
		Long: `Check the snapshot saved in FILE exactly as muster snapshot restore and the
registry do (in full; a field this muster does not know, or data after
the snapshot, is refused), and print what it holds. A file inspect
accepts, restore accepts; the error of one it refuses is restore's.`,
		Args: nArgs(1, "one file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readSnapshotFile(args[0])
			if err != nil {
				return err
			}
			s, err := server.InspectSnapshot(b)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return printOut(e.stdout, out.String(), s, nil, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "index:     %d\ninstances: %d\nservices:  %d\nkeys:      %d\nevictions: %d\n",
					s.Index, s.Instances, s.Services, s.Keys, s.Evictions)
				return err
			})
		},
	}
	out = enumFlag(inspect, "output", "o", "table", "output format: table, json or yaml", "table", "json", "yaml")
	var (
		dataDir, nodeID string
		timeout         time.Duration
	)
	restore := &cobra.Command{
		Use:   "restore FILE [--data-dir DIR [--node-id ID]]",
		Short: "put a saved snapshot back: into the running registry (admin token), or into a new data dir",
		Long: withEnv(`Put the catalog saved in FILE back.

Without --data-dir, into the running registry: every server of its
cluster then holds the snapshot's catalog, in one step of the replicated
log, and they keep serving. What was registered, created or evicted since
the snapshot was saved is gone, and keys revoked since are valid again:
instances that still run register again when their next heartbeat is
refused. Every restored instance has its TTL (and the grace after an
election) from the restore on to be heard, so none expires at once. The
snapshot is checked in full first, here and by the registry: a damaged
one changes nothing. If the registry answers that it is unavailable, the
restore may or may not have happened: running it again is safe.

With --data-dir, make DIR, which must not hold a cluster yet, a
single-node registry whose catalog is the snapshot in FILE, whose node
is --node-id (made up when not given). Start muster server --data-dir
DIR (with the same --node-id) to bring the backup back, as the command
prints: it resumes from the snapshot's index, and the instances that
still run heartbeat or register again as after any restart. The admin
token is the new server's: it writes one to DIR/admin-token at its first
start, unless MUSTER_ADMIN_TOKEN or --admin-token-file gives it one.`, envAddr, envToken),
		Args: nArgs(1, "one file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dataDir == "" && nodeID != "" {
				return usageError("--node-id names the node of a restored --data-dir; give --data-dir too")
			}
			if dataDir == "" && timeout <= 0 {
				return usagef("--timeout must be above 0, not %s", shortDuration(timeout))
			}
			b, err := readSnapshotFile(args[0])
			if err != nil {
				return err
			}
			if dataDir != "" {
				index, err := server.RestoreSnapshot(dataDir, nodeID, b)
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				start := "muster server --data-dir " + dataDir
				if nodeID != "" {
					start += " --node-id " + nodeID
				}
				fmt.Fprintf(e.stdout, "restored the catalog at index %d into %s; start it with: %s\n", index, dataDir, start)
				return nil
			}
			if _, err := server.InspectSnapshot(b); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			c, err := e.newClientTimeout(timeout)
			if err != nil {
				return err
			}
			res, err := c.Restore(cmd.Context(), b)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "restored the catalog saved at index %d into the running registry, now at index %d: %s of %s, %s, %s\n",
				res.SnapshotIndex, res.Index, count(res.Instances, "instance"), count(res.Services, "service"), count(res.Keys, "key"),
				count(res.Evictions, "eviction"))
			return nil
		},
	}
	restore.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long the upload and the restore may take, without --data-dir")
	restore.Flags().StringVar(&dataDir, "data-dir", "", "restore into this new data directory instead of the running registry")
	restore.Flags().StringVar(&nodeID, "node-id", "", "with --data-dir, the ID of the restored node: the --node-id its server is started with (default: made up, in DIR/node-id)")
	group.AddCommand(save, inspect, restore)
	return group
}

// readSnapshotFile reads a backup file: a regular file (not a device, a
// pipe or a socket, which could give endless data or none), of at most
// the size a registry takes.
func readSnapshotFile(path string) ([]byte, error) {
	// Looked at before it is opened: opening a pipe waits for a writer.
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: a snapshot is a file that muster snapshot save wrote", path)
	}
	if st.Size() > server.MaxSnapshotSize {
		return nil, fmt.Errorf("%s holds %d bytes, more than a snapshot may (%d)", path, st.Size(), server.MaxSnapshotSize)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, server.MaxSnapshotSize+1))
	if err == nil && int64(len(b)) > server.MaxSnapshotSize {
		err = fmt.Errorf("%s grew past the size a snapshot may have (%d bytes)", path, server.MaxSnapshotSize)
	}
	return b, err
}
