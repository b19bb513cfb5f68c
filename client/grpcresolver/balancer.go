package grpcresolver

import (
	"math"
	"math/rand/v2"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
)

// BalancerName is the name of the load-balancing policy this package
// registers with grpc-go, and the one DefaultServiceConfig chooses: each
// call goes to a READY instance, in proportion to its weight, the
// instance's quality (QualityOf) raised to WeightFloor; instances of equal
// weight take turns, as round_robin does.
const BalancerName = "muster_quality"

// WeightFloor is the least weight an instance gets under BalancerName,
// whatever its quality: an instance of quality 0 beside one of quality 1
// gets 1 call in 21, so that it is still called and its connection still
// tried, and instances that all score below it share calls equally.
const WeightFloor = 0.05

// DefaultQuality is the quality BalancerName assumes of an address that
// carries none (one this package did not make) or carries NaN: that of a
// newly registered instance, whose regularity is not yet known.
const DefaultQuality = 0.5

// grpc-go reads its registry of policies while channels are built, and
// allows writes to it only at init time (balancer.Register): this is the
// one init of the package, and it holds no state.
func init() { balancer.Register(qualityBuilder{}) }

// qualityBuilder builds the BalancerName policy of a channel.
type qualityBuilder struct{}

func (qualityBuilder) Name() string { return BalancerName }

// Build returns the policy of one channel: endpointsharding keeps a
// pick_first child per instance (one connection each, reconnected when it
// drops, as round_robin does), and the balancer replaces its picker with
// a weighted one.
func (qualityBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &qualityBalancer{ClientConn: cc}
	b.child = endpointsharding.NewBalancer(b, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

// qualityBalancer is the policy of one channel. grpc-go serialises the
// calls into it, and endpointsharding serialises its calls of
// UpdateState; it keeps no state besides its child.
type qualityBalancer struct {
	// ClientConn is the channel; UpdateState is intercepted.
	balancer.ClientConn
	child balancer.Balancer
	// empty is set while the resolver's last state held no instance.
	empty bool
}

func (b *qualityBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	b.empty = len(s.ResolverState.Endpoints) == 0 && len(s.ResolverState.Addresses) == 0
	// The children get no config: BalancerName has none, and pick_first
	// its default. The health listener lets pick_first follow client-side
	// health checks when the service config asks for them.
	return b.child.UpdateClientConnState(balancer.ClientConnState{ResolverState: pickfirst.EnableHealthListener(s.ResolverState)})
}

// ResolverError passes the resolver's error on; with no instance at all,
// calls fail with it (the resolver's "no passing instance of ..."), not
// with endpointsharding's words for an empty set.
func (b *qualityBalancer) ResolverError(err error) {
	b.child.ResolverError(err)
	if b.empty {
		// A plain error, not a status: grpc-go fails a call that does not
		// wait for ready with it (Unavailable), and keeps one that does
		// waiting for an instance, as with any channel not yet ready.
		b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.TransientFailure, Picker: base.NewErrPicker(err)})
	}
}

// UpdateSubConnState is never called: pick_first's SubConns report to
// their own listeners.
func (b *qualityBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}

func (b *qualityBalancer) ExitIdle() { b.child.ExitIdle() }

func (b *qualityBalancer) Close() { b.child.Close() }

// UpdateState takes the children's aggregate state from endpointsharding
// (on every change of a child's state, and after every resolver update,
// which is when qualities change) and gives the channel a picker over the
// READY children, weighted by quality. With no child READY, the channel
// gets endpointsharding's own state and picker (CONNECTING, IDLE or
// TRANSIENT_FAILURE, whose picker queues or fails the calls).
func (b *qualityBalancer) UpdateState(s balancer.State) {
	var ready []weighted
	for _, c := range endpointsharding.ChildStatesFromPicker(s.Picker) {
		if c.State.ConnectivityState == connectivity.Ready {
			ready = append(ready, weighted{picker: c.State.Picker, weight: weightOf(c.Endpoint)})
		}
	}
	if len(ready) == 0 {
		b.ClientConn.UpdateState(s)
		return
	}
	b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: newQualityPicker(ready)})
}

// weighted is a READY child and its weight.
type weighted struct {
	picker balancer.Picker
	weight float64
}

// weightOf is the weight of an endpoint: the quality of its first address
// that carries one, else DefaultQuality, within [0, 1], and at least
// WeightFloor.
func weightOf(e resolver.Endpoint) float64 {
	q := DefaultQuality
	for _, a := range e.Addresses {
		if aq, ok := QualityOf(a); ok {
			q = aq
			break
		}
	}
	if math.IsNaN(q) {
		q = DefaultQuality
	}
	return max(min(q, 1), WeightFloor)
}

// maxStride is the scale of a qualityPicker's weights: the heaviest
// child's weight.
const maxStride = math.MaxUint16

// qualityPicker picks among READY children in proportion to their weights,
// by the static stride scheduler of grpc's weighted_round_robin (after
// grpc-core's static_stride_scheduler.cc): a shared sequence number, taken
// with one atomic add, names a child (its remainder by the number of
// children) and a generation (its quotient); a child of weight w (of
// maxStride) is picked in w generations of every maxStride, spread evenly,
// and skipped in the others, so that over any run of picks each child's
// share is within a pick per round of its weight's share. The heaviest
// child is picked in every generation, so a pick takes at most one round
// of the children, and on average the heaviest weight over the mean (at
// most 1/WeightFloor) atomic adds. Children of equal weight are plain
// round robin, one atomic add a pick. A picker does not change after it
// is built but for its sequence number; Pick allocates nothing and is
// safe for concurrent use.
type qualityPicker struct {
	pickers []balancer.Picker
	// strides is each child's weight scaled to maxStride (at least 1);
	// nil when all weigh the same.
	strides []uint16
	next    atomic.Uint64
}

func newQualityPicker(children []weighted) *qualityPicker {
	p := &qualityPicker{pickers: make([]balancer.Picker, len(children))}
	heaviest := 0.0
	for i, c := range children {
		p.pickers[i] = c.picker
		heaviest = max(heaviest, c.weight)
	}
	strides := make([]uint16, len(children))
	equal := true
	for i, c := range children {
		strides[i] = uint16(max(1, math.Round(maxStride*c.weight/heaviest)))
		equal = equal && strides[i] == strides[0]
	}
	if !equal {
		p.strides = strides
	}
	// A random start, so that the channels of many clients, and the
	// pickers that follow one another in a channel, do not all begin with
	// the same child; below 2^32, so that the sequence never wraps.
	p.next.Store(uint64(rand.Uint32()))
	return p
}

// Pick implements balancer.Picker.
func (p *qualityPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	return p.pickers[p.index()].Pick(info)
}

// index is the child of the next pick.
func (p *qualityPicker) index() int {
	n := uint64(len(p.pickers))
	if p.strides == nil {
		return int(p.next.Add(1) % n)
	}
	// offset staggers the children's generations of skipping, so that
	// children of equal weight are not skipped in the same generation.
	const offset = maxStride / 2
	for {
		seq := p.next.Add(1)
		i, gen := seq%n, seq/n
		w := uint64(p.strides[i])
		if (w*gen+i*offset)%maxStride >= maxStride-w {
			return int(i)
		}
	}
}
