package api

// The event stream, GET /v1/watch: Server-Sent Events (text/event-stream).
// Each SSE event's name is its Type and its data one line of JSON: a
// WatchSnapshot for "snapshot", an Event for the others. The SSE id of
// every event is its index; a reader that reconnects with Last-Event-ID
// (or ?after=) set to the last id it received gets every later change
// exactly once, or a snapshot marked Resync when the registry's history
// of recent changes no longer reaches back that far.

// Event types, the SSE event names of GET /v1/watch.
const (
	// EventSnapshot is the first event of a stream, and a resync: data is
	// a WatchSnapshot.
	EventSnapshot = "snapshot"
	// EventRegistered: an instance was registered (Event.Replaced names
	// the instance it replaced at the same address and port, if any).
	EventRegistered = "registered"
	// EventDeregistered: an instance left (Event.Reason says why).
	EventDeregistered = "deregistered"
	// EventStatus: an instance's status changed: passing, critical, or
	// draining.
	EventStatus = "status"
	// EventProtection: mass-expiry protection started or ended (data is a
	// Protection). It has no id: it is not a change to the catalog.
	EventProtection = "protection"
)

// Why an instance was deregistered (Event.Reason).
const (
	ReasonDeregistered = "deregistered" // by itself or an operator
	ReasonExpired      = "expired"      // critical past its deregister_after
	ReasonEvicted      = "evicted"      // by an operator's eviction
)

// QueryAfter is the query parameter of GET /v1/watch that resumes after an
// index, like the Last-Event-ID header (which wins when both are given).
const QueryAfter = "after"

// WatchSnapshot is the data of a snapshot event: every instance of the
// watched services as of Index, whatever its status.
type WatchSnapshot struct {
	Type  string `json:"type"` // "snapshot"
	Index uint64 `json:"index"`
	// Resync is set when this snapshot replaces changes the stream could
	// not deliver: the reader must replace what it holds with it.
	Resync    bool       `json:"resync,omitempty"`
	Instances []Instance `json:"instances"`
	// Protection is set while mass-expiry protection holds expiries.
	Protection bool `json:"protection,omitempty"`
}

// Event is the data of a registered, deregistered or status event.
type Event struct {
	Type    string `json:"type"`
	Index   uint64 `json:"index"`
	Service string `json:"service"`
	// Instance is the instance after the change (for deregistered, as it
	// was when it left). Its status is the status the change committed.
	Instance Instance `json:"instance"`
	// Replaced is, for registered, the ID of the instance this one
	// replaced at the same address and port: it is gone, and no separate
	// deregistered event says so.
	Replaced string `json:"replaced,omitempty"`
	// Reason is, for deregistered: deregistered, expired or evicted.
	Reason string `json:"reason,omitempty"`
	// Protection is set while mass-expiry protection holds expiries.
	Protection bool `json:"protection,omitempty"`
}

// Protection is the data of a protection event.
type Protection struct {
	Protection bool `json:"protection"`
}
