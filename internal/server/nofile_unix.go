//go:build linux || darwin || freebsd

package server

import "syscall"

// fileLimit returns the process's limit of open files (the soft limit,
// which the Go runtime raises to the hard one at start), or 0 when it
// cannot be read.
func fileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}
