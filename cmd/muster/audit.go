package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/audit"
)

// auditFollowWait is how long one request of audit --follow waits for
// new records: under the SDK's HTTP timeout (30 s).
const auditFollowWait = 20 * time.Second

func newAuditCmd(e env) *cobra.Command {
	var (
		out, outcome *enumValue
		since        string
		service      string
		actionFlag   *enumValue
		limit        int
		follow       bool
	)
	cmd := &cobra.Command{
		Use:   "audit [flags]",
		Short: "show the audit trail of the server asked (admin or operator token)",
		Long: withEnv(`Show the audit trail of the server that answers, oldest first: one
record for each registration (accepted, or refused and why), deregistration,
drain, eviction, expiry, removal and status change, each enrolment key
created or revoked, each admin action, and each failed authentication,
with its time, outcome, service, instance, key ID (never a secret), the
caller's address, the node that handled it, and the Raft index of a
decision that went through the replicated log (every server holds those
alike; refusals only the server that refused).

Without --since it shows the newest --limit records; with --since (a
duration ago, such as 1h, or an RFC 3339 time) those from then on, up to
--limit. --follow then prints each new record as the server writes it,
until interrupted, resuming across the server's restarts. With -o json
each record is one JSON document a line (api.AuditRecord).`, envAddr, envToken),
		Example: `  muster audit
  muster audit --since 1h --action register --outcome refused
  muster audit --service web --limit 500 -o json
  muster audit --follow`,
		Args: nArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 1000 {
				return usageError("--limit must be from 1 to 1000")
			}
			q := client.AuditQuery{Service: service, Action: actionFlag.String(), Outcome: outcome.String(), Limit: limit}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				q.Since = t
			}
			c, err := e.newClient()
			if err != nil {
				return err
			}
			p := &auditPrinter{w: e.stdout, json: out.String() == "json"}
			next, node, partial, err := auditRead(cmd.Context(), c, q, p)
			if err != nil {
				return err
			}
			if partial {
				fmt.Fprintln(e.stderr, "muster audit: the server searched its newest records within its read budget only; older records may match: ask with --since")
			}
			if !follow {
				return nil
			}
			err = auditFollow(cmd.Context(), c, q, next, node, p, e.stderr)
			if cmd.Context().Err() != nil && errors.Is(err, cmd.Context().Err()) {
				return nil // interrupted
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "show the records from this time on: a duration ago (1h, 30m) or an RFC 3339 time")
	f.StringVar(&service, "service", "", "only the records of this service")
	var actions []string // the server's, so that the two never differ
	for _, a := range audit.Actions() {
		actions = append(actions, string(a))
	}
	actionFlag = enumFlag(cmd, "action", "", "", "only the records of this action: "+orList(actions), append([]string{""}, actions...)...)
	outcome = enumFlag(cmd, "outcome", "", "", "only the records of this outcome: ok, refused or failed", "", "ok", "refused", "failed")
	f.IntVar(&limit, "limit", 100, "the most records shown (1 to 1000); with --follow, before it follows")
	f.BoolVar(&follow, "follow", false, "after the records asked for, print each new record as it is written, until interrupted")
	out = enumFlag(cmd, "output", "o", "table", "output format: table; json (each record one JSON document a line)", "table", "json")
	return cmd
}

// parseSince reads --since: a duration ago, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--since %q is neither a duration ago (1h) nor an RFC 3339 time (2026-12-10T09:00:00Z)", s)
}

// auditRead prints the records q asks for: the newest, or with Since the
// pages from then on up to q.Limit records. It returns the cursor after
// them, the node that answered, and whether a read of the newest records
// stopped at the server's budget before the trail's start (partial).
func auditRead(ctx context.Context, c *client.Client, q client.AuditQuery, p *auditPrinter) (next, node string, partial bool, err error) {
	left := q.Limit
	for {
		res, err := c.Audit(ctx, q)
		if err != nil {
			return "", "", false, err
		}
		if err := p.print(res.Records); err != nil {
			return "", "", false, err
		}
		left -= len(res.Records)
		if q.Since.IsZero() && q.After == "" || !res.More || left <= 0 {
			return res.Next, res.Node, res.Partial, nil
		}
		q.After, q.Limit = res.Next, min(left, 1000)
	}
}

// auditFollow prints the records after next as the server writes them,
// until ctx ends. When the server cannot be reached it says so on stderr
// and tries again, from the same place: a cursor stays valid across the
// server's restarts. A cursor is one server's: if another answers (the
// client moved to the next server of MUSTER_ADDR), it says so and goes
// on from that server's newest records.
func auditFollow(ctx context.Context, c *client.Client, q client.AuditQuery, next, node string, p *auditPrinter, stderr io.Writer) error {
	q.Since, q.Limit, q.Wait = time.Time{}, 1000, auditFollowWait
	lost := false
	for {
		q.After = next
		res, err := c.Audit(ctx, q)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var answer *client.Error
			if errors.As(err, &answer) && answer.Field == "after" && answer.Code == api.CodeInvalidArgument {
				// Another server answered (its cursors are its own), or
				// this one's trail was begun anew: go on from the newest
				// records of the server that answers.
				fmt.Fprintf(stderr, "muster: the server that answers does not know the cursor (%s): following its audit trail from its newest records\n", answer.Message)
				fresh, ferr := c.Audit(ctx, client.AuditQuery{Service: q.Service, Action: q.Action, Outcome: q.Outcome, Limit: 1})
				if ferr != nil {
					return ferr
				}
				next, node = fresh.Next, fresh.Node
				continue
			}
			if errors.As(err, &answer) && answer.Status < 500 && answer.Status != 429 {
				return err // refused: a token, a query
			}
			if !lost {
				fmt.Fprintf(stderr, "muster: reading the audit trail failed: %v; retrying\n", err)
				lost = true
			}
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if lost {
			fmt.Fprintln(stderr, "muster: reading the audit trail again")
			lost = false
		}
		if res.Node != node {
			fmt.Fprintf(stderr, "muster: %s answers now, not %s: following its audit trail from its newest records\n", res.Node, node)
			node = res.Node
			fresh, err := c.Audit(ctx, client.AuditQuery{Service: q.Service, Action: q.Action, Outcome: q.Outcome, Limit: 1})
			if err == nil {
				next = fresh.Next
			}
			continue
		}
		if err := p.print(res.Records); err != nil {
			return err
		}
		next = res.Next
	}
}

// auditPrinter prints records: a table, or JSON lines.
type auditPrinter struct {
	w          io.Writer
	json       bool
	headerDone bool
}

func (p *auditPrinter) print(rs []api.AuditRecord) error {
	for _, r := range rs {
		if p.json {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(p.w, "%s\n", b); err != nil {
				return err
			}
			continue
		}
		if !p.headerDone {
			p.headerDone = true
			if _, err := fmt.Fprintln(p.w, auditRow("TIME", "ACTION", "OUTCOME", "SERVICE", "INSTANCE", "KEY", "CALLER", "BY", "NODE", "INDEX", "REASON")); err != nil {
				return err
			}
		}
		at := r.Time
		if t, err := time.Parse(time.RFC3339Nano, r.Time); err == nil {
			at = t.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		index := ""
		if r.Index > 0 {
			index = strconv.FormatUint(r.Index, 10)
		}
		if _, err := fmt.Fprintln(p.w, auditRow(orDash(at), r.Action, r.Outcome, orDash(r.Service), orDash(r.InstanceID), orDash(r.KeyID),
			orDash(r.Caller), orDash(r.By), orDash(r.Node), orDash(index), r.Reason)); err != nil {
			return err
		}
	}
	return nil
}

func auditRow(cols ...string) string {
	return strings.TrimRight(fmt.Sprintf("%-24s  %-18s  %-7s  %-16s  %-32s  %-20s  %-21s  %-20s  %-17s  %-7s  %s",
		cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9], cols[10]), " ")
}
