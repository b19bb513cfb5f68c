package main

import (
	"bytes"
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
)

// errWatchDone ends a watch that printed the changes --count asked for.
var errWatchDone = errors.New("watch done")

func newWatchCmd(e env) *cobra.Command {
	var (
		out   *enumValue
		count int
		dur   time.Duration
		after uint64
	)
	cmd := &cobra.Command{
		Use:   "watch [SERVICE...] [flags]",
		Short: "print each change to services as it happens",
		Long: withEnv(`Follow the registry's event stream (GET /v1/watch) for the services named,
or every service, and print one line per change as it happens: a
registration, a status change (passing, critical, draining) or a
deregistration (and why: deregistered, expired, evicted).

It starts with the current instances (every status), one line each,
marked snapshot, and a summary on stderr. When the registry restarts or
the connection breaks, it says so on stderr and reconnects, resuming
after the last change it printed: no change is lost or printed twice. If
the registry no longer holds the changes since (it keeps the last 8,192),
it prints the whole state again, marked resync.

With -o json it prints each event as the registry sent it, one JSON
document a line: the snapshot (api.WatchSnapshot, with every instance),
each change (api.Event), and mass-expiry protection starting or ending
({"type":"protection","protection":true}; the registry sends it without
its type). It runs until interrupted (exit 0), or
until --count changes or --for have passed.`, envAddr),
		Example: `  muster watch web api
  muster watch -o json | jq -c 'select(.type != "snapshot")'
  muster watch web --count 1 --for 30s   # wait for the next change to web
  muster watch --after 1234              # the changes since index 1234, no snapshot`,
		ValidArgsFunction: completeServices(e),
		RunE: func(cmd *cobra.Command, services []string) error {
			if count < 0 || dur < 0 {
				return usageError("--count and --for must not be negative")
			}
			c, err := e.newClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if dur > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, dur)
				defer cancel()
			}
			p := &watchPrinter{w: e.stdout, stderr: e.stderr, json: out.String() == "json", services: services, count: count}
			req := client.WatchRequest{Services: services, Resume: cmd.Flags().Changed("after"), After: after}
			err = c.Watch(ctx, req, p.print)
			if errors.Is(err, errWatchDone) || ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil // --count reached, --for passed, or interrupted
			}
			return err
		},
	}
	out = enumFlag(cmd, "output", "o", "table",
		"output format: table (one line per instance changed); json (each event as the registry sent it, one a line)",
		"table", "json")
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many changes (0: no limit); the snapshot does not count")
	cmd.Flags().DurationVar(&dur, "for", 0, "exit after this long (0: until interrupted)")
	cmd.Flags().Uint64Var(&after, "after", 0, "start after this index (a line's INDEX) instead of with a snapshot, if the registry still holds the changes since")
	return cmd
}

// watchPrinter prints a watch's events, and its connection's troubles on
// stderr.
type watchPrinter struct {
	w, stderr   io.Writer
	json        bool
	services    []string
	count       int  // changes left to print, when > 0
	headerDone  bool // table's header
	lost        bool // the connection broke and has not come back
	reconnected bool // a connection came back: a snapshot now is a resync
	protection  bool // the state of mass-expiry protection last printed
}

func (p *watchPrinter) print(ev client.WatchEvent) error {
	switch ev.Type {
	case client.WatchConnected:
		if p.lost {
			fmt.Fprintf(p.stderr, "muster: reconnected to the registry; resuming after index %d\n", ev.ID)
			p.lost, p.reconnected = false, true
		}
		return nil
	case client.WatchDisconnected:
		fmt.Fprintf(p.stderr, "muster: stream lost: %v; reconnecting in %s, to resume after index %d\n",
			ev.Err, ev.Retry.Round(time.Millisecond), ev.ID)
		p.lost = true
		return nil
	case client.WatchProgress:
		return nil
	case api.EventSnapshot:
		p.summary(ev)
		p.protection = ev.Snapshot.Protection
	case api.EventProtection:
		// A resumed stream says where protection stands: print changes
		// only.
		if ev.Protection == nil || ev.Protection.Protection == p.protection {
			return nil
		}
		p.protection = ev.Protection.Protection
	}
	if err := p.line(ev); err != nil {
		return err
	}
	if ev.Event != nil && p.count > 0 {
		if p.count--; p.count == 0 {
			return errWatchDone
		}
	}
	return nil
}

// summary says on stderr what a snapshot holds.
func (p *watchPrinter) summary(ev client.WatchEvent) {
	what := "every service"
	if len(p.services) > 0 {
		what = strings.Join(p.services, ", ")
	}
	n := len(ev.Snapshot.Instances)
	if ev.Snapshot.Resync {
		fmt.Fprintf(p.stderr, "muster: the registry no longer holds every change since the last one printed; "+
			"the %s of %s at index %d follow, marked resync\n", count(n, "instance"), what, ev.ID)
		return
	}
	fmt.Fprintf(p.stderr, "muster: watching %s: %s at index %d; Ctrl-C to stop\n", what, count(n, "instance"), ev.ID)
}

// line prints one event: in JSON, as the registry sent it; in a table,
// one line per instance.
func (p *watchPrinter) line(ev client.WatchEvent) error {
	if p.json {
		b := ev.Data
		if ev.Type == api.EventProtection && ev.Protection != nil {
			b, _ = json.Marshal(struct {
				Type       string `json:"type"`
				Protection bool   `json:"protection"`
			}{api.EventProtection, ev.Protection.Protection})
		} else if bytes.ContainsAny(b, "\r\n") {
			var buf bytes.Buffer
			if json.Compact(&buf, b) == nil {
				b = buf.Bytes()
			}
		}
		_, err := fmt.Fprintf(p.w, "%s\n", b)
		return err
	}
	if !p.headerDone {
		p.headerDone = true
		if _, err := fmt.Fprintln(p.w, watchRow("INDEX", "EVENT", "SERVICE", "INSTANCE", "ADDRESS", "STATUS", "DETAIL")); err != nil {
			return err
		}
	}
	index := strconv.FormatUint(ev.ID, 10)
	var rows []string
	switch {
	case ev.Snapshot != nil:
		kind := api.EventSnapshot
		if ev.Snapshot.Resync {
			kind = "resync"
		}
		for _, in := range ev.Snapshot.Instances {
			rows = append(rows, watchRow(index, kind, in.Service, in.ID, endpoint(in), in.Status, ""))
		}
	case ev.Event != nil:
		detail := ev.Event.Reason
		if ev.Event.Replaced != "" {
			detail = "replaced " + ev.Event.Replaced
		}
		in := ev.Event.Instance
		rows = append(rows, watchRow(index, ev.Type, ev.Event.Service, in.ID, endpoint(in), in.Status, detail))
	case ev.Protection != nil:
		state := "off: expiries proceed"
		if ev.Protection.Protection {
			state = "on: expiries held"
		}
		rows = append(rows, watchRow("-", ev.Type, "", "", "", "", state))
	default: // a type this CLI does not know
		rows = append(rows, watchRow(index, ev.Type, "", "", "", "", string(ev.Data)))
	}
	for _, r := range rows {
		if _, err := fmt.Fprintln(p.w, r); err != nil {
			return err
		}
	}
	return nil
}

// endpoint is an instance's address and port as the tables show them:
// host:port, [::1]:port for an IPv6 address.
func endpoint(in api.Instance) string {
	if in.Address == "" {
		return ""
	}
	return hostPort(in.Address, in.Port)
}

// watchRow lays out one line of the table. The stream has no end to wait
// for, so the columns have fixed widths rather than tabwriter's.
func watchRow(index, event, service, id, addr, status, detail string) string {
	return strings.TrimRight(fmt.Sprintf("%-7s  %-12s  %-16s  %-32s  %-21s  %-8s  %s", index, event, service, id, addr, status, detail), " ")
}
