package httpapi

import (
	"cmp"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/audit"
	"github.com/musterhq/muster/internal/registry"
)

// auditLog handles GET /v1/audit (an admin, or an operator, who reads
// its services' records): this node's audit trail.
// The token is checked first (a refusal is itself a record), then the
// query: since, after, wait, service, action, outcome, limit.
func (a *apiServer) auditLog(w http.ResponseWriter, r *http.Request) error {
	tok := Bearer(r)
	if err := a.reg.Operator(r.Context(), audit.ActionAuditRead, tok); err != nil {
		return operatorAuth.apply(err)
	}
	q, qerr := query(r)
	if qerr != nil {
		return qerr
	}
	aq, wait, qerr := parseAuditQuery(q, time.Now())
	if qerr != nil {
		return qerr
	}
	var (
		p   audit.Page
		err error
	)
	if wait > 0 {
		ctx, cancel := a.longLived(r.Context())
		defer cancel()
		p, err = a.reg.WaitAudit(ctx, ClientOf(r), tok, aq, wait)
	} else {
		p, err = a.reg.Audit(r.Context(), tok, aq)
	}
	if err != nil {
		return adminAuth.apply(err)
	}
	out := api.AuditResponse{Node: a.reg.AuditLog().Node(), Records: make([]api.AuditRecord, 0, len(p.Records)),
		Next: p.Next.String(), More: p.More, Partial: p.Partial, Dropped: a.reg.AuditLog().Stats().Dropped}
	for _, rec := range p.Records {
		out.Records = append(out.Records, auditToAPI(rec))
	}
	WriteJSON(w, http.StatusOK, out)
	return nil
}

// auditToAPI is a record as the API shows it.
func auditToAPI(r audit.Record) api.AuditRecord {
	out := api.AuditRecord{Action: string(r.Action), Outcome: string(r.Outcome), Reason: r.Reason, Service: r.Service,
		InstanceID: r.Instance, KeyID: r.Key, Status: r.Status, Caller: r.Caller, Node: r.Node, By: r.By, Index: r.Index}
	if !r.Time.IsZero() {
		out.Time = r.Time.UTC().Format(time.RFC3339Nano)
	}
	return out
}

// parseAuditQuery reads GET /v1/audit's query: since (an RFC 3339 time,
// or a duration ago), after (a cursor, a previous answer's next), wait
// (with after: a blocking query), service, action, outcome and limit.
// Anything else, or a value that does not parse, is a 400 naming it.
func parseAuditQuery(q map[string][]string, now time.Time) (audit.Query, time.Duration, *Error) {
	var (
		aq   audit.Query
		wait time.Duration
	)
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "since":
			if d, err := time.ParseDuration(v); err == nil && d >= 0 {
				aq.Since = now.Add(-d)
			} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				aq.Since = t
			} else {
				return aq, 0, BadField("since", "since %q must be an RFC 3339 time (2026-12-10T09:00:00Z) or a duration ago (1h)", cut(v))
			}
		case "after":
			c, err := audit.ParseCursor(v)
			if err != nil {
				return aq, 0, BadField("after", "after must be the next of an earlier answer of this server (four numbers joined by dots)")
			}
			aq.After = &c
		case "wait":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > registry.MaxWait {
				return aq, 0, BadField("wait", "wait %q must be a duration above 0 and at most %s", cut(v), registry.MaxWait)
			}
			wait = d
		case "service":
			if err := registry.CheckServiceName(v); err != nil {
				return aq, 0, BadField("service", "service %q is not a service name (1 to 63 of a-z 0-9 - _)", cut(v))
			}
			aq.Service = v
		case "action":
			act, ok := audit.ParseAction(v)
			if !ok {
				var names []string
				for _, a := range audit.Actions() {
					names = append(names, string(a))
				}
				return aq, 0, BadField("action", "unknown action %q; the actions are %s", cut(v), strings.Join(names, ", "))
			}
			aq.Action = act
		case "outcome":
			o, ok := audit.ParseOutcome(v)
			if !ok {
				return aq, 0, BadField("outcome", "outcome %q must be ok, refused or failed", cut(v))
			}
			aq.Outcome = o
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > audit.MaxLimit {
				return aq, 0, BadField("limit", "limit %q must be a number from 1 to %d", cut(v), audit.MaxLimit)
			}
			aq.Limit = n
		default:
			return aq, 0, BadField(cmp.Or(k, "query"), "unknown query parameter %q", cut(k))
		}
	}
	if wait > 0 && aq.After == nil {
		return aq, 0, BadField("wait", "wait needs after: the next of the answer you hold")
	}
	return aq, wait, nil
}

// cut shortens a value echoed in an error message.
func cut(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
