package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger returns an hclog.Logger that forwards raft's lines to slog.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Info,
		Output: &slogWriter{l: l},
	})
}

// slogWriter turns hclog's text lines into slog records.
type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := string(line)
		level := slog.LevelInfo
		switch {
		case strings.Contains(s, "[ERROR]"):
			level = slog.LevelError
		case strings.Contains(s, "[WARN]"):
			level = slog.LevelWarn
		case strings.Contains(s, "[DEBUG]"), strings.Contains(s, "[TRACE]"):
			level = slog.LevelDebug
		}
		// Strip hclog's own timestamp and level (slog has its own) and
		// its "raft: " name (the component says it).
		if i := strings.Index(s, " ["); i >= 0 {
			s = s[i+1:]
		}
		if i := strings.Index(s, "]"); strings.HasPrefix(s, "[") && i > 0 {
			s = strings.TrimLeft(s[i+1:], " ")
		}
		s = strings.TrimPrefix(s, "raft: ")
		if level == slog.LevelWarn && routine(s) {
			level = slog.LevelInfo
		}
		w.l.Log(context.Background(), level, s, "component", "raft")
	}
	return len(p), nil
}

// routineWarnings are the starts of raft's warnings that every healthy
// cluster logs as it forms or takes a new member, and that ask nothing of
// an operator: they are logged at info, so that a warning means
// something.
var routineWarnings = []string{
	// A server waiting for --bootstrap-expect has no configuration yet.
	"no known peers, aborting election",
	// A new or restarted follower lacks the leader's latest entries; the
	// leader walks back and sends them (or a snapshot).
	"failed to get previous log",
	"appendEntries rejected, sending older logs",
}

func routine(msg string) bool {
	for _, p := range routineWarnings {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
