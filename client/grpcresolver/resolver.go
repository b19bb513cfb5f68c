// Package grpcresolver resolves gRPC targets muster:///service_name to the
// passing instances of the service, from a client.Resolver: the current
// set when the channel is built, then every change within milliseconds
// while the Resolver's event stream is up (by revalidation while it is
// down). Each address carries the instance's ID, quality and tags as
// attributes (QualityOf, TagsOf, InstanceIDOf).
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
// The channel's default service config balances round robin over the
// instances; a dial option or the target's own service config may choose
// another policy. It imports only the SDK and grpc-go.
package grpcresolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/musterhq/muster/client"
)

// Scheme is the target scheme this package resolves: muster:///service.
const Scheme = "muster"

// DefaultServiceConfig is the service config the resolver gives every
// channel unless the dial names one: round robin over the instances.
const DefaultServiceConfig = `{"loadBalancingConfig": [{"round_robin": {}}]}`

// Builder builds resolvers of muster:/// targets over one client.Resolver.
type Builder struct {
	res *client.Resolver
}

// NewBuilder returns a Builder over res, for grpc.WithResolvers.
func NewBuilder(res *client.Resolver) *Builder { return &Builder{res: res} }

// Register makes muster:/// targets resolve through res for every gRPC
// channel of the process (resolver.Register). Call it once, at start,
// before dialling: grpc-go's registry of schemes is not safe to change
// while channels are being built.
func Register(res *client.Resolver) { resolver.Register(NewBuilder(res)) }

// Scheme implements resolver.Builder.
func (b *Builder) Scheme() string { return Scheme }

// Build implements resolver.Builder: target's endpoint is the service
// name (muster:///fetch_url). Its first set arrives through cc as soon
// as the registry answers; until then, and while it cannot be reached
// with nothing cached, cc is told the error and the resolver tries again
// with a backoff up to 5 s.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	if b.res == nil {
		return nil, errors.New("grpcresolver: the Builder has no client.Resolver (NewBuilder(nil), or Register(nil))")
	}
	service := target.Endpoint()
	if target.URL.Host != "" {
		return nil, fmt.Errorf("grpcresolver: target %q names an authority; use muster:///%s", target.URL.String(), service)
	}
	if service == "" {
		return nil, fmt.Errorf("grpcresolver: target %q names no service: use muster:///service_name", target.URL.String())
	}
	sc := cc.ParseServiceConfig(DefaultServiceConfig)
	if sc.Err != nil {
		return nil, fmt.Errorf("grpcresolver: default service config: %w", sc.Err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &musterResolver{res: b.res, service: service, cc: cc, sc: sc, cancel: cancel, now: make(chan struct{}, 1)}
	r.wg.Add(1)
	go r.run(ctx)
	return r, nil
}

type musterResolver struct {
	res     *client.Resolver
	service string
	cc      resolver.ClientConn
	sc      *serviceconfig.ParseResult
	cancel  context.CancelFunc
	now     chan struct{} // ResolveNow: retry a failed watch at once
	wg      sync.WaitGroup
}

// ResolveNow implements resolver.Resolver: a channel whose connections
// failed asks again; a watch that is up already carries every change, so
// it only hurries a retry after a failure.
func (r *musterResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

// Close implements resolver.Resolver: it ends the watch and waits for it.
func (r *musterResolver) Close() {
	r.cancel()
	r.wg.Wait()
}

// run watches the service until ctx ends, handing each set to the
// channel, and watches again after a failure.
func (r *musterResolver) run(ctx context.Context) {
	defer r.wg.Done()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		sets, err := r.res.Watch(ctx, r.service)
		if err != nil {
			r.cc.ReportError(fmt.Errorf("grpcresolver: %s: %w", r.service, err))
			select {
			case <-ctx.Done():
				return
			case <-r.now:
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		for set := range sets {
			// An error here means the channel has no balancer for the
			// set yet (an empty set under some policies): the next set
			// is handed over all the same.
			_ = r.cc.UpdateState(r.state(set))
		}
		// The channel closes when ctx ends or the client.Resolver closes;
		// in the second case, nothing more will come: say so.
		if ctx.Err() == nil {
			r.cc.ReportError(fmt.Errorf("grpcresolver: %s: the muster resolver was closed", r.service))
			return
		}
	}
}

// state is the resolver state of one set of instances.
func (r *musterResolver) state(set client.Result) resolver.State {
	eps := make([]resolver.Endpoint, 0, len(set.Instances))
	for _, inst := range set.Instances {
		a := resolver.Address{Addr: net.JoinHostPort(inst.Address, strconv.Itoa(inst.Port))}
		a.BalancerAttributes = attributes.New(idKey{}, inst.ID).WithValue(qualityKey{}, inst.Quality).
			WithValue(tagsKey{}, tagList(strings.Join(inst.Tags, ",")))
		eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{a}})
	}
	return resolver.State{Endpoints: eps, ServiceConfig: r.sc}
}

type (
	idKey      struct{}
	qualityKey struct{}
	tagsKey    struct{}
	// tagList is comparable (attributes compare their values), unlike a
	// slice: the tags joined with commas (no tag holds one), in order.
	tagList string
)

func (l tagList) split() []string {
	if l == "" {
		return nil
	}
	return strings.Split(string(l), ",")
}

// QualityOf is the quality (0 to 1) of the instance behind a, as of the
// set it came in; false for an address this package did not make.
func QualityOf(a resolver.Address) (float64, bool) {
	q, ok := a.BalancerAttributes.Value(qualityKey{}).(float64)
	return q, ok
}

// TagsOf is the tags of the instance behind a.
func TagsOf(a resolver.Address) []string {
	l, _ := a.BalancerAttributes.Value(tagsKey{}).(tagList)
	return l.split()
}

// InstanceIDOf is the muster instance ID behind a.
func InstanceIDOf(a resolver.Address) (string, bool) {
	id, ok := a.BalancerAttributes.Value(idKey{}).(string)
	return id, ok
}
