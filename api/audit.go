package api

// AuditRecord is one record of a node's audit trail (GET /v1/audit): a
// decision the registry made about who may do what. It never holds a
// secret, a token or the hash of one.
type AuditRecord struct {
	// Time is when the decision was made (RFC 3339, UTC): by the clock of
	// the node that handled it; absent for decisions logged before
	// records were kept.
	Time string `json:"time,omitempty"`
	// Action is what was asked: register, deregister, drain, evict,
	// expire, remove, status, key_create, key_revoke, key_list,
	// snapshot_save, snapshot_restore, member_remove, heartbeat (only a
	// heartbeat refused for its token), audit_read (only a read refused
	// for its token), snapshot_installed (the node's own: a snapshot
	// replaced its catalog).
	Action string `json:"action"`
	// Outcome is ok, refused, or failed (the registry could not carry it
	// out: not ready, no leader, a full disk, busy).
	Outcome string `json:"outcome"`
	// Reason says why: the cause ("api", "ttl expired", "heartbeat", an
	// eviction's reason) or what refused it.
	Reason     string `json:"reason,omitempty"`
	Service    string `json:"service,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
	// KeyID is the enrolment key's ID: the one a registration used (once
	// its secret named a key), or the instance's.
	KeyID string `json:"key_id,omitempty"`
	// Status is the status a status change set.
	Status string `json:"status,omitempty"`
	// Caller is the address the request came from (host:port); absent
	// for the registry's own decisions (an expiry).
	Caller string `json:"caller,omitempty"`
	// Node is the ID of the server that handled the request.
	Node string `json:"node,omitempty"`
	// By names the credential that asked, when it was neither the
	// instance's own session token nor a registration's enrolment key:
	// "admin" for the admin token, else a token's ID (an operator's, an
	// admin-role token's).
	By string `json:"by,omitempty"`
	// Index is the Raft index of a decision that went through the
	// replicated log: every server holds the same record of it.
	Index uint64 `json:"index,omitempty"`
}

// AuditResponse is the answer to GET /v1/audit.
type AuditResponse struct {
	// Node is the server that answered: the records are its trail.
	Node    string        `json:"node"`
	Records []AuditRecord `json:"records"`
	// Next is a cursor: ?after=Next reads what follows the records
	// answered (with &wait=, waiting for it). It is the answering
	// server's own.
	Next string `json:"next"`
	// More is true when the read stopped at its limit or its budget of
	// bytes before the end of the trail: ask again after Next.
	More bool `json:"more"`
	// Partial is true when a read of the newest records (without since
	// or after) spent its budget of bytes before the start of the trail
	// without finding limit records: older records may match. A read
	// with since finds them.
	Partial bool `json:"partial,omitempty"`
	// Dropped counts the records the server lost since it started
	// because its audit queues were full.
	Dropped uint64 `json:"dropped"`
}
