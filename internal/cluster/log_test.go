package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestHCLogger: raft's lines reach slog once each, at their level (the
// warnings of a cluster forming, at info), with
// neither hclog's timestamp nor its level nor its name repeated in the
// message.
func TestHCLogger(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "n0")
	l.Info("entering leader state", "leader", "n1")
	l.Warn("no known peers, aborting election")
	l.Warn("appendEntries rejected, sending older logs", "peer", "n2", "next", 1)
	out := buf.String()
	for _, want := range []string{
		// What every forming cluster logs is not a warning.
		`level=INFO msg="no known peers, aborting election" component=raft`,
		`level=INFO msg="appendEntries rejected, sending older logs: peer=n2 next=1" component=raft`,
		`level=WARN msg="heartbeat timeout reached, starting election: last-leader-addr=n0" component=raft`,
		`level=INFO msg="entering leader state: leader=n1" component=raft`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "[WARN]") || strings.Contains(out, "raft: ") {
		t.Errorf("the message repeats hclog's level or name:\n%s", out)
	}
}
