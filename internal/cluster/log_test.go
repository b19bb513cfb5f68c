package cluster

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestHCLogger: raft's lines reach slog once each as structured records:
// at their level (the warnings of a cluster forming, at info), the
// message alone, and each field an attribute of its own (errors as their
// text, hclog's formatted values formatted), with component=raft; slog's
// level decides what is written, debug included (--log-level debug).
func TestHCLogger(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Warn("heartbeat timeout reached, starting election", "last-leader-addr", "n0")
	l.Warn("heartbeat timeout reached, starting election", "last-leader-addr", raft.ServerAddress(""), "last-leader-id", raft.ServerID(""))
	l.Info("entering leader state", "leader", "n1")
	l.Warn("no known peers, aborting election")
	l.Warn("appendEntries rejected, sending older logs", "peer", "n2", "next", 1)
	l.Error("failed to appendEntries to", "error", errors.New("connection refused"), "at", hclog.Fmt("%d-%s", 7, "x"))
	l.Debug("votes", "needed", 2)
	l.Named("snapshot").Info("creating new snapshot", "path", "/d/s")
	l.With("peer", "n3").Info("replicating")
	out := buf.String()
	for _, want := range []string{
		// What every forming cluster logs is not a warning.
		`level=INFO msg="no known peers, aborting election" component=raft`,
		`level=INFO msg="appendEntries rejected, sending older logs" component=raft peer=n2 next=1`,
		`level=WARN msg="heartbeat timeout reached, starting election" component=raft last-leader-addr=n0`,
		// The first election of a voter that never knew a leader neither.
		`level=INFO msg="heartbeat timeout reached, starting election" component=raft last-leader-addr="" last-leader-id=""`,
		`level=INFO msg="entering leader state" component=raft leader=n1`,
		`level=ERROR msg="failed to appendEntries to" component=raft error="connection refused" at=7-x`,
		`level=DEBUG msg=votes component=raft needed=2`,
		`level=INFO msg="creating new snapshot" component=raft logger=raft.snapshot path=/d/s`,
		`level=INFO msg=replicating component=raft peer=n3`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "[WARN]") || strings.Contains(out, "raft: ") {
		t.Errorf("the message repeats hclog's level or name:\n%s", out)
	}
	if !l.IsDebug() || l.IsTrace() {
		t.Errorf("at slog's debug: IsDebug %v, IsTrace %v", l.IsDebug(), l.IsTrace())
	}

	// At info, debug lines are not written and raft is told so.
	buf.Reset()
	l = newHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Debug("votes", "needed", 2)
	l.Info("entering follower state")
	if strings.Contains(buf.String(), "votes") || !strings.Contains(buf.String(), "entering follower state") {
		t.Errorf("at info:\n%s", buf.String())
	}
	if l.IsDebug() || !l.IsInfo() || l.GetLevel() != hclog.Info {
		t.Errorf("at slog's info: IsDebug %v, IsInfo %v, GetLevel %v", l.IsDebug(), l.IsInfo(), l.GetLevel())
	}
}
