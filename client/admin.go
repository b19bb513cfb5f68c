package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
	u := *c.base
	u.Path += "/v1/snapshot"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, errorf("snapshot: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, errorf("snapshot: %w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(data, &eb) != nil || eb.Error.Code == "" {
			eb.Error = api.ErrorDetail{Code: codeForStatus(resp.StatusCode), Message: strings.TrimSpace(string(data))}
		}
		return 0, &Error{Op: "snapshot", Status: resp.StatusCode, ErrorDetail: eb.Error,
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	index, _ := strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64)
	if _, err := io.Copy(w, resp.Body); err != nil {
		return 0, errorf("snapshot: %w: %w", ErrUnavailable, err)
	}
	return index, nil
}
