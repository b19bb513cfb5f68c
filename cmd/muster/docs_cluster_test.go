package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// portOnAll returns a port that nothing listens on now on any of ips.
func portOnAll(t *testing.T, ips ...string) int {
	t.Helper()
	for range 50 {
		p := freePort(t)
		ok := true
		for _, ip := range ips {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Skipf("no port free on all of %v", ips)
	return 0
}

// runClusterDoc runs a doc's cluster section as written, in one bash
// session in a scratch copy of the repository, with the docs' fixed ports
// 9000 and 9001 (on 127.0.0.2–4) changed to free ones, and checks each
// block's output against its "# " lines. The servers it starts in the
// background are stopped when it ends.
func runClusterDoc(t *testing.T, doc, section string) {
	if testing.Short() {
		t.Skip("runs the docs' commands against real servers")
	}
	needTools(t, doc, section, "bash", "openssl")
	blocks := docBlocks(t, filepath.Join("../..", doc), section)
	for _, b := range blocks {
		if strings.Contains(b.script, "curl ") {
			needTools(t, doc, section, "curl")
			break
		}
	}
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	for _, ip := range ips {
		freeAddrOn(t, ip) // skips where these addresses do not work
	}
	http, raft := portOnAll(t, ips...), portOnAll(t, ips...)
	ports := strings.NewReplacer(":9000", ":"+strconv.Itoa(http), ":9001", ":"+strconv.Itoa(raft))

	dir := t.TempDir()
	root, _ := filepath.Abs("../..")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "muster" || strings.HasPrefix(e.Name(), "data-") || e.Name() == "cluster-secret" {
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	sh := exec.Command("bash", "-c", blockScript(blocks, ports))
	sh.Dir = dir
	sh.Env = append(os.Environ(), "MUSTER_ADDR=", "MUSTER_TOKEN=", "MUSTER_ADMIN_TOKEN=")
	sh.SysProcAttr = procGroup()
	// A file, not a pipe: the servers the blocks start in the background
	// keep their output open, and Wait would wait for them.
	outFile, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	sh.Stdout, sh.Stderr = outFile, outFile
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
		t.Errorf("the cluster section did not finish in 3 minutes")
	}
	killGroup(sh) // the servers the blocks left running
	out, _ := os.ReadFile(outFile.Name())
	checkBlocks(t, doc, section, blocks, string(out), runErr, ports)
}

// TestDocs_READMECluster: the README's three servers on one machine run
// as written and form a cluster.
func TestDocs_READMECluster(t *testing.T) {
	runClusterDoc(t, "README.md", "## Run a cluster")
}

// TestDocs_ClusterDoc: docs/cluster.md's three servers on one machine
// run as written.
func TestDocs_ClusterDoc(t *testing.T) {
	runClusterDoc(t, "docs/cluster.md", "## Three servers on one machine")
}

// TestDocs_HTTPS: docs/security.md's API over HTTPS, with client
// certificates, runs as written: the CLI reaches it with MUSTER_CACERT
// and a client certificate, and curl without one is refused.
func TestDocs_HTTPS(t *testing.T) {
	runClusterDoc(t, "docs/security.md", "## Serving the API over HTTPS")
}
