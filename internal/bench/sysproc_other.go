//go:build !linux

package bench

import "syscall"

// childAttr is nil where the parent's death cannot signal the child; the
// benchmark kills its server when it ends.
func childAttr() *syscall.SysProcAttr { return nil }
