package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
)

// A walk-through in the docs is a test: its shell blocks run, in order,
// in one bash session against a real server started with the docs' own
// quickstart command, and each block's output must show what the block's
// "# " comment lines show. Only the ports change: the docs' fixed 9000
// (the server) and 18888 (an instance) become free ports, so that the
// test never meets another server.

// docBlock is one ```sh block: its commands and the output it shows.
type docBlock struct {
	line   int      // of the opening fence, for messages
	script string   // the block as written
	shows  []string // its "# " lines, the output it shows
}

// docBlocks returns the ```sh blocks of the doc between the heading
// section and the next heading of the same level.
func docBlocks(t *testing.T, path, section string) []docBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	level := strings.Index(section, " ")
	var blocks []docBlock
	in, fenced := false, false
	var cur docBlock
	for i, l := range lines {
		switch {
		case l == section:
			in = true
			continue
		case in && !fenced && strings.HasPrefix(l, strings.Repeat("#", level)+" "):
			in = false
		}
		if !in {
			continue
		}
		switch {
		case !fenced && l == "```sh":
			fenced, cur = true, docBlock{line: i + 1}
		case fenced && l == "```":
			fenced = false
			blocks = append(blocks, cur)
		case fenced:
			cur.script += l + "\n"
			if s, ok := strings.CutPrefix(strings.TrimSpace(l), "# "); ok && !strings.HasPrefix(l, "#!") {
				cur.shows = append(cur.shows, s)
			}
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("%s: no ```sh blocks under %q", path, section)
	}
	return blocks
}

// showPattern turns a line of shown output into a pattern: "..." stands
// for anything, and IDs, secrets, tokens, times and indexes vary from run
// to run. ports maps the docs' ports to the test's.
func showPattern(show string, ports *strings.Replacer) *regexp.Regexp {
	parts := strings.Split(ports.Replace(show), "...")
	for i, part := range parts {
		p := regexp.QuoteMeta(part)
		for _, r := range []struct{ from, to string }{
			{`key_[0-9a-f]{16}`, `key_[0-9a-f]{16}`},
			{`\b[0-9a-f]{32}\b`, `[0-9a-f]{32}`},
			{`node-[0-9a-f]+`, `node-[0-9a-f]+`},
			{`\d{4}-\d\d-\d\dT[0-9:]+(\\\.\d+)?Z`, `[0-9T:.Z-]+`},
		} {
			p = regexp.MustCompile(r.from).ReplaceAllString(p, r.to)
		}
		parts[i] = p
	}
	return regexp.MustCompile(strings.Join(parts, ".*"))
}

// runWalkthrough runs the doc's section against a fresh server in a
// scratch copy of the repository (so that the docs' relative paths and
// their `go build` work), and checks every block.
func runWalkthrough(t *testing.T, doc, section string) {
	runWalkthroughWith(t, doc, section, false)
}

// runWalkthroughWith is runWalkthrough, with the server started by the
// command the section shows (indented, in its text) rather than the
// quickstart's when consul is set: the Consul-compatible API on, at the
// docs' 127.0.0.1:8500.
func runWalkthroughWith(t *testing.T, doc, section string, consul bool) {
	if testing.Short() {
		t.Skip("runs the docs' commands against a real server")
	}
	needTools(t, doc, section, "bash", "curl")
	blocks := docBlocks(t, filepath.Join("../..", doc), section)
	for _, b := range blocks {
		if !strings.Contains(b.script, "dig ") {
			continue
		}
		needTools(t, doc, section, "dig")
		break
	}

	// A scratch directory that looks like the repository: every top-level
	// entry is a link to the real one, and muster-data and the built
	// binary land in the scratch directory.
	dir := t.TempDir()
	root, _ := filepath.Abs("../..")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "muster-data" || e.Name() == "muster" {
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	// The docs' fixed ports: the server's, its DNS's, and the callback's
	// of an instance they start.
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	dnsPort := strconv.Itoa(freePort(t))
	calleePort := freePort(t)
	consulAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	ports := strings.NewReplacer("127.0.0.1:9000", addr, "127.0.0.1:8600", "127.0.0.1:"+dnsPort, "-p 8600", "-p "+dnsPort,
		"18888", strconv.Itoa(calleePort), "127.0.0.1:8500", consulAddr, "18600", strconv.Itoa(freePort(t)))
	env := append(os.Environ(), "MUSTER_HTTP_ADDR="+addr, "MUSTER_ADDR=", "MUSTER_TOKEN=", "MUSTER_KEY=")

	// The quickstart's command, as written, with the address from the
	// environment and the DNS port replaced.
	quick := docBlocks(t, "../../README.md", "## Quickstart")[0].script
	if consul {
		// The section's own server command, indented in its text.
		quick = serverCommandIn(t, filepath.Join("../..", doc), section)
	}
	args := strings.Fields(ports.Replace(strings.TrimSpace(strings.SplitN(quick, "\n", 2)[0])))
	if len(args) < 4 || strings.Join(args[:4], " ") != "go run ./cmd/muster server" {
		t.Fatalf("the quickstart's first command is %q, not go run ./cmd/muster server", args)
	}
	server := exec.Command(args[0], args[1:]...)
	server.Dir, server.Env = dir, env
	var serverLog bytes.Buffer
	server.Stdout, server.Stderr = &serverLog, &serverLog
	server.SysProcAttr = procGroup()
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		killGroup(server)
		server.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", serverLog.String())
		}
	})
	waitReady(t, "http://"+addr)

	sh := exec.Command("bash", "-c", blockScript(blocks, ports))
	sh.Dir, sh.Env = dir, env
	sh.SysProcAttr = procGroup()
	var out bytes.Buffer
	sh.Stdout, sh.Stderr = &out, &out
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sh.Wait() }()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		killGroup(sh)
		runErr = <-done
		t.Errorf("the walk-through did not finish in 2 minutes")
	}
	killGroup(sh) // whatever the blocks left running in the background

	checkBlocks(t, doc, section, blocks, out.String(), runErr, ports)
}

// serverCommandIn returns the server command a doc's section shows as an
// indented line.
func serverCommandIn(t *testing.T, path, section string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case l == section:
			in = true
		case in && strings.HasPrefix(l, "## "):
			in = false
		case in && strings.HasPrefix(l, "    go run ./cmd/muster server"):
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("%s %q shows no server command (an indented go run ./cmd/muster server line)", path, section)
	return ""
}

// blockScript is the bash script that runs blocks in order, with the
// docs' ports replaced, marking where each block's output begins and
// where the whole ends (for checkBlocks).
func blockScript(blocks []docBlock, ports *strings.Replacer) string {
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, b := range blocks {
		fmt.Fprintf(&script, "echo '@@block %d'\n", i)
		script.WriteString(ports.Replace(b.script))
	}
	script.WriteString("echo '@@end'\n")
	return script.String()
}

// checkBlocks splits a blockScript's output by block, fails if the
// script failed or stopped early, and checks that each block's output
// shows what the block's "# " lines show, in their order: each shown line
// matches on the line the one before it matched or on a later one.
func checkBlocks(t *testing.T, doc, section string, blocks []docBlock, out string, runErr error, ports *strings.Replacer) {
	t.Helper()
	got := map[int]string{}
	cur := -1
	finished := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if n, ok := strings.CutPrefix(l, "@@block "); ok {
			cur, _ = strconv.Atoi(n)
			continue
		}
		if l == "@@end" {
			finished = true
			continue
		}
		got[cur] += l + "\n"
	}
	if runErr != nil || !finished {
		t.Fatalf("%s %q: block %d (line %d) failed: %v\n--- script\n%s--- output\n%s", doc, section, cur, blocks[max(cur, 0)].line, runErr, blocks[max(cur, 0)].script, got[cur])
	}
	for _, msg := range unshown(doc, blocks, got, ports) {
		t.Error(msg)
	}
}

// unshown checks each block's output (got, by block) against its "# "
// lines, in order, and says what does not match.
func unshown(doc string, blocks []docBlock, got map[int]string, ports *strings.Replacer) []string {
	var msgs []string
	for i, b := range blocks {
		from := 0 // where the line the last shown line matched begins
		for _, show := range b.shows {
			p := showPattern(show, ports)
			loc := p.FindStringIndex(got[i][from:])
			switch {
			case loc != nil:
				from = strings.LastIndex(got[i][:from+loc[0]], "\n") + 1
			case p.MatchString(got[i]):
				msgs = append(msgs, fmt.Sprintf("%s line %d: the block's output shows %q, but not after what the lines before it show:\n%s",
					doc, b.line, show, got[i]))
			default:
				msgs = append(msgs, fmt.Sprintf("%s line %d: the block's output does not show %q:\n%s", doc, b.line, show, got[i]))
			}
		}
	}
	return msgs
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second) // go run compiles first
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the server at %s did not become ready", url)
}

// TestUnshown: a block's shown lines must appear in its output in the
// order shown; two may match one line; "..." stands for anything.
func TestUnshown(t *testing.T) {
	ports := strings.NewReplacer()
	out := "muster: watching web: 1 instance\nINDEX  EVENT  DETAIL\n7  snapshot  web\n"
	for _, tc := range []struct {
		shows []string
		want  string // in the one message, or "" for none
	}{
		{[]string{"muster: watching ...", "INDEX  ...DETAIL", "...snapshot  ...web"}, ""},
		{[]string{"INDEX", "EVENT", "snapshot"}, ""}, // INDEX and EVENT on one line
		{[]string{"INDEX  ...DETAIL", "...snapshot", "muster: watching ..."}, "but not after what the lines before it show"},
		{[]string{"INDEX  ...STATUS"}, "does not show"},
	} {
		msgs := unshown("README.md", []docBlock{{line: 3, shows: tc.shows}}, map[int]string{0: out}, ports)
		switch {
		case tc.want == "" && len(msgs) > 0:
			t.Errorf("%q: %q", tc.shows, msgs)
		case tc.want != "" && (len(msgs) != 1 || !strings.Contains(msgs[0], tc.want)):
			t.Errorf("%q: %q, want one message saying %q", tc.shows, msgs, tc.want)
		}
	}
}

// TestDocs_APIWalkthrough: docs/api.md's curl walk-through runs as
// written.
func TestDocs_APIWalkthrough(t *testing.T) {
	runWalkthrough(t, "docs/api.md", "## A walk-through with curl")
}

// TestDocs_READMEWalkthrough: the README's walk-through runs as written.
func TestDocs_READMEWalkthrough(t *testing.T) {
	runWalkthrough(t, "README.md", "## Walk-through")
}

// needTools skips t when a tool a doc's section runs is not installed,
// loudly; in CI (MUSTER_CI=1), where .ci/run installs them all, it
// fails instead: a doc's commands are never left untested there.
func needTools(t *testing.T, doc, section string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("MUSTER_CI") == "1" {
				t.Fatalf("%s %q runs %s, which is not installed: .ci/run installs it", doc, section, tool)
			}
			t.Skipf("SKIPPED: %s %q runs %s, which is not installed", doc, section, tool)
		}
	}
}

// TestREADME_SidecarWaitEnds: the README's block that starts the sidecar
// and waits for its instance stops waiting, and says so, when the
// sidecar exits instead: here because an earlier run's eviction still
// bars the endpoint, as on a second run of the walk-through within ten
// minutes. Run as the walk-through test runs it (set -e), the block
// fails with the sidecar's status; run as a user pastes it, it ends.
func TestREADME_SidecarWaitEnds(t *testing.T) {
	needTools(t, "README.md", "## Walk-through", "bash")
	var block string
	for _, b := range docBlocks(t, "../../README.md", "## Walk-through") {
		if strings.Contains(b.script, "./muster register ") && strings.Contains(b.script, "until ") {
			block = b.script
		}
	}
	if block == "" {
		t.Fatal("the README's walk-through has no block that starts the sidecar and waits for it")
	}
	dir := t.TempDir()
	if err := os.Symlink(binary, filepath.Join(dir, "muster")); err != nil {
		t.Fatal(err)
	}

	// The endpoint the block registers, evicted by an "earlier run".
	h := testserver.NewHarness(t, nil)
	k := h.Key(t, "fetch_*")
	env := map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_KEY": k.Secret}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sideOut, sideErr testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"register", "--service", "fetch_url", "--address", "127.0.0.1", "--port", "8888"},
			func(k string) string { return env[k] }, &sideOut, &sideErr)
	}()
	waitOutput(t, &sideOut, "registered fetch_url as ")
	found, err := h.Admin.Lookup(context.Background(), "fetch_url")
	if err != nil || len(found.Instances) != 1 {
		t.Fatalf("the earlier run's instance: %+v, %v", found, err)
	}
	if _, err := h.Admin.Evict(context.Background(), found.Instances[0].ID, 10*time.Minute, "walk-through"); err != nil {
		t.Fatal(err)
	}
	<-done

	for _, tc := range []struct {
		name, prelude string
		code          int // the script's exit status
	}{
		{"as the walk-through test runs it", "set -euo pipefail\n", 1},
		{"as pasted into a shell", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sh := exec.Command("bash", "-c", tc.prelude+block)
			sh.Dir = dir
			sh.Env = append(os.Environ(), "MUSTER_ADDR="+h.Srv.URL(), "MUSTER_KEY="+k.Secret, "MUSTER_TOKEN=")
			sh.SysProcAttr = procGroup()
			var out bytes.Buffer
			sh.Stdout, sh.Stderr = &out, &out
			if err := sh.Start(); err != nil {
				t.Fatal(err)
			}
			defer killGroup(sh)
			exited := make(chan error, 1)
			go func() { exited <- sh.Wait() }()
			select {
			case err := <-exited:
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				}
				if code != tc.code || !strings.Contains(out.String(), "the sidecar exited; its error is above\n") ||
					!strings.Contains(out.String(), "muster: the registry refused the registration: fetch_url at 127.0.0.1:8888 was evicted by an operator") {
					t.Errorf("exit %d (%v), want %d; output:\n%s", code, err, tc.code, out.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("the block still waits, 30 s after its sidecar exited; output:\n%s", out.String())
			}
		})
	}
}

// TestDocs_ConsulWalkthrough: docs/consul-compat.md's curl walk-through
// of Consul's writes runs as written.
func TestDocs_ConsulWalkthrough(t *testing.T) {
	runWalkthroughWith(t, "docs/consul-compat.md", "## Try it with curl", true)
}

// TestDocs_GRPCExample: examples/grpc/README.md's blocks run as written.
func TestDocs_GRPCExample(t *testing.T) {
	runWalkthrough(t, "examples/grpc/README.md", "## Run it")
}
