//go:build !(linux || darwin || freebsd)

package server

// fileLimit cannot read the limit of open files here: 0, so that the
// long-lived connection limits stay as configured.
func fileLimit() uint64 { return 0 }
