package client

import (
	"time"

	"github.com/musterhq/muster/api"
)

// Instance is one instance in a lookup result.
type Instance struct {
	api.Instance
	// LastSeen is when the registry last heard from the instance, as of
	// the answer; zero when the registry has not heard from it since it
	// became leader.
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// Result is a lookup answer.
type Result struct {
	Service string `json:"service"`
	// Index is the registry's Raft index for the service.
	Index     uint64     `json:"index"`
	Instances []Instance `json:"instances"`
	// Evicted are the service's endpoints an operator evicted, which may
	// not register before their Until.
	Evicted []api.Eviction `json:"evicted,omitempty"`
	// FetchedAt is when the registry gave this answer.
	FetchedAt time.Time `json:"fetched_at"`
	// Stale is set when the registry could not be reached to revalidate
	// this answer and a cached one is served instead; StaleErr says why.
	Stale    bool  `json:"stale,omitempty"`
	StaleErr error `json:"-"`
	// Protection is set while the registry's mass-expiry protection holds
	// expiries: a large share of the fleet fell silent at once, and
	// instances whose TTL ran out since are still listed as passing (see
	// docs/api.md). A client may prefer instances with a recent LastSeen
	// meanwhile.
	Protection bool `json:"protection,omitempty"`
}

// Age is how old the answer is.
func (r Result) Age() time.Duration { return time.Since(r.FetchedAt) }

func newResult(lr api.LookupResponse, fetched time.Time) Result {
	res := Result{Service: lr.Service, Index: lr.Index, FetchedAt: fetched, Instances: make([]Instance, len(lr.Instances)), Evicted: lr.Evicted,
		Protection: lr.Protection}
	for i, in := range lr.Instances {
		res.Instances[i] = Instance{Instance: in}
		if in.LastSeenMS >= 0 {
			res.Instances[i].LastSeen = fetched.Add(-time.Duration(in.LastSeenMS) * time.Millisecond)
		}
	}
	return res
}
