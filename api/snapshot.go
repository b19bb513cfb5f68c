package api

// RestoreResponse answers PUT /v1/snapshot, a restore of a backup into
// the running registry.
type RestoreResponse struct {
	// Index is the catalog's index once the backup replaced it: above
	// every index served before, and the index of every service, so that
	// blocking queries and caches see the change.
	Index uint64 `json:"index"`
	// SnapshotIndex is the index the backup was taken at.
	SnapshotIndex uint64 `json:"snapshot_index"`
	// Instances, Services (those with instances), Keys and Evictions
	// count what the catalog holds now: the backup's.
	Instances int `json:"instances"`
	Services  int `json:"services"`
	Keys      int `json:"keys"`
	Evictions int `json:"evictions"`
}
