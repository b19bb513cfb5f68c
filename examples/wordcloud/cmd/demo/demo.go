package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/examples/wordcloud/fetchurl"
	"github.com/musterhq/muster/examples/wordcloud/jobboard"
	"github.com/musterhq/muster/examples/wordcloud/scraper"
	"github.com/musterhq/muster/examples/wordcloud/wordcloud"
)

// runDemo starts the registry, the offline job board and every service,
// says where the gateway is, and stops it all when ctx ends. online lets
// fetch_url reach the internet instead of the job board; verbose shows the
// registry's and the services' logs.
func runDemo(ctx context.Context, e env, online, verbose bool) error {
	// This run's directory: the registry's data and the state file, gone
	// when the run stops.
	runDir, err := os.MkdirTemp("", runPattern)
	if err != nil {
		return err
	}
	defer os.RemoveAll(runDir)

	reg, token, err := startRegistry(ctx, filepath.Join(runDir, "registry"), e.stderr, verbose)
	if err != nil {
		return err
	}
	defer reg.Close()
	admin, _ := client.New(client.Config{Addr: reg.URL(), Token: token})
	key, err := admin.CreateKey(ctx, []string{fetchurl.ServiceName, scraper.ServiceName, wordcloud.ServiceName, "gateway"}, "word-cloud demo")
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

	if err := writeState(runDir, state{Registry: reg.URL(), Key: key.Secret, JobBoard: boardURL, PID: os.Getpid()}); err != nil {
		return err
	}

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
		{"fetch_url-1", []string{"service", "fetch_url"}, fetchEnv},
		{"fetch_url-2", []string{"service", "fetch_url"}, fetchEnv},
		{"scraper-dice.com", []string{"service", "scraper", "--site", "dice.com"}, env},
		{"scraper-jobs.example.com", []string{"service", "scraper", "--site", "jobs.example.com"}, env},
		{"wordcloud", []string{"service", "wordcloud"}, env},
		{"gateway", []string{"service", "gateway"}, env},
	} {
		if err := kids.start(self, c.label, c.args, c.env); err != nil {
			return err
		}
	}

	c, _ := client.New(client.Config{Addr: reg.URL()})
	gw, err := awaitServices(ctx, c, map[string]int{fetchurl.ServiceName: 2, scraper.ServiceName: 2, wordcloud.ServiceName: 1, "gateway": 1})
	if err != nil || ctx.Err() != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "registry: %s\n", reg.URL())
	fmt.Fprintf(e.stdout, "job board: %s (offline sample pages; fetch_url uses it as its proxy)\n", boardURL)
	fmt.Fprintf(e.stdout, "gateway: %s\n", gw)
	fmt.Fprintln(e.stdout, "\nPaste these URLs into the gateway's form:")
	for _, u := range jobboard.SampleURLs() {
		fmt.Fprintln(e.stdout, "  "+u)
	}
	fmt.Fprintln(e.stdout, "\nScrapers run for dice.com and jobs.example.com; example.org has none yet.")
	fmt.Fprintln(e.stdout, "Add one while the demo runs, and the gateway uses it at once:")
	fmt.Fprintln(e.stdout, "  go run ./examples/wordcloud/cmd/demo scraper --site example.org")
	fmt.Fprintf(e.stdout, "(it finds this demo in %s; with several demos running, add --state and that path)\n", statePath(runDir))
	fmt.Fprintln(e.stdout, "\nCtrl-C stops everything.")

	<-ctx.Done()
	os.Remove(statePath(runDir)) // first: no one joins a demo that is stopping
	fmt.Fprintln(e.stdout, "stopping: each service drains and deregisters")
	kids.stop()
	return farewell(c, e.stdout)
}

// awaitServices waits up to 30 s until each service in want has at least
// that many instances, and returns the gateway's URL. It returns "" and
// no error if ctx ends first.
func awaitServices(ctx context.Context, c *client.Client, want map[string]int) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	var gw string
	for name, n := range want {
		for {
			res, err := c.Lookup(ctx, name)
			if err == nil && len(res.Instances) >= n {
				if name == "gateway" {
					gw = res.Instances[0].URL
				}
				break
			}
			if ctx.Err() != nil {
				return "", nil
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("%s did not register within 30s", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return gw, nil
}

// farewell reports what is still registered once the services have
// stopped: only instances that died without deregistering (killed), which
// would expire after their TTL.
func farewell(c *client.Client, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	left, err := c.Services(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, s := range left.Services {
		names = append(names, fmt.Sprintf("%s×%d", s.Name, s.Instances))
	}
	if len(names) == 0 {
		fmt.Fprintln(stdout, "every service deregistered")
	} else {
		fmt.Fprintf(stdout, "still registered (stopped without deregistering): %s\n", strings.Join(names, ", "))
	}
	return nil
}
