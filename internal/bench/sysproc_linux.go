package bench

import "syscall"

// childAttr makes a child process receive SIGKILL when this process
// exits, however it exits, so that no server outlives a benchmark run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
