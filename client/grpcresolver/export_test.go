package grpcresolver

import (
	"time"

	"google.golang.org/grpc/resolver"

	"github.com/musterhq/muster/client"
)

// AddressOf is the address the resolver makes of inst, for the tests of
// the policy: the attributes it reads are those the resolver sets.
func AddressOf(inst client.Instance) resolver.Address { return address(inst) }

// NewBuilderRefreshing is NewBuilder with qualities looked up again every
// refresh instead of every 5 s.
func NewBuilderRefreshing(res *client.Resolver, refresh time.Duration) *Builder {
	b := NewBuilder(res)
	b.refresh = refresh
	return b
}
