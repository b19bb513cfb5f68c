package grpcresolver

import (
	"fmt"
	"math"
	"sync"
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/resolver"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
)

// TestWeightOf: an endpoint weighs its quality, within [WeightFloor, 1];
// DefaultQuality when its address carries none, or NaN.
func TestWeightOf(t *testing.T) {
	q := func(v float64) resolver.Endpoint {
		return resolver.Endpoint{Addresses: []resolver.Address{address(client.Instance{Instance: api.Instance{
			ID: "i", Address: "127.0.0.1", Port: 1, Quality: v}})}}
	}
	for _, tc := range []struct {
		name string
		e    resolver.Endpoint
		want float64
	}{
		{"quality 1", q(1), 1},
		{"quality 0.5", q(0.5), 0.5},
		{"quality 0.2", q(0.2), 0.2},
		{"at the floor", q(WeightFloor), WeightFloor},
		{"below the floor", q(0.01), WeightFloor},
		{"quality 0", q(0), WeightFloor},
		{"negative", q(-1), WeightFloor},
		{"above 1", q(7), 1},
		{"NaN", q(math.NaN()), DefaultQuality},
		{"no quality", resolver.Endpoint{Addresses: []resolver.Address{{Addr: "127.0.0.1:1"}}}, DefaultQuality},
		{"no address", resolver.Endpoint{}, DefaultQuality},
		{"the first address with a quality", resolver.Endpoint{Addresses: []resolver.Address{{Addr: "127.0.0.1:2"}, q(0.3).Addresses[0], q(0.9).Addresses[0]}}, 0.3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := weightOf(tc.e); got != tc.want {
				t.Errorf("weightOf = %v, want %v", got, tc.want)
			}
		})
	}
}

// counts is how many of picks p gives each child, from the sequence
// number start.
func counts(p *qualityPicker, start uint64, picks int) []int {
	p.next.Store(start)
	c := make([]int, len(p.pickers))
	for range picks {
		c[p.index()]++
	}
	return c
}

func pickerOf(weights ...float64) *qualityPicker {
	ws := make([]weighted, len(weights))
	for i, w := range weights {
		ws[i] = weighted{picker: nopPicker{}, weight: w}
	}
	return newQualityPicker(ws)
}

// TestQualityPicker_Shares: over any run of picks, from any point of the
// sequence, each child's count is within 2 of its weight's share of the
// run; equal weights are round robin, every child within 1.
func TestQualityPicker_Shares(t *testing.T) {
	for _, weights := range [][]float64{
		{1, 0.5},
		{1, 0.5, WeightFloor},
		{1, WeightFloor, WeightFloor, WeightFloor, WeightFloor, WeightFloor, WeightFloor, WeightFloor, WeightFloor, WeightFloor},
		{0.9, 0.8, 0.7, 0.3, 0.25},
		{0.563, 0.5, 0.625},
		{0.8, 0.8, 0.8},
		{1},
	} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			p := pickerOf(weights...)
			total := 0.0
			for _, w := range weights {
				total += w
			}
			for _, start := range []uint64{0, 1, 12345, 1<<32 - 7} {
				for _, picks := range []int{100, 2000, 100000} {
					c := counts(p, start, picks)
					for i, w := range weights {
						want := float64(picks) * w / total
						if math.Abs(float64(c[i])-want) > 2 {
							t.Errorf("start %d, %d picks: child %d (weight %v) got %d, want %.1f; all %v", start, picks, i, w, c[i], want, c)
						}
					}
				}
			}
		})
	}
}

// TestQualityPicker_Concurrent: picks from many goroutines at once (run
// with -race) still split by weight.
func TestQualityPicker_Concurrent(t *testing.T) {
	p := pickerOf(1, 0.5, 0.25)
	var mu sync.Mutex
	total := make([]int, 3)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c := make([]int, 3)
			for range 7000 {
				c[p.index()]++
			}
			mu.Lock()
			for i := range c {
				total[i] += c[i]
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	// 56,000 picks at 4:2:1; every sequence number is taken once, so the
	// shares hold as they do for one goroutine.
	for i, want := range []float64{32000, 16000, 8000} {
		if math.Abs(float64(total[i])-want) > 2 {
			t.Errorf("child %d got %d picks, want %.0f: %v", i, total[i], want, total)
		}
	}
}

type nopPicker struct{}

func (nopPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, nil
}

// BenchmarkPick measures a pick among 10 READY instances: of equal
// quality (round robin), of qualities spread from 0.1 to 1, and with one
// instance of quality 1 and nine at the floor (the most skips a pick can
// take on average). Picks run in parallel, as a channel's calls do.
func BenchmarkPick(b *testing.B) {
	spread := make([]float64, 10)
	for i := range spread {
		spread[i] = 0.1 * float64(i+1)
	}
	for _, bc := range []struct {
		name    string
		weights []float64
	}{
		{"equal", []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{"spread", spread},
		{"floor", []float64{1, WeightFloor, WeightFloor, WeightFloor, WeightFloor, WeightFloor, WeightFloor, WeightFloor, WeightFloor, WeightFloor}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := pickerOf(bc.weights...)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := p.Pick(balancer.PickInfo{FullMethodName: "/grpc.health.v1.Health/Check"}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
