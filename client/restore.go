package client

import (
	"context"
	"errors"
	"net/http"

	"github.com/musterhq/muster/api"
)

// Restore replaces the whole catalog of the running registry, on every
// server of its cluster, with snapshot, a backup as Snapshot writes it
// (muster snapshot save), and returns what the catalog holds then.
// Needs the admin token.
//
// The registry checks the snapshot in full before anything changes: a
// damaged or foreign one is refused with ErrInvalid. Registrations and
// keys made since the backup are gone, and keys revoked since are valid
// again. A restore that fails with ErrUnavailable may or may not have
// happened; restoring the same snapshot again is safe, so it moves on to
// the next server as a PUT does (see Config.Addr). The snapshot is sent
// as it is, not re-encoded. The HTTP client's timeout (30 s by default)
// bounds the whole upload: give a longer one for a large snapshot.
func (c *Client) Restore(ctx context.Context, snapshot []byte) (api.RestoreResponse, error) {
	const op, method = "restore", http.MethodPut
	var (
		out api.RestoreResponse
		err error
	)
	// As do, with a body sent as is.
	for range c.bases {
		base, i := c.server()
		var status int
		_, status, err = c.doOn(ctx, base, op, method, "/v1/snapshot", nil, c.token, snapshot, true, &out)
		if err == nil || ctx.Err() != nil || len(c.bases) == 1 {
			return out, err
		}
		var te *transportError
		transport := errors.As(err, &te)
		if !(transport && moveOn(method, te.err, 0)) && !(!transport && moveOn(method, nil, status)) {
			return out, err
		}
		c.failed(i)
	}
	return out, err
}
