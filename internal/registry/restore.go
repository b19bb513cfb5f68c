package registry

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/catalog"
)

// Restorer is what a restore into the running registry needs of the
// replication layer; *cluster.Node implements it beside Proposer.
type Restorer interface {
	// Restore makes b the catalog of every server, as one operation of
	// the replicated log, through the leader, and returns the catalog's
	// index after it, above every index before. It returns once a
	// majority holds it, and this server (unless that takes more than a
	// few seconds). Errors:
	// catalog.ErrBadSnapshot and catalog.ErrSnapshotTooLarge when the
	// leader refuses b; otherwise errors with Unavailable() true, after
	// which the restore may or may not have happened (restoring the same
	// backup again is safe).
	Restore(ctx context.Context, b *catalog.Backup) (uint64, error)
}

// errNoRestorer means the registry's Proposer cannot restore a backup
// (it does not implement Restorer): an embedding without a cluster.Node.
var errNoRestorer = errors.New("registry: the replication layer cannot restore a backup")

// Restored is what a restore did: the catalog's index after it, and what
// the backup held (its Index the one it was taken at).
type Restored struct {
	Index  uint64
	Backup catalog.BackupSummary
}

// Restore replaces the whole catalog of the running registry, on every
// server, with the backup read from snapshot (a snapshot as Snapshot
// gives it), for the holder of the admin token. The backup is read and
// checked in full (catalog.ReadBackup) before anything changes; then the
// replication layer restores it (see Restorer). Registrations, keys and
// evictions made since the backup was taken are gone, and keys revoked
// since are valid again; instances that still run re-register when
// their heartbeat is refused, as after any loss of their registration.
// Every instance restored has its TTL (and the grace) to be heard from
// the end of the restore. The admin token is the servers', not the
// backup's: the backup holds no admin secret, and the key secrets and
// session tokens it holds are hashes.
//
// Errors: ErrNoCredential, ErrWrongToken (before snapshot is read),
// catalog.ErrBadSnapshot, catalog.ErrSnapshotTooLarge, snapshot's own
// read error, ErrUnavailable (wrapping the replication layer's: no
// leader took it, the disk is full, or its fate is unknown).
func (r *Registry) Restore(ctx context.Context, token string, snapshot io.Reader) (_ Restored, err error) {
	c, err := r.admin(ctx, audit.ActionSnapshotRestore, token)
	if err != nil {
		return Restored{}, err
	}
	ctx = asCaller(ctx, c)
	var index uint64
	defer func() { r.record(ctx, audit.Record{Action: audit.ActionSnapshotRestore, Index: index}, err) }()
	rs, ok := r.prop.(Restorer)
	if !ok {
		return Restored{}, errNoRestorer
	}
	// Refused before a large upload is read for nothing.
	if err := r.writable(); err != nil {
		return Restored{}, err
	}
	b, err := catalog.ReadBackup(snapshot)
	if err != nil {
		return Restored{}, err
	}
	// A backup holds no CA (it would hold the CA's key): the replication
	// layer keeps the running CAs (catalog.Backup.WithCAs).
	index, err = rs.Restore(ctx, b)
	if err != nil {
		if unavailable(err) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return Restored{}, err
	}
	sum := b.Summary()
	r.log.Info("the catalog was restored from a backup", "index", index, "snapshot_index", sum.Index,
		"instances", sum.Instances, "services", sum.Services, "keys", sum.Keys, "evictions", sum.Evictions)
	return Restored{Index: index, Backup: sum}, nil
}
