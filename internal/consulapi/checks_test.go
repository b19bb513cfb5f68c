package consulapi

import (
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/registry"
)

// TestHeartbeatStatus: the heartbeat check is critical when the TTL has
// run out (or no heartbeat was heard), whatever the active checks say,
// and passing while the TTL holds, even when a failing active check makes
// the instance critical.
func TestHeartbeatStatus(t *testing.T) {
	inst := &catalog.Instance{ID: "i", Service: "web", TTL: 10 * time.Second}
	failing := []api.CheckState{{Type: api.CheckGRPC, Status: api.StatusCritical}}
	passing := []api.CheckState{{Type: api.CheckGRPC, Status: api.StatusPassing}}
	for _, c := range []struct {
		name   string
		status catalog.Status
		age    time.Duration
		checks []api.CheckState
		want   string
	}{
		{"passing", catalog.StatusPassing, time.Second, nil, api.StatusPassing},
		{"draining", catalog.StatusDraining, time.Second, nil, api.StatusPassing},
		{"TTL ran out, no checks", catalog.StatusCritical, 11 * time.Second, nil, api.StatusCritical},
		{"TTL ran out, checks pass", catalog.StatusCritical, 11 * time.Second, passing, api.StatusCritical},
		{"TTL ran out, a check fails", catalog.StatusCritical, 41 * time.Second, failing, api.StatusCritical},
		{"never heard, a check fails", catalog.StatusCritical, -1, failing, api.StatusCritical},
		{"TTL holds, a check fails", catalog.StatusCritical, 2 * time.Second, failing, api.StatusPassing},
	} {
		e := registry.Entry{Instance: inst, Status: c.status, Age: c.age, Checks: c.checks}
		if got := heartbeatStatus(e); got != c.want {
			t.Errorf("%s: heartbeat %s, want %s", c.name, got, c.want)
		}
	}
}
