// Package grpcresolver resolves gRPC targets muster:///service_name to the
// passing instances of the service, from a client.Resolver: the current
// set when the channel is built, then every change within milliseconds
// while the Resolver's event stream is up (by revalidation while it is
// down). Each address carries the instance's ID, quality and tags as
// attributes (QualityOf, TagsOf, InstanceIDOf); the qualities are looked
// up again every 5 s, as the Resolver's Lookup gives them, and handed to
// the channel when one moved.
//
// Use it for one channel:
//
//	conn, err := grpc.NewClient("muster:///fetch_url",
//		grpc.WithResolvers(grpcresolver.NewBuilder(resolver)),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// or for every channel of the process, once at start:
//
//	grpcresolver.Register(resolver)
//
// # Balancing by quality
//
// The package registers a load-balancing policy with grpc-go,
// BalancerName ("muster_quality"), and the resolver's service config
// (DefaultServiceConfig) chooses it for every muster:/// channel. It keeps
// a connection to each instance, as round_robin does, and sends each call
// to a READY instance in proportion to its weight: its quality, from 0 to
// 1, raised to WeightFloor (0.05), so that an instance of quality 1 gets
// twice the calls of a newly registered one (0.5) and twenty times those
// of one whose TTL is running out (0), which still gets some. An address
// without a quality (not made by this package) weighs DefaultQuality
// (0.5). Instances of equal weight take turns, as under round_robin. The
// picks are a deterministic schedule, not a draw: over any run of calls,
// each instance's count is within a few of its share. A pick takes one
// atomic add when the weights are equal, a few when they are not, and
// allocates nothing.
//
// To balance round robin instead, have the channel ignore the resolver's
// service config and give it grpc-go's:
//
//	conn, err := grpc.NewClient("muster:///fetch_url",
//		grpc.WithResolvers(grpcresolver.NewBuilder(resolver)),
//		grpc.WithDisableServiceConfig(),
//		grpc.WithDefaultServiceConfig(grpcresolver.RoundRobinServiceConfig),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// The package imports only the SDK and grpc-go.
package grpcresolver
