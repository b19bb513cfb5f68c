package api

// Member is one server of the cluster (GET /v1/cluster/members).
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	// Suffrage is "voter" or "nonvoter".
	Suffrage string `json:"suffrage"`
	// State is "leader", "follower", "candidate", or "unreachable" when
	// the server did not answer the one asked.
	State        string `json:"state"`
	Term         uint64 `json:"term,omitempty"`
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	CommitIndex  uint64 `json:"commit_index,omitempty"`
	// LastContactMS is how long ago the server last heard from its
	// leader, in milliseconds: 0 on the leader, -1 when never or unknown.
	LastContactMS int64 `json:"last_contact_ms"`
	// Error says why an unreachable server did not answer.
	Error string `json:"error,omitempty"`
}

// MembersResponse answers GET /v1/cluster/members.
type MembersResponse struct {
	// Node is the ID of the server that answered.
	Node    string   `json:"node"`
	Members []Member `json:"members"`
}

// ClusterSelf answers GET /v1/cluster/self: how to reach this server's
// Raft port, which is what --join needs from a member's HTTP address.
type ClusterSelf struct {
	Node     string `json:"node"`
	RaftAddr string `json:"raft_addr"`
	// Clustered is false on a server without a cluster secret: it has no
	// Raft listener and cannot be joined.
	Clustered bool `json:"clustered"`
}
