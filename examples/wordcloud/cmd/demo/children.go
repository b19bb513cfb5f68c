package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// children runs and stops the demo's service processes. start and stop
// may be called from any goroutine; each child's stderr is copied by a
// goroutine of its own, which ends with the child.
type children struct {
	mu      sync.Mutex
	procs   []*exec.Cmd
	out     io.Writer // where "started LABEL pid=N" goes
	errOut  io.Writer // where the children's log lines go
	verbose bool      // copy every log line, not only level=ERROR
	wg      sync.WaitGroup
}

// start runs self with args and env added to this process's environment,
// and announces it as label.
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
		return fmt.Errorf("start %s: %w", label, err)
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
