package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the unit of utime and stime in /proc/PID/stat:
// sysconf(_SC_CLK_TCK), which is 100 on every Linux architecture Go
// supports (the kernel's USER_HZ).
const clockTicks = 100

// errNoProc is returned where /proc cannot be read (not Linux, or the
// process is gone).
var errNoProc = errors.New("bench: no /proc for the process")

// ReadCPU returns the CPU time (user and system together) process pid
// has used, from /proc/PID/stat. Pass os.Getpid() for this process.
func ReadCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errNoProc, err)
	}
	return parseStat(string(data))
}

// parseStat reads utime and stime out of a /proc/PID/stat line. The
// command name (field 2) is in parentheses and may hold spaces or
// parentheses itself, so the fields are counted from the last ')'.
func parseStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, fmt.Errorf("bench: /proc stat without a command name: %q", s)
	}
	// After the name: state is field 3, utime 14, stime 15 (1-based over
	// the whole line), so 0-based 11 and 12 here.
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc stat has %d fields after the name, want 13 or more", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || ut < 0 || st < 0 {
		return 0, fmt.Errorf("bench: /proc stat utime %q, stime %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// ReadRSS returns the resident set size of process pid in bytes, from
// VmRSS in /proc/PID/status.
func ReadRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errNoProc, err)
	}
	return parseStatus(string(data))
}

// parseStatus reads VmRSS ("VmRSS:	  12345 kB") out of /proc/PID/status.
func parseStatus(s string) (int64, error) {
	for _, line := range strings.Split(s, "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("bench: VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("bench: VmRSS line %q", line)
		}
		return kb << 10, nil
	}
	return 0, errors.New("bench: no VmRSS in /proc status (a kernel thread, or a zombie)")
}
