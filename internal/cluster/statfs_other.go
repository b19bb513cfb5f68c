//go:build !(linux || darwin || freebsd)

package cluster

import "errors"

// statfs cannot read free space on this platform; the disk guard never
// refuses, and a write on a full disk fails with ErrDiskFull or
// ErrStorage instead.
func statfs(string) (uint64, error) { return 0, errors.ErrUnsupported }
