package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/examples/wordcloud/fetchurl"
	"github.com/musterhq/muster/examples/wordcloud/gateway"
	"github.com/musterhq/muster/examples/wordcloud/jobboard"
	"github.com/musterhq/muster/examples/wordcloud/scraper"
	"github.com/musterhq/muster/examples/wordcloud/wordcloud"
)

// runService runs one of the app's services in this process until ctx
// ends: args are its name and flags. It finds the registry and its
// enrolment key in MUSTER_ADDR and MUSTER_KEY. joining means a user
// started it by hand (`demo scraper`), so they may come from a running
// demo's state file instead (joinState).
func runService(ctx context.Context, e env, args []string, joining bool) error {
	if len(args) == 0 {
		return fmt.Errorf("demo service needs a name: %w", errUsage)
	}
	name := args[0]
	fs := flag.NewFlagSet("demo "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	site := fs.String("site", "", "the job site this scraper reads (scraper only)")
	var stateFile *string
	if joining {
		stateFile = fs.String("state", "", "the state file of the demo to join, when several are running")
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	registry, key := e.getenv("MUSTER_ADDR"), e.getenv("MUSTER_KEY")
	if joining && (registry == "" || key == "") {
		st, err := joinState(*stateFile)
		if err != nil {
			return err
		}
		registry, key = st.Registry, st.Key
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	scfg := client.ServiceConfig{Name: name, Address: "127.0.0.1", Registry: registry, Key: key, TTL: 3 * time.Second,
		DrainDelay: 200 * time.Millisecond, Logger: log}
	var handler http.Handler
	switch name {
	case fetchurl.ServiceName:
		fcfg := fetchurl.DefaultConfig()
		if p := e.getenv("MUSTER_DEMO_PROXY"); p != "" {
			pu, err := url.Parse(p)
			if err != nil {
				return err
			}
			fcfg.Client = fetchurl.NewClient(http.ProxyURL(pu))
		}
		handler = fetchurl.Handler(fcfg)
	case scraper.ServiceName:
		l, ok := scraper.LayoutFor(*site)
		if !ok {
			var known []string
			for _, l := range scraper.Layouts() {
				known = append(known, l.Site)
			}
			return fmt.Errorf("no built-in layout for site %q (known: %s): %w", *site, strings.Join(known, ", "), errUsage)
		}
		scfg.Meta = l.Meta()
		handler = scraper.Handler(l)
	case wordcloud.ServiceName:
		handler = wordcloud.Handler()
	case "gateway":
		c, err := client.New(client.Config{Addr: registry})
		if err != nil {
			return err
		}
		res, err := client.NewResolver(client.ResolverConfig{Client: c, MaxAge: 500 * time.Millisecond, EjectFor: 5 * time.Second, Logger: log})
		if err != nil {
			return err
		}
		handler = gateway.Handler(gateway.Config{Resolver: res, Logger: log, Examples: jobboard.SampleURLs()})
	default:
		return fmt.Errorf("unknown demo service %q: %w", name, errUsage)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	scfg.Listener = ln
	if joining {
		fmt.Fprintf(e.stdout, "%s for %s listening on %s; registering with %s (Ctrl-C to stop)\n", name, *site, ln.Addr(), registry)
	}
	err = client.Serve(ctx, scfg, handler)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
