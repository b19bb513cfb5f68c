package client

import (
	"context"
	"net/http"
	"net/url"

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
	var out api.RestoreResponse
	// As do, with a body sent as is.
	_, err := c.call(ctx, "restore", http.MethodPut, func(base *url.URL) (http.Header, int, error) {
		return c.doOn(ctx, base, "restore", http.MethodPut, "/v1/snapshot", nil, c.token, snapshot, true, &out)
	})
	return out, err
}
