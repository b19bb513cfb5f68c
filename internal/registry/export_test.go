package registry

import "time"

// InjectLag records, for tests, that the registry's lag monitor saw a
// tick at at come late by late: what an overloaded host does.
func InjectLag(r *Registry, at time.Time, late time.Duration) { r.lag.record(at, late) }
