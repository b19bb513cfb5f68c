package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/musterhq/muster/internal/testutil"
)

// demoProc is the demo running as a child process.
type demoProc struct {
	cmd      *exec.Cmd
	gateway  string
	registry string
	samples  []string
	pids     map[string]int // label → pid
	tmp      string
	farewell chan string   // what the demo said was left registered
	eof      chan struct{} // closed when the demo's stdout ends
}

var startedRE = regexp.MustCompile(`^started (\S+) pid=(\d+)$`)

func startDemo(t *testing.T) *demoProc {
	t.Helper()
	d := &demoProc{pids: map[string]int{}, tmp: t.TempDir(), farewell: make(chan string, 1), eof: make(chan struct{})}
	d.cmd = exec.Command(binary, readmeStart...)
	d.cmd.Env = append(os.Environ(), "TMPDIR="+d.tmp)
	stdout, _ := d.cmd.StdoutPipe()
	d.cmd.Stderr = testWriter{t}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		d.cmd.Wait()
		for _, pid := range d.pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	ready := make(chan struct{})
	go func() {
		defer close(d.eof)
		sc := bufio.NewScanner(stdout)
		closed := false
		for sc.Scan() {
			line := sc.Text()
			t.Log("demo: " + line)
			switch {
			case startedRE.MatchString(line):
				m := startedRE.FindStringSubmatch(line)
				pid, _ := strconv.Atoi(m[2])
				d.pids[m[1]] = pid
			case strings.HasPrefix(line, "registry: "):
				d.registry = strings.TrimPrefix(line, "registry: ")
			case strings.HasPrefix(line, "gateway: "):
				d.gateway = strings.TrimPrefix(line, "gateway: ")
			case strings.HasPrefix(line, "  http://"):
				d.samples = append(d.samples, strings.TrimSpace(line))
			case strings.HasPrefix(line, "every service") || strings.HasPrefix(line, "still registered"):
				d.farewell <- line
			case strings.HasPrefix(line, "Ctrl-C"):
				if !closed {
					close(ready)
					closed = true
				}
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatal("the demo did not come up within 60s")
	}
	if d.gateway == "" || len(d.samples) == 0 {
		t.Fatalf("demo printed no gateway or samples: %+v", d)
	}
	return d
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// samplesFor returns the sample URLs whose host ends in site.
func (d *demoProc) samplesFor(site string) []string {
	var out []string
	for _, s := range d.samples {
		if u, err := url.Parse(s); err == nil && strings.HasSuffix(u.Hostname(), site) {
			out = append(out, s)
		}
	}
	return out
}

// submit fills the gateway's form in the browser, submits it, and returns
// the per-URL results (class and text of each #results li) and whether a
// word cloud SVG with words is on the page.
func submit(t *testing.T, ctx context.Context, gateway string, urls []string) (ok, failed []string, cloudWords int) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(gateway),
		chromedp.WaitVisible(chromedp.CSS(`textarea[name=urls]`)),
		chromedp.SetValue(chromedp.CSS(`textarea[name=urls]`), strings.Join(urls, "\n")),
		chromedp.Click(chromedp.CSS(`#submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#results`)),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	okText, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll('#results li.ok')).map(e => e.textContent.trim()).join('\n')`))
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	errText, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll('#results li.error')).map(e => e.textContent.trim()).join('\n')`))
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	cloudWords, err = chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#cloud svg text').length`))
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	return split(okText), split(errText), cloudWords
}

func TestDemo_BrowserEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole demo and a browser")
	}
	browser := testutil.Chromium(t)
	d := startDemo(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	bctx, cancelT := context.WithTimeout(bctx, 90*time.Second)
	defer cancelT()

	dice, jobs, org := d.samplesFor("dice.com"), d.samplesFor("jobs.example.com"), d.samplesFor("example.org")
	if len(dice) == 0 || len(jobs) == 0 || len(org) == 0 {
		t.Fatalf("samples of all three sites expected: %v", d.samples)
	}
	urls := []string{dice[0], jobs[0], org[0]}

	// Two supported layouts and one site without a scraper.
	ok, failed, words := submit(t, bctx, d.gateway, urls)
	if len(ok) != 2 || len(failed) != 1 || !strings.Contains(failed[0], org[0]) || !strings.Contains(failed[0], "no scraper supports example.org") {
		t.Fatalf("first submission: ok %q, failed %q", ok, failed)
	}
	if words == 0 {
		t.Fatal("no word cloud on the page")
	}

	// Start a scraper for the unsupported site; the gateway uses it without
	// a restart.
	sc := exec.Command(binary, readmeJoin...)
	sc.Env = append(os.Environ(), "TMPDIR="+d.tmp)
	sc.Stdout, sc.Stderr = testWriter{t}, testWriter{t}
	if err := sc.Start(); err != nil {
		t.Fatal(err)
	}
	scDone := false
	defer func() {
		if !scDone {
			sc.Process.Kill()
			sc.Wait()
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, failed, words = submit(t, bctx, d.gateway, urls)
		if len(failed) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after adding a scraper: ok %q, failed %q", ok, failed)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if len(ok) != 3 || words == 0 {
		t.Fatalf("after adding a scraper: ok %q, words %d", ok, words)
	}

	// Kill one of the two fetch_url instances without warning: the gateway
	// keeps working on the other.
	pid := d.pids["fetch_url-1"]
	if pid == 0 {
		t.Fatalf("no pid for fetch_url-1: %v", d.pids)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		form := url.Values{"urls": {strings.Join(urls, "\n")}}
		resp, err := http.PostForm(d.gateway, form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.Contains(string(body), `class="error"`) || !strings.Contains(string(body), "<svg") {
			t.Fatalf("submission %d after killing a fetch_url: %d\n%s", i, resp.StatusCode, body)
		}
	}

	// The added scraper deregisters on SIGTERM (Ctrl-C).
	sc.Process.Signal(syscall.SIGTERM)
	if err := sc.Wait(); err != nil {
		t.Fatalf("added scraper exited with %v", err)
	}
	scDone = true

	// Ctrl-C stops everything: the demo exits and its services are gone.
	d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-d.eof: // read everything it says before Wait closes the pipe
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop within 20s of Ctrl-C")
	}
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop within 20s of Ctrl-C")
	}
	// Every service deregistered, except the fetch_url killed above.
	select {
	case said := <-d.farewell:
		if said != "still registered (stopped without deregistering): fetch_url×1" {
			t.Errorf("after Ctrl-C the demo said %q", said)
		}
	case <-time.After(5 * time.Second):
		t.Error("the demo did not report what was left registered")
	}
	for label, pid := range d.pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("%s (pid %d) still running after the demo stopped", label, pid)
		}
	}
}
