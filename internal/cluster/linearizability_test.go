package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/musterhq/muster/internal/catalog"
)

var (
	linRuns     = flag.Int("lin.runs", 20, "randomised runs of TestCluster_Linearizable")
	linDuration = flag.Duration("lin.duration", 1500*time.Millisecond, "how long each run of TestCluster_Linearizable sends operations")
)

// The linearizability check. Clients register instances, deregister them
// and read them with consistent reads (ReadIndex, then the member's own
// catalog), through random members of a three-member cluster, while a
// nemesis kills and restarts the leader or cuts it off from the others.
// Every operation is recorded with its call and return times, and
// porcupine checks that the history has a linearization under the
// specification below: each instance ID is present or absent; register
// makes it present (ErrExists if it was), deregister absent (ErrNotFound
// if it was); a read sees which. A write whose fate the client cannot
// know (a timeout, the leader lost mid-way) may or may not have taken
// effect, at any time after its call. A read that failed is left out: it
// observed nothing.

type linInput struct {
	op string // "register", "deregister", "read"
	id string
}

type linOutput struct {
	ok      bool // register/deregister applied; read: present
	unknown bool // a write whose fate is unknown
}

var linModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			id := op.Input.(linInput).id
			if _, ok := by[id]; !ok {
				keys = append(keys, id)
			}
			by[id] = append(by[id], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{false} },
	Step: func(state, input, output interface{}) []interface{} {
		present, in, out := state.(bool), input.(linInput), output.(linOutput)
		switch in.op {
		case "register":
			switch {
			case out.unknown:
				return []interface{}{present, true}
			case out.ok && !present:
				return []interface{}{true}
			case !out.ok && present: // ErrExists
				return []interface{}{true}
			}
		case "deregister":
			switch {
			case out.unknown:
				return []interface{}{present, false}
			case out.ok && present:
				return []interface{}{false}
			case !out.ok && !present: // ErrNotFound
				return []interface{}{false}
			}
		case "read":
			if out.ok == present {
				return []interface{}{present}
			}
		}
		return nil
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(linInput), output.(linOutput)
		if out.unknown {
			return fmt.Sprintf("%s(%s) -> ?", in.op, in.id)
		}
		return fmt.Sprintf("%s(%s) -> %v", in.op, in.id, out.ok)
	},
}

// history records operations from several goroutines.
type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(client int, in linInput, call int64, out linOutput, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// TestCluster_Linearizable runs -lin.runs randomised histories (20 in
// CI) and checks each with porcupine.
func TestCluster_Linearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs clusters for a while")
	}
	for run := range *linRuns {
		nemesis := []string{"none", "kill", "partition"}[run%3]
		t.Run(fmt.Sprintf("%d-%s", run, nemesis), func(t *testing.T) { linRun(t, nemesis, uint64(run)) })
	}
}

func linRun(t *testing.T, nemesis string, seed uint64) {
	f := newFaults()
	nodes := startClusterWith(t, 3, f)
	var mu sync.Mutex // guards nodes against the nemesis's restarts
	member := func(i int) *tnode {
		mu.Lock()
		defer mu.Unlock()
		return nodes[i]
	}
	h := &history{start: time.Now()}
	ids := []string{"a", "b", "c", "d"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				idx := rng.IntN(len(ids))
				in := linInput{id: ids[idx]}
				tn := member(rng.IntN(3))
				if tn == nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				call := h.now()
				switch r := rng.IntN(10); {
				case r < 4:
					in.op = "read"
					if err := tn.n.ReadIndex(ctx); err != nil {
						cancel()
						continue // observed nothing
					}
					_, present := tn.cat.Instance(in.id)
					h.add(c, in, call, linOutput{ok: present}, h.now())
				case r < 7:
					in.op = "register"
					_, err := tn.n.Apply(ctx, registerCmd(in.id, "api", 9100+idx))
					h.add(c, in, call, writeOutcome(err, catalog.ErrExists), retTime(h, err, catalog.ErrExists))
				default:
					in.op = "deregister"
					_, err := tn.n.Apply(ctx, catalog.Command{Op: catalog.OpDeregister, ID: in.id})
					h.add(c, in, call, writeOutcome(err, catalog.ErrNotFound), retTime(h, err, catalog.ErrNotFound))
				}
				cancel()
			}
		}()
	}

	time.Sleep(*linDuration / 3)
	switch nemesis {
	case "kill":
		lead := leaderOf(t, nodes)
		mu.Lock()
		victim := nodes[lead]
		nodes[lead] = nil
		mu.Unlock()
		victim.n.Close()
		time.Sleep(*linDuration / 3)
		back := openNode(t, victim.cfg)
		mu.Lock()
		nodes[lead] = back
		mu.Unlock()
	case "partition":
		lead := leaderOf(t, nodes)
		isolate(f, nodes, member(lead))
		time.Sleep(*linDuration / 3)
		f.Heal()
	default:
		time.Sleep(*linDuration / 3)
	}
	time.Sleep(*linDuration / 3)
	close(stop)
	wg.Wait()

	ops := h.ops
	res, info := porcupine.CheckOperationsVerbose(linModel.ToModel(), ops, 30*time.Second)
	counts := map[string]int{}
	for _, op := range ops {
		k := op.Input.(linInput).op
		if op.Output.(linOutput).unknown {
			k += "?"
		}
		counts[k]++
	}
	t.Logf("%s: %d operations %v: %s", nemesis, len(ops), counts, res)
	switch res {
	case porcupine.Ok:
	case porcupine.Illegal:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("muster-linearizability-%s-%d.html", nemesis, seed))
		if fh, err := os.Create(path); err == nil {
			porcupine.Visualize(linModel.ToModel(), info, fh)
			fh.Close()
		}
		t.Fatalf("the history is not linearizable (visualisation: %s)", path)
	default:
		t.Fatalf("the check did not finish: %s", res)
	}
	if counts["register"]+counts["deregister"] == 0 || counts["read"] == 0 {
		t.Fatalf("too few operations completed to check anything: %v", counts)
	}
}

// writeOutcome is a write's output: applied, refused by the catalog with
// refusal (so not applied), or unknown.
func writeOutcome(err, refusal error) linOutput {
	switch {
	case err == nil:
		return linOutput{ok: true}
	case errors.Is(err, refusal):
		return linOutput{ok: false}
	default:
		return linOutput{unknown: true}
	}
}

// retTime is a write's return time: when it returned, or, when its fate
// is unknown, the end of time (it may take effect whenever).
func retTime(h *history, err, refusal error) int64 {
	if err != nil && !errors.Is(err, refusal) {
		return math.MaxInt64
	}
	return h.now()
}
