package grpcresolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
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
// channel: the BalancerName policy, which weighs the instances by quality.
// A channel dialled with grpc.WithDisableServiceConfig() ignores it and
// takes the one of grpc.WithDefaultServiceConfig instead, such as
// RoundRobinServiceConfig.
const DefaultServiceConfig = `{"loadBalancingConfig": [{"` + BalancerName + `": {}}]}`

// RoundRobinServiceConfig is the service config of grpc-go's round_robin
// policy, for a channel that does not weigh instances by quality:
//
//	grpc.WithDisableServiceConfig(),
//	grpc.WithDefaultServiceConfig(grpcresolver.RoundRobinServiceConfig)
const RoundRobinServiceConfig = `{"loadBalancingConfig": [{"round_robin": {}}]}`

// Builder builds resolvers of muster:/// targets over one client.Resolver.
type Builder struct {
	res     *client.Resolver
	refresh time.Duration // how often a channel looks again at the qualities
}

// qualityRefresh is how often a channel's resolver looks up the service's
// qualities again between the Watch's sets.
const qualityRefresh = 5 * time.Second

// NewBuilder returns a Builder over res, for grpc.WithResolvers.
func NewBuilder(res *client.Resolver) *Builder { return &Builder{res: res, refresh: qualityRefresh} }

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
	refresh := b.refresh
	if refresh <= 0 { // a Builder not from NewBuilder
		refresh = qualityRefresh
	}
	sc := cc.ParseServiceConfig(DefaultServiceConfig)
	if sc.Err != nil {
		return nil, fmt.Errorf("grpcresolver: default service config: %w", sc.Err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &musterResolver{res: b.res, service: service, cc: cc, sc: sc, refresh: refresh, cancel: cancel, now: make(chan struct{}, 1)}
	r.wg.Add(1)
	go r.run(ctx)
	return r, nil
}

type musterResolver struct {
	res     *client.Resolver
	service string
	cc      resolver.ClientConn
	sc      *serviceconfig.ParseResult
	refresh time.Duration
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
		r.follow(ctx, sets)
		// The channel closes when ctx ends or the client.Resolver closes;
		// in the second case, nothing more will come: say so.
		if ctx.Err() == nil {
			r.cc.ReportError(fmt.Errorf("grpcresolver: %s: the muster resolver was closed", r.service))
			return
		}
	}
}

// follow hands the channel each set of sets until it closes and, in
// between, every r.refresh, the set a Lookup finds if an instance's
// quality moved: Watch sends a set when the instances change, not when
// their qualities do, which the channel's policy weighs. The Lookup is
// the Resolver's (its cache, MaxAge, and stale rules), given a second at
// most, so that it never holds up a set from the Watch for long.
func (r *musterResolver) follow(ctx context.Context, sets <-chan client.Result) {
	tick := time.NewTicker(r.refresh)
	defer tick.Stop()
	var last []client.Instance
	for {
		var set client.Result
		select {
		case s, ok := <-sets:
			if !ok {
				return
			}
			set = s
		case <-tick.C:
			lctx, cancel := context.WithTimeout(ctx, time.Second)
			s, err := r.res.Lookup(lctx, r.service)
			cancel()
			if err != nil || sameQualities(last, s.Instances) {
				continue
			}
			set = s
		}
		last = set.Instances
		// An error here means the channel has no balancer for the set
		// yet (an empty set under some policies): the next set is
		// handed over all the same.
		_ = r.cc.UpdateState(r.state(set))
		if len(set.Instances) == 0 {
			// Calls fail with this rather than with the balancer's own
			// words for an empty set.
			r.cc.ReportError(fmt.Errorf("muster: no passing instance of %s", r.service))
		}
	}
}

// sameQualities reports whether two sets (each sorted by ID, as the
// Resolver gives them) hold the same instances with the same qualities.
func sameQualities(a, b []client.Instance) bool {
	return slices.EqualFunc(a, b, func(x, y client.Instance) bool { return x.ID == y.ID && x.Quality == y.Quality })
}

// state is the resolver state of one set of instances.
func (r *musterResolver) state(set client.Result) resolver.State {
	eps := make([]resolver.Endpoint, 0, len(set.Instances))
	for _, inst := range set.Instances {
		eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{address(inst)}})
	}
	return resolver.State{Endpoints: eps, ServiceConfig: r.sc}
}

// address is the address of an instance, with its ID, quality and tags as
// balancer attributes (InstanceIDOf, QualityOf, TagsOf).
func address(inst client.Instance) resolver.Address {
	a := resolver.Address{Addr: net.JoinHostPort(inst.Address, strconv.Itoa(inst.Port))}
	a.BalancerAttributes = attributes.New(idKey{}, inst.ID).WithValue(qualityKey{}, inst.Quality).
		WithValue(tagsKey{}, tagList(strings.Join(inst.Tags, ",")))
	return a
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
