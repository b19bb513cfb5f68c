package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/musterhq/muster/api"
)

// Evict removes instance id and bars its endpoint from registering again
// for d, with a reason for the refusals and the log. Needs the admin
// token.
func (c *Client) Evict(ctx context.Context, id string, d time.Duration, reason string) (api.Eviction, error) {
	var ev api.Eviction
	_, err := c.do(ctx, "evict", http.MethodPost, "/v1/instances/"+url.PathEscape(id)+"/evict", nil, "",
		api.EvictRequest{For: d.String(), Reason: reason}, &ev)
	return ev, err
}

// Snapshot writes the whole catalog, as one snapshot as of the index it
// returns, to w: a backup, which `muster snapshot restore` brings back.
// Needs the admin token.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (uint64, error) {
	h, err := c.do(ctx, "snapshot", http.MethodGet, "/v1/snapshot", nil, "", nil, w)
	if err != nil {
		return 0, err
	}
	index, _ := strconv.ParseUint(h.Get(api.HeaderIndex), 10, 64)
	return index, nil
}

// Members lists the servers of the registry's cluster, each with its own
// account of its Raft state, as the server asked reaches them. A server
// without a cluster secret answers ErrNotFound.
func (c *Client) Members(ctx context.Context) (api.MembersResponse, error) {
	var out api.MembersResponse
	_, err := c.do(ctx, "members", http.MethodGet, "/v1/cluster/members", nil, "", nil, &out)
	return out, err
}

// RemoveMember removes the server id from the cluster (a dead one, or
// one that is to be replaced). Needs the admin token.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	_, err := c.do(ctx, "remove member", http.MethodDelete, "/v1/cluster/members/"+url.PathEscape(id), nil, "", nil, nil)
	return err
}

// AuditQuery selects records of a server's audit trail (see Audit). The
// zero value asks for the newest 100.
type AuditQuery struct {
	// Since starts at the first record at or after it.
	Since time.Time
	// After goes on after the records of an earlier answer of the same
	// server (its Next); it overrides Since.
	After string
	// Wait, with After, waits up to this long for records after it
	// (a blocking query); it must stay under the HTTP client's timeout.
	Wait time.Duration
	// Service, Action and Outcome keep only the records that name them.
	Service, Action, Outcome string
	// Limit is the most records answered (1 to 1,000; 0: the server's
	// default, 100).
	Limit int
}

// Audit reads the audit trail of the server that answers: its records
// of registrations, refusals, deregistrations, expiries, key changes,
// admin actions and failed authentications, oldest first. Needs the
// admin token.
func (c *Client) Audit(ctx context.Context, q AuditQuery) (api.AuditResponse, error) {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	if q.Wait > 0 {
		v.Set("wait", q.Wait.String())
	}
	for k, s := range map[string]string{"service": q.Service, "action": q.Action, "outcome": q.Outcome} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out api.AuditResponse
	_, err := c.do(ctx, "audit", http.MethodGet, "/v1/audit", v, "", nil, &out)
	return out, err
}
