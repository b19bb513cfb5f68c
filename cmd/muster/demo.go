package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/examples/wordcloud/fetchurl"
	"github.com/musterhq/muster/examples/wordcloud/gateway"
	"github.com/musterhq/muster/examples/wordcloud/jobboard"
	"github.com/musterhq/muster/examples/wordcloud/scraper"
	"github.com/musterhq/muster/examples/wordcloud/wordcloud"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/durable"
	"github.com/musterhq/muster/internal/server"
)

// demoState is what a running demo writes so that `muster demo scraper`
// can join it from another terminal.
type demoState struct {
	Registry string `json:"registry"`
	Key      string `json:"key"`
	JobBoard string `json:"job_board"`
}

// demoStatePath is per user, so that two users' demos never mix.
func demoStatePath() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("muster-demo-%d.json", os.Getuid()))
}

// readDemoState reads the running demo's state, trusting only a regular
// file of this user's that nobody else can read or write (it holds a key).
func readDemoState() (demoState, error) {
	var st demoState
	p := demoStatePath()
	fi, err := os.Lstat(p)
	if err != nil {
		return st, err
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 || !ok || int(sys.Uid) != os.Getuid() {
		return st, fmt.Errorf("%s is not a private file of this user's; not trusting it", p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("demo state %s: %w", p, err)
	}
	return st, nil
}

const demoUsage = `muster demo: the tutorial's word-cloud app, rebuilt on muster

  muster demo                        start a registry, the services, the sample job board
                                     and the gateway, all on free ports; Ctrl-C stops them
  muster demo scraper --site SITE    add a scraper for SITE to the running demo
                                     (built-in layouts: dice.com, jobs.example.com, example.org)
`

// runDemo dispatches the demo's commands. The services run as child
// processes of this same binary, through the hidden "demo service" command.
func runDemo(ctx context.Context, e env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "scraper":
			return runDemoService(ctx, e, append([]string{"scraper"}, args[1:]...), true)
		case "service":
			return runDemoService(ctx, e, args[1:], false)
		case "-h", "--help", "help":
			fmt.Fprint(e.stdout, demoUsage)
			return nil
		}
	}
	fs := flag.NewFlagSet("muster demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	online := fs.Bool("online", false, "let fetch_url reach the internet instead of the offline sample job board")
	verbose := fs.Bool("v", false, "show the services' logs")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	return runDemoAll(ctx, e, *online, *verbose)
}

func runDemoAll(ctx context.Context, e env, online, verbose bool) error {
	dir, err := os.MkdirTemp("", "muster-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The registry, on free ports so that it never collides with one on 9000.
	cfg := server.DefaultConfig()
	cfg.HTTPAddr, cfg.RaftAddr, cfg.DataDir = "127.0.0.1:0", "127.0.0.1:0", dir
	cfg.AdminToken = "ma_" + catalog.RandomSecret()
	cfg.Grace = 2 * time.Second
	// The registry's own warnings (its first election, say) are noise in
	// the demo unless asked for with -v.
	regLevel := slog.LevelError
	if verbose {
		regLevel = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: regLevel})).With("component", "registry")
	reg, err := server.New(cfg)
	if err != nil {
		return err
	}
	if err := reg.Start(ctx); err != nil {
		return err
	}
	defer reg.Close()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = reg.Ready(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("registry not ready: %w", err)
	}
	admin, _ := client.New(client.Config{Addr: reg.URL(), Token: cfg.AdminToken})
	key, err := admin.CreateKey(ctx, []string{"fetch_url", "scraper", "wordcloud", "gateway"}, "word-cloud demo")
	if err != nil {
		return err
	}

	// The offline job board, a forward proxy serving the sample pages.
	boardLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	board := &http.Server{Handler: jobboard.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go board.Serve(boardLn)
	defer board.Close()
	boardURL := "http://" + boardLn.Addr().String()

	state := demoState{Registry: reg.URL(), Key: key.Secret, JobBoard: boardURL}
	b, _ := json.Marshal(state)
	if err := durable.WriteFile(demoStatePath(), b, 0o600); err != nil {
		return fmt.Errorf("demo: write state for `muster demo scraper`: %w", err)
	}
	defer os.Remove(demoStatePath())

	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := []string{"MUSTER_ADDR=" + reg.URL(), "MUSTER_KEY=" + key.Secret}
	fetchEnv := env
	if !online {
		fetchEnv = append(fetchEnv, "MUSTER_DEMO_PROXY="+boardURL)
	}
	kids := &children{out: e.stdout, errOut: e.stderr, verbose: verbose}
	defer kids.stop()
	for _, c := range []struct {
		label string
		args  []string
		env   []string
	}{
		{"fetch_url-1", []string{"demo", "service", "fetch_url"}, fetchEnv},
		{"fetch_url-2", []string{"demo", "service", "fetch_url"}, fetchEnv},
		{"scraper-dice.com", []string{"demo", "service", "scraper", "--site", "dice.com"}, env},
		{"scraper-jobs.example.com", []string{"demo", "service", "scraper", "--site", "jobs.example.com"}, env},
		{"wordcloud", []string{"demo", "service", "wordcloud"}, env},
		{"gateway", []string{"demo", "service", "gateway"}, env},
	} {
		if err := kids.start(self, c.label, c.args, c.env); err != nil {
			return err
		}
	}

	// Wait until every service is registered, then say where the gateway is.
	c, _ := client.New(client.Config{Addr: reg.URL()})
	want := map[string]int{"fetch_url": 2, "scraper": 2, "wordcloud": 1, "gateway": 1}
	deadline := time.Now().Add(30 * time.Second)
	var gw client.Result
	for name, n := range want {
		for {
			res, err := c.Lookup(ctx, name)
			if err == nil && len(res.Instances) >= n {
				if name == "gateway" {
					gw = res
				}
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("demo: %s did not register within 30s", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fmt.Fprintf(e.stdout, "registry: %s\n", reg.URL())
	fmt.Fprintf(e.stdout, "job board: %s (offline sample pages; fetch_url uses it as its proxy)\n", boardURL)
	fmt.Fprintf(e.stdout, "gateway: %s\n", gw.Instances[0].URL)
	fmt.Fprintln(e.stdout, "\nPaste these URLs into the gateway's form:")
	for _, u := range jobboard.SampleURLs() {
		fmt.Fprintln(e.stdout, "  "+u)
	}
	fmt.Fprintln(e.stdout, "\nScrapers run for dice.com and jobs.example.com; example.org has none yet.")
	fmt.Fprintln(e.stdout, "Add one while the demo runs, and the gateway uses it at once:")
	fmt.Fprintln(e.stdout, "  go run ./cmd/muster demo scraper --site example.org")
	fmt.Fprintln(e.stdout, "\nCtrl-C stops everything.")

	<-ctx.Done()
	fmt.Fprintln(e.stdout, "stopping: each service drains and deregisters")
	kids.stop()
	// Report what is still registered: only instances that died without
	// deregistering (killed), which would expire after their TTL.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	left, err := c.Services(sctx)
	if err != nil {
		return err
	}
	var names []string
	for _, s := range left.Services {
		names = append(names, fmt.Sprintf("%s×%d", s.Name, s.Instances))
	}
	if len(names) == 0 {
		fmt.Fprintln(e.stdout, "every service deregistered")
	} else {
		fmt.Fprintf(e.stdout, "still registered (stopped without deregistering): %s\n", strings.Join(names, ", "))
	}
	return nil
}

// children runs and stops the demo's service processes.
type children struct {
	mu      sync.Mutex
	procs   []*exec.Cmd
	out     io.Writer
	errOut  io.Writer
	verbose bool
	wg      sync.WaitGroup
}

func (k *children) start(self, label string, args, env []string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("demo: start %s: %w", label, err)
	}
	fmt.Fprintf(k.out, "started %s pid=%d\n", label, cmd.Process.Pid)
	k.procs = append(k.procs, cmd)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if k.verbose || strings.Contains(sc.Text(), "level=ERROR") {
				fmt.Fprintf(k.errOut, "[%s] %s\n", label, sc.Text())
			}
		}
	}()
	return nil
}

// stop asks every child to shut down (SIGTERM: each drains and
// deregisters), waits up to 10 s, then kills what is left.
func (k *children) stop() {
	k.mu.Lock()
	procs := k.procs
	k.procs = nil
	k.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func(p *exec.Cmd) {
			defer wg.Done()
			p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				p.Process.Kill()
				<-done
			}
		}(p)
	}
	wg.Wait()
	k.wg.Wait()
}

// runDemoService runs one of the app's services in this process until ctx
// ends. joining means a user started it by hand (muster demo scraper), so
// the registry address and key may come from the running demo's state file.
func runDemoService(ctx context.Context, e env, args []string, joining bool) error {
	if len(args) == 0 {
		return fmt.Errorf("demo service needs a name: %w", errUsage)
	}
	name := args[0]
	fs := flag.NewFlagSet("muster demo "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	site := fs.String("site", "", "the job site this scraper reads (scraper only)")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	registry, key := e.getenv("MUSTER_ADDR"), e.getenv("MUSTER_KEY")
	if joining && (registry == "" || key == "") {
		st, err := readDemoState()
		if err != nil {
			return fmt.Errorf("no running demo found (start `muster demo` first, or set MUSTER_ADDR and MUSTER_KEY): %w", err)
		}
		registry, key = st.Registry, st.Key
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	scfg := client.ServiceConfig{Name: name, Address: "127.0.0.1", Registry: registry, Key: key, TTL: 3 * time.Second,
		DrainDelay: 200 * time.Millisecond, Logger: log}
	var handler http.Handler
	switch name {
	case "fetch_url":
		fcfg := fetchurl.DefaultConfig()
		if p := e.getenv("MUSTER_DEMO_PROXY"); p != "" {
			pu, err := url.Parse(p)
			if err != nil {
				return err
			}
			fcfg.Client = fetchurl.NewClient(http.ProxyURL(pu))
		}
		handler = fetchurl.Handler(fcfg)
	case "scraper":
		l, ok := scraper.LayoutFor(*site)
		if !ok {
			var known []string
			for _, l := range scraper.Layouts() {
				known = append(known, l.Site)
			}
			return fmt.Errorf("no built-in layout for site %q (known: %s): %w", *site, strings.Join(known, ", "), errUsage)
		}
		scfg.Meta = map[string]string{"site": l.Site}
		handler = scraper.Handler(l)
	case "wordcloud":
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
