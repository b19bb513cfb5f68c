//go:build linux

package cluster

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// inodeOf returns the inode of the file at path.
func inodeOf(path string) (uint64, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Ino == 0 {
		return 0, false
	}
	return st.Ino, true
}

// shedPages drops this process's resident pages of every mapping of the
// file with inode ino whose name ends in /raft.db, with
// madvise(MADV_DONTNEED): for a shared mapping of a file this discards
// the process's references to the pages, not their contents, which stay
// in the page cache and the file. It returns how many ranges it dropped.
// The caller must hold the store's write lock (see writeGuard).
func shedPages(ino uint64) (int, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 6 || !bytes.HasSuffix(fields[5], []byte("/raft.db")) {
			continue
		}
		if i, err := strconv.ParseUint(string(fields[4]), 10, 64); err != nil || i != ino {
			continue
		}
		// bbolt maps the file read-only; a mapping this process could
		// write through is not bbolt's, and is left alone.
		if len(fields[1]) < 2 || fields[1][1] != '-' {
			continue
		}
		lo, hi, ok := bytes.Cut(fields[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), uintptr(syscall.MADV_DONTNEED)); e != 0 {
			return n, fmt.Errorf("madvise: %w", e)
		}
		n++
	}
	return n, sc.Err()
}
