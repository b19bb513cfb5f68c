package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serverProc is a `muster server` child process over a data dir of its
// own. The goroutine that runs Run owns it; its log reader runs beside.
type serverProc struct {
	exe     string   // the muster binary
	wrap    []string // taskset -c 0, or nothing
	args    []string // after "server"
	env     []string
	url     string // http://127.0.0.1:PORT once started
	dnsAddr string // where it answers DNS (127.0.0.1:PORT), once started
	cmd     *exec.Cmd
	logMu   sync.Mutex
	logTail []string // the last lines it logged, for errors
}

// serverFlags lifts the limits a benchmark must not measure: every
// enrolment key's write rate and instance quota, and the instances one
// address may hold (the load comes from 127.0.0.1 alone); and turns DNS
// on, on a free port, for the dns workload.
var serverFlags = []string{"--register-rate", "1000000", "--max-instances-per-key", "1000000",
	"--max-instances-per-address", "1000000", "--dns-addr", "127.0.0.1:0"}

// startServer runs exe as `muster server` on a free port of 127.0.0.1
// over dataDir, with the admin token in its environment, pinned with
// wrap, and waits until it is ready.
func startServer(ctx context.Context, exe string, wrap []string, dataDir, token string, extra ...string) (*serverProc, error) {
	p := &serverProc{exe: exe, wrap: wrap,
		args: append(append([]string{"--data-dir", dataDir, "--log-format", "json"}, serverFlags...), extra...),
		env:  append(os.Environ(), "MUSTER_ADMIN_TOKEN="+token)}
	if err := p.start(ctx, "127.0.0.1:0"); err != nil {
		return nil, err
	}
	return p, nil
}

// start runs the process on addr and waits for its address and /readyz.
func (p *serverProc) start(ctx context.Context, addr string) error {
	argv := append(append(append([]string{}, p.wrap...), p.exe, "server", "--http-addr", addr), p.args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = p.env
	cmd.SysProcAttr = childAttr() // it dies with this process
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start muster server: %w", err)
	}
	p.cmd = cmd
	urlCh := make(chan listening, 1)
	go p.readLog(stderr, urlCh)
	select {
	case l := <-urlCh:
		p.url, p.dnsAddr = l.URL, l.DNSAddr
	case <-time.After(30 * time.Second):
		p.kill()
		return fmt.Errorf("muster server did not log its address in 30 s; it logged:\n%s", p.tail())
	case <-ctx.Done():
		p.kill()
		return ctx.Err()
	}
	if _, err := p.waitReady(ctx, 5*time.Minute); err != nil {
		p.kill()
		return err
	}
	return nil
}

// listening is what the server's "muster listening" line says.
type listening struct {
	Msg     string
	URL     string
	DNSAddr string `json:"dns_addr"`
}

// readLog keeps the last lines the server logs and sends its addresses
// once.
func (p *serverProc) readLog(r io.Reader, urlCh chan<- listening) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		p.logMu.Lock()
		p.logTail = append(p.logTail, line)
		if len(p.logTail) > 40 {
			p.logTail = p.logTail[len(p.logTail)-40:]
		}
		p.logMu.Unlock()
		if sent || !strings.Contains(line, "muster listening") {
			continue
		}
		var rec listening
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "muster listening" && rec.URL != "" {
			urlCh <- rec
			sent = true
		}
	}
}

func (p *serverProc) tail() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return strings.Join(p.logTail, "\n")
}

// waitReady polls /readyz until it answers 200 and returns how long that
// took.
func (p *serverProc) waitReady(ctx context.Context, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := hc.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("muster server not ready after %v; it logged:\n%s", limit, p.tail())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// pid is the server's process ID (taskset execs it, so it is the same).
func (p *serverProc) pid() int { return p.cmd.Process.Pid }

// kill ends the process with SIGKILL and reaps it.
func (p *serverProc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// restart kills the process with SIGKILL and starts it again on the same
// port and data dir; it returns once the new process has logged its
// address (not yet ready), and when it started.
func (p *serverProc) restart(ctx context.Context) (time.Time, error) {
	p.kill()
	addr := strings.TrimPrefix(p.url, "http://")
	argv := append(append(append([]string{}, p.wrap...), p.exe, "server", "--http-addr", addr), p.args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = p.env
	cmd.SysProcAttr = childAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return time.Time{}, err
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return time.Time{}, fmt.Errorf("restart muster server: %w", err)
	}
	p.cmd = cmd
	go p.readLog(stderr, make(chan listening, 1))
	return started, nil
}

// pinning is where the server and the load run.
type pinning struct {
	pinned    bool
	serverCPU int // CPUs the server may use
	loadCPU   int // CPUs the load generator may use
	why       string
	wrap      []string // prefix of the server's command
}

// pin puts this process (the load) on CPUs 1..N-1 and returns the
// wrapper that puts the server on CPU 0, when taskset exists and there
// are two CPUs or more. Otherwise both share every CPU.
func pin() pinning {
	n := runtime.NumCPU()
	none := pinning{serverCPU: n, loadCPU: n}
	if n < 2 {
		none.why = "one CPU"
		return none
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		none.why = "no taskset"
		return none
	}
	load := "1"
	if n > 2 {
		load = "1-" + strconv.Itoa(n-1)
	}
	if out, err := exec.Command("taskset", "-a", "-p", "-c", load, strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
		none.why = "taskset failed: " + strings.TrimSpace(string(out))
		return none
	}
	return pinning{pinned: true, serverCPU: 1, loadCPU: n - 1, wrap: []string{"taskset", "-c", "0"}}
}
