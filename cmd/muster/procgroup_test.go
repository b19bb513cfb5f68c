package main

import (
	"os/exec"
	"syscall"
)

// procGroup starts a command in a process group of its own, so that
// killGroup ends it with everything it started.
func procGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func killGroup(c *exec.Cmd) {
	if c.Process != nil {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	}
}
