// Package health owns instance liveness: last-seen times and recent
// heartbeat intervals, which live in memory only, and the leader's sweep
// that turns missed TTLs into Raft-applied status changes.
//
// Heartbeats are not Raft writes. A heartbeat updates the Tracker; only
// transitions (passing → critical when a TTL runs out, critical → passing on
// a heartbeat, removal after deregister_after) become catalog commands.
//
// After a node becomes leader it has heard no heartbeats, so every
// instance's clock starts at leaderSince + Grace (the floor). No instance
// expires until a full TTL plus the grace has passed since the node became
// leader, so a restart never empties the catalog.
//
// Mass-expiry protection covers the opposite case, where the registry is
// fine but a large share of the fleet stops reaching it at once (a network
// split). Each sweep counts, over the whole catalog, the live instances
// and those overdue (silent for OverdueFactor times their usual heartbeat
// interval, long before their TTL runs out); when more than Threshold of
// at least MinInstances are overdue, a hold begins, and every expiry that
// comes due during it is held, for the sweep and for every reader alike,
// until heartbeats come back or MaxHold has passed. Only instances that
// stay silent keep a hold on, a hold resumes once, and after one is over
// no new one begins for Cooldown, so that no fleet can keep expiry held
// more than MaxHold out of every MaxHold + Cooldown (ProtectionConfig has
// the rule and its cost). The hold is one immutable value behind an atomic
// pointer, written by the sweep and read with one load by every judgement.
//
// Liveness is the one owner of "is this instance alive": the Tracker, the
// leadership it depends on (*cluster.Node), and the grace. The sweep, the
// registry's lookups and every front end ask it, through the one status
// rule (Liveness.Status and View, Committed), so they cannot disagree.
//
// Clocks: heartbeats are kept on the monotonic clock. The only wall time
// the rule reads is an instance's RegisteredAt from the log, used until
// its first heartbeat; one that a clock stepped back across a restart put
// in the future is read as the moment the term's first sweep listed the
// instance (Liveness.Base), so it cannot postpone expiry past TTL + grace
// after the node became leader.
//
//	live := health.NewLiveness(health.DefaultLivenessConfig(), health.NewTracker(), node, nil)
//	floor, ok := live.Floor() // not ok: not a ready leader, judge nothing
//	status, fresh := live.View(inst, floor, time.Now())
//	held := live.Protecting(floor, time.Now()) // mass-expiry protection on
//
//	t := health.NewTracker()
//	t.Beat(id, time.Now())
//	f := t.Freshness(id, ttl, time.Now()) // f.Age, f.Quality
package health
