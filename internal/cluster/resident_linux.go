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

// fileID is what names a file however its path is spelled: its device
// and inode.
type fileID struct {
	major, minor uint64
	ino          uint64
}

// fileIDOf returns the identity of the file at path.
func fileIDOf(path string) (fileID, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Ino == 0 {
		return fileID{}, false
	}
	dev := uint64(st.Dev)
	// Linux's encoding of dev_t (glibc's gnu_dev_major and gnu_dev_minor):
	// major in bits 8-19 and 44-63, minor in bits 0-7 and 20-43.
	major := (dev>>8)&0xfff | (dev>>32)&0xfffff000
	minor := dev&0xff | (dev>>12)&0xffffff00
	return fileID{major: major, minor: minor, ino: st.Ino}, true
}

// shedPages drops this process's resident pages of every read-only
// mapping of the file id, with madvise(MADV_DONTNEED): for a shared
// mapping of a file this discards the process's references to the pages,
// not their contents, which stay in the page cache and the file. It
// returns how many ranges it dropped. The caller must hold the store's
// write lock (see writeGuard).
func shedPages(id fileID) (int, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64<<10) // a line holds a path of up to PATH_MAX
	for sc.Scan() {
		// address perms offset major:minor inode [path]
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 5 {
			continue
		}
		if i, err := strconv.ParseUint(string(fields[4]), 10, 64); err != nil || i != id.ino {
			continue
		}
		maj, min, ok := bytes.Cut(fields[3], []byte(":"))
		if !ok {
			continue
		}
		if m, err := strconv.ParseUint(string(maj), 16, 64); err != nil || m != id.major {
			continue
		}
		if m, err := strconv.ParseUint(string(min), 16, 64); err != nil || m != id.minor {
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
