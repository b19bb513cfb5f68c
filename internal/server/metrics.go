package server

import (
	"time"

	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/telemetry"
)

// metricsSource is what the metrics' gauges read at each scrape: the
// registry's catalog and push state, and the Raft node's. The server's
// fields are set by Start before its listener serves a scrape.
type metricsSource struct{ s *Server }

func (m metricsSource) Catalog() (telemetry.CatalogStats, bool) {
	sums, _, err := m.s.reg.Services()
	if err != nil {
		return telemetry.CatalogStats{}, false
	}
	c := telemetry.CatalogStats{Services: len(sums), Protection: m.s.reg.Protection()}
	for _, x := range sums {
		c.Passing += x.Passing
		c.Critical += x.Critical
		c.Draining += x.Draining
	}
	return c, true
}

func (m metricsSource) Raft() telemetry.RaftStats {
	st := m.s.node.Stats()
	return telemetry.RaftStats{Leader: st.Leader, Term: st.Term, CommitIndex: st.CommitIndex, AppliedIndex: st.AppliedIndex,
		SnapshotIndex: st.SnapshotIndex, LastContact: st.LastContact}
}

func (m metricsSource) Push() telemetry.PushStats {
	ss := m.s.reg.StreamStats()
	as := m.s.reg.AuditLog().Stats()
	return telemetry.PushStats{Streams: ss.Open, BlockingQueries: m.s.reg.Waiters(), Resyncs: ss.Resyncs, Dropped: ss.Dropped, Sent: ss.Sent,
		AuditDropped: as.Dropped, AuditWriteErrors: as.WriteErrors, AuditDamaged: as.Damaged}
}

func (m metricsSource) HTTP() telemetry.HTTPStats {
	if m.s.lean == nil {
		return telemetry.HTTPStats{}
	}
	st := m.s.lean.Stats()
	return telemetry.HTTPStats{LeanAnswered: st.Answered, LeanHandedOff: st.HandedOff}
}

// observer tells the metrics what the HTTP API answered.
func observer(m *telemetry.Metrics) httpapi.Observer {
	return httpapi.Observer{
		Route: func(route string) func(int, time.Duration) {
			return m.Route(route).Done
		},
		Registration: m.Registration,
		Beats:        m.Beats,
	}
}
