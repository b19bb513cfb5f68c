package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// The attack of issue 8: 64 concurrent unauthenticated lookups of one
// service of 1,000 instances, repeated.
const (
	attackInstances = 1000
	attackConc      = 64
	attackRounds    = 3
)

// TestLookup_BoundedMemory runs the attack against a real server and
// checks that the heap stays bounded whatever the size of the answers:
// once with instances registered through the API with the largest labels
// the registry accepts, and once with 40 KiB of labels per instance (the
// size of the report, 40 MiB answers) put straight into the catalog.
// Lookups stream their answers through a fixed buffer and large ones take
// a slot, so the heap grows by about 10 MiB in both (mostly garbage not
// yet collected); building each answer whole grew it by 442 MiB and
// 6.3 GiB, and allocated 22 MiB and 216 MiB per lookup.
func TestLookup_BoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("sends GiBs over loopback")
	}
	t.Run("registered", func(t *testing.T) {
		h := start(t, func(c *server.Config) {
			// One key, one address, as fast as the callbacks go (a lone
			// caller may hold half the callback slots).
			c.Registry.MaxInstancesPerAddress = 2 * attackInstances
			c.Registry.MaxInstancesPerKey = 2 * attackInstances
			c.Registry.RegisterBurst = attackInstances
			c.Logger = nil // 1,000 registrations: keep the test log short
		})
		k := h.Key(t, "big")
		meta := labels(registry.MaxLabelBytes, 4, 500)
		ctx := context.Background()
		var wg sync.WaitGroup
		ids := make(chan int)
		for range 16 {
			wg.Go(func() {
				for range ids {
					inst := testutil.NewInstance(t, k.Secret, verify.Proof)
					if _, err := h.Anon.Register(ctx, "big", k.Secret, api.RegisterRequest{Address: "127.0.0.1",
						Port: inst.Port(), TTL: "1h", Meta: meta}); err != nil {
						t.Error(err)
					}
				}
			})
		}
		for i := range attackInstances {
			ids <- i
		}
		close(ids)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		checkAttack(t, h.Srv.URL()+"/v1/services/big", 32<<20, 256<<10)
	})
	t.Run("oversized", func(t *testing.T) {
		reg := bigRegistry(t, "big", attackInstances, 40<<10)
		srv := httptest.NewServer(httpapi.NewHandler(httpapi.Deps{Registry: reg}))
		defer srv.Close()
		checkAttack(t, srv.URL+"/v1/services/big", 32<<20, 256<<10)
	})
}

// checkAttack runs the attack against url and fails if the heap in use
// grew by more than maxGrowth at its peak, or if the process (the server
// and its clients) allocated more than maxPerLookup per lookup.
func checkAttack(t *testing.T, url string, maxGrowth, maxPerLookup uint64) {
	t.Helper()
	cl := &http.Client{}
	ok, _, size, err := lookupOnce(cl, url) // warm the encoding cache
	if err != nil || !ok {
		t.Fatalf("first lookup: ok %v, %v", ok, err)
	}
	cl.CloseIdleConnections()
	minBytes := size * 9 / 10 // the three dynamic fields vary in length
	before := heapStats()
	s := sampleHeap(5 * time.Millisecond)
	start := time.Now()
	res := attack(t, url, attackConc, attackRounds, minBytes)
	took := time.Since(start)
	peak := s.stop()
	after := heapStats()
	lookups := uint64(res.ok + res.busy)
	growth := int64(peak) - int64(before.HeapInuse)
	perLookup := (after.TotalAlloc - before.TotalAlloc) / max(lookups, 1)
	t.Logf("answer %s; %d lookups in %s: %d answered (%s), %d busy", mib(size), lookups, took.Round(time.Millisecond),
		res.ok, mib(res.bytes), res.busy)
	t.Logf("heap in use: %s before, %s peak (+%s), %s after; allocated %.1f KiB per lookup",
		mib(int64(before.HeapInuse)), mib(int64(peak)), mib(growth), mib(int64(after.HeapInuse)), float64(perLookup)/1024)
	if res.ok == 0 {
		t.Error("no lookup was answered")
	}
	if growth > int64(maxGrowth) {
		t.Errorf("heap in use grew by %s during the attack; want at most %s", mib(growth), mib(int64(maxGrowth)))
	}
	if perLookup > maxPerLookup {
		t.Errorf("allocated %.1f KiB per lookup; want at most %d KiB", float64(perLookup)/1024, maxPerLookup>>10)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
