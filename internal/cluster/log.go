package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger returns the hclog.Logger raft and its stores log through:
// an implementation of hclog's interface over slog, so that each of
// raft's lines reaches slog as one structured record, with its level,
// its message and its fields as attributes, and slog's level (--log-level
// debug) decides which of raft's lines are written. Its records carry
// component=raft.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return &slogHC{l: l.With("component", "raft"), name: "raft"}
}

// slogHC is hclog.Logger over a slog.Logger. It is immutable: With and
// Named return new values.
type slogHC struct {
	l       *slog.Logger
	name    string
	implied []any
}

var _ hclog.Logger = (*slogHC)(nil)

// levelOf maps hclog's levels to slog's: trace is below debug.
func levelOf(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *slogHC) Log(level hclog.Level, msg string, args ...any) {
	lv := levelOf(level)
	if lv == slog.LevelWarn && (routine(msg) || firstElection(msg, args)) {
		lv = slog.LevelInfo
	}
	ctx := context.Background()
	if !h.l.Enabled(ctx, lv) {
		return
	}
	h.l.Log(ctx, lv, msg, attrs(args)...)
}

// attrs turns hclog's key-value pairs into slog's: keys that are not
// strings are printed, values hclog formats (hclog.Format, Hex, Octal,
// Quote) are formatted as hclog would, an odd value is kept under
// "EXTRA_VALUE_AT_END" as hclog does, and errors become their text.
func attrs(args []any) []any {
	out := make([]any, 0, len(args))
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			out = append(out, slog.Any("EXTRA_VALUE_AT_END", args[i]))
			break
		}
		k, ok := args[i].(string)
		if !ok {
			k = fmt.Sprint(args[i])
		}
		var v any
		switch x := args[i+1].(type) {
		case hclog.Format:
			if len(x) > 0 {
				v = fmt.Sprintf(fmt.Sprint(x[0]), x[1:]...)
			}
		case hclog.Hex:
			v = fmt.Sprintf("0x%x", int(x))
		case hclog.Octal:
			v = fmt.Sprintf("0%o", int(x))
		case hclog.Binary:
			v = fmt.Sprintf("0b%b", int(x))
		case hclog.Quote:
			v = fmt.Sprintf("%q", string(x))
		case error:
			if x != nil {
				v = x.Error()
			}
		default:
			v = x
		}
		out = append(out, slog.Any(k, v))
	}
	return out
}

func (h *slogHC) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *slogHC) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *slogHC) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *slogHC) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *slogHC) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *slogHC) enabled(l hclog.Level) bool {
	return h.l.Enabled(context.Background(), levelOf(l))
}

func (h *slogHC) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *slogHC) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *slogHC) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *slogHC) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *slogHC) IsError() bool { return h.enabled(hclog.Error) }

func (h *slogHC) ImpliedArgs() []any { return h.implied }

func (h *slogHC) With(args ...any) hclog.Logger {
	return &slogHC{l: h.l.With(attrs(args)...), name: h.name, implied: append(h.implied[:len(h.implied):len(h.implied)], args...)}
}

func (h *slogHC) Name() string { return h.name }

// Named and ResetNamed keep the records' component: the name goes into
// the "logger" attribute when it is not raft's own.
func (h *slogHC) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}

func (h *slogHC) ResetNamed(name string) hclog.Logger {
	l := h.l
	if name != "raft" {
		l = l.With("logger", name)
	}
	return &slogHC{l: l, name: name, implied: h.implied}
}

// SetLevel does nothing: slog's handler decides (--log-level).
func (h *slogHC) SetLevel(hclog.Level) {}

func (h *slogHC) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if h.enabled(l) {
			return l
		}
	}
	return hclog.Error
}

func (h *slogHC) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer whose lines are logged at info, or at
// opts.ForceLevel.
func (h *slogHC) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return lineWriter{h: h, level: level}
}

type lineWriter struct {
	h     *slogHC
	level hclog.Level
}

func (w lineWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		w.h.Log(w.level, strings.TrimSpace(string(line)))
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

// firstElection reports whether msg is raft's warning that a voter
// heard from no leader and starts an election, when it never knew one
// (last-leader-addr empty): every new cluster, and every voter started
// before its leader, logs it. A voter that loses a leader it knew still
// warns.
func firstElection(msg string, args []any) bool {
	if !strings.HasPrefix(msg, "heartbeat timeout reached, starting election") {
		return false
	}
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == "last-leader-addr" {
			return fmt.Sprint(args[i+1]) == ""
		}
	}
	return false
}

func routine(msg string) bool {
	for _, p := range routineWarnings {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
