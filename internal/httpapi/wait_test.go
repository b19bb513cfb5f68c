package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// getLookup GETs path and decodes a lookup answer; it returns the status,
// the answer, the X-Muster-Index header and how long it took.
func getLookup(t *testing.T, url string) (int, api.LookupResponse, uint64, time.Duration) {
	t.Helper()
	began := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lr api.LookupResponse
	json.NewDecoder(resp.Body).Decode(&lr)
	idx, _ := strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64)
	return resp.StatusCode, lr, idx, time.Since(began)
}

// TestAPI_BlockingLookup: a lookup with the index the caller holds waits
// until the service changes (and only that service), or until wait
// passes; bad index and wait are refused; the number of waiters is
// bounded.
func TestAPI_BlockingLookup(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.MaxWaiters = 2 })
	ctx := context.Background()
	k := h.Key(t, "web", "other")
	base := h.Srv.URL() + "/v1/services/web"
	_, _, idx0, _ := getLookup(t, base)

	// It returns as soon as web changes.
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	go func() {
		time.Sleep(300 * time.Millisecond)
		h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()})
	}()
	status, lr, idx1, took := getLookup(t, base+"?index="+strconv.FormatUint(idx0, 10)+"&wait=20s")
	if status != 200 || idx1 <= idx0 || len(lr.Instances) != 1 || took > 10*time.Second {
		t.Fatalf("blocking lookup: %d, index %d → %d, %d instances, after %s", status, idx0, idx1, len(lr.Instances), took)
	}

	// A change to another service does not wake it; the wait ends it,
	// with the same index.
	other := testutil.NewInstance(t, k.Secret, verify.Proof)
	go func() {
		time.Sleep(100 * time.Millisecond)
		h.Anon.Register(ctx, "other", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: other.Port()})
	}()
	status, _, idx2, took := getLookup(t, base+"?index="+strconv.FormatUint(idx1, 10)+"&wait=800ms")
	if status != 200 || idx2 != idx1 || took < 800*time.Millisecond {
		t.Fatalf("lookup waiting on web while other changed: %d, index %d → %d, after %s", status, idx1, idx2, took)
	}
	// An index below the service's answers at once.
	if status, _, _, took := getLookup(t, base+"?index=0&wait=10s"); status != 200 || took > 2*time.Second {
		t.Fatalf("lookup with an old index: %d after %s", status, took)
	}

	// The service list waits for any service.
	go func() {
		time.Sleep(200 * time.Millisecond)
		h.Anon.Deregister(ctx, lr.Instances[0].ID, h.AdminToken(t))
	}()
	began := time.Now()
	resp, err := http.Get(h.Srv.URL() + "/v1/services?index=" + strconv.FormatUint(idx2, 10) + "&wait=20s")
	if err != nil {
		t.Fatal(err)
	}
	var sr api.ServicesResponse
	json.NewDecoder(resp.Body).Decode(&sr)
	resp.Body.Close()
	if resp.StatusCode != 200 || sr.Index <= idx2 || time.Since(began) > 10*time.Second {
		t.Fatalf("blocking service list: %d, index %d → %d", resp.StatusCode, idx2, sr.Index)
	}

	for _, q := range []string{"?wait=1s", "?index=x", "?index=1&wait=0s", "?index=1&wait=11m", "?index=1&wait=soon"} {
		if status, _, _, _ := getLookup(t, base+q); status != 400 {
			t.Errorf("lookup%s: %d, want 400", q, status)
		}
	}

	// At most MaxWaiters are held open.
	cur := strconv.FormatUint(sr.Index+1000, 10)
	done := make(chan int, 2)
	for range 2 {
		go func() { s, _, _, _ := getLookup(t, base+"?index="+cur+"&wait=2s"); done <- s }()
	}
	time.Sleep(300 * time.Millisecond)
	resp, err = http.Get(base + "?index=" + cur + "&wait=2s")
	if err != nil {
		t.Fatal(err)
	}
	var eb api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != 503 || eb.Error.Code != api.CodeBusy || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a third waiter: %d %+v", resp.StatusCode, eb)
	}
	for range 2 {
		if s := <-done; s != 200 {
			t.Fatalf("a held waiter ended with %d", s)
		}
	}
}

// TestAPI_BlockingLookupEndsAtShutdown: closing the server answers a
// blocking query at once (with the index it had) instead of holding
// shutdown for its wait.
func TestAPI_BlockingLookupEndsAtShutdown(t *testing.T) {
	h := start(t, nil)
	_, _, idx, _ := getLookup(t, h.Srv.URL()+"/v1/services/web")
	type answer struct {
		status int
		took   time.Duration
	}
	done := make(chan answer, 1)
	go func() {
		status, _, _, took := getLookup(t, h.Srv.URL()+"/v1/services/web?index="+strconv.FormatUint(idx, 10)+"&wait=5m")
		done <- answer{status, took}
	}()
	testserver.Eventually(t, 5*time.Second, "the query to wait", func() bool { return h.Srv.Registry().Waiters() == 1 })
	began := time.Now()
	h.Srv.Close()
	select {
	case a := <-done:
		if a.status != 200 {
			t.Fatalf("the blocking query was answered %d at shutdown", a.status)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the blocking query outlived Close")
	}
	if took := time.Since(began); took > 4*time.Second {
		t.Fatalf("Close took %s with a blocking query open", took)
	}
}

// TestAPI_BlockingQueriesPerClient: one client address holds at most
// MaxWaitersPerClient blocking queries; beyond, 503 busy.
func TestAPI_BlockingQueriesPerClient(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.MaxWaitersPerClient = 1 })
	_, _, idx, _ := getLookup(t, h.Srv.URL()+"/v1/services/web")
	url := h.Srv.URL() + "/v1/services/web?index=" + strconv.FormatUint(idx, 10) + "&wait=3s"
	go func() {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
		}
	}()
	testserver.Eventually(t, 5*time.Second, "the first query to wait", func() bool { return h.Srv.Registry().Waiters() == 1 })
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	var eb api.ErrorBody
	json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != 503 || eb.Error.Code != api.CodeBusy {
		t.Fatalf("a second blocking query from the same address: %d %+v", resp.StatusCode, eb)
	}
}
