package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// rawDo sends one request and returns the status, the Retry-After header
// and the body.
func rawDo(tb testing.TB, method, url, token, body string) (int, string, []byte) {
	tb.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), data
}

// readyz returns /readyz's status code and body.
func readyz(tb testing.TB, url string) (int, api.Health) {
	tb.Helper()
	code, _, data := rawDo(tb, "GET", url+"/readyz", "", "")
	var h api.Health
	if err := json.Unmarshal(data, &h); err != nil {
		tb.Fatalf("readyz body %s: %v", data, err)
	}
	return code, h
}

// lookupLoop looks services up from another goroutine until stop is
// called, which returns how many lookups ran and the failures.
func lookupLoop(tb testing.TB, url string, services []string) (stop func() (n int, failures []string)) {
	var (
		done     = make(chan struct{})
		wg       sync.WaitGroup
		mu       sync.Mutex
		n        int
		failures []string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			svc := services[i%len(services)]
			resp, err := http.Get(url + "/v1/services/" + svc)
			var lr api.LookupResponse
			ok := err == nil && resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&lr) == nil && len(lr.Instances) == 1
			if err == nil {
				resp.Body.Close()
			}
			mu.Lock()
			n++
			if !ok {
				failures = append(failures, fmt.Sprintf("%s: %v %v", svc, err, resp))
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return func() (int, []string) {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return n, failures
	}
}

// fullDisk drives a running registry through a full disk: fill makes the
// data dir's filesystem full, free undoes it. It registers instances
// before, checks that while the disk is full every write is refused with a
// retryable 503 naming the disk and carrying Retry-After, before any
// callback, that reads never fail and that /readyz says degraded: disk,
// and that writes succeed again once space is freed. It returns the
// services registered (acknowledged) and the ones refused.
func fullDisk(t *testing.T, h *harness, fill, free func()) (acked, refused []string) {
	t.Helper()
	ctx := context.Background()
	k := h.Key(t, "disk-*")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	ids := map[string]string{} // service → instance ID
	tokens := map[string]string{}
	for i := range 5 {
		svc := fmt.Sprintf("disk-%d", i)
		reg, err := h.Anon.Register(ctx, svc, k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		call, _ := inst.LastCall()
		ids[svc], tokens[svc] = reg.ID, call.Token
		acked = append(acked, svc)
	}
	url := h.Srv.URL()
	stop := lookupLoop(t, url, acked)

	fill()
	if code, hz := readyz(t, url); code != 200 || hz.Status != "degraded" || hz.Degraded != "disk" || hz.Reason == "" {
		t.Errorf("readyz on a full disk = %d %+v, want 200 degraded: disk", code, hz)
	}
	calls := inst.CallCount()
	body := string(regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"}))
	for i, w := range []struct{ method, path, token, body string }{
		{"POST", "/v1/services/disk-new/instances", k.Secret, body},
		{"POST", "/v1/services/disk-new2/instances", k.Secret, body},
		{"POST", "/v1/keys", h.AdminToken(t), `{"services":["other"]}`},
		{"PUT", "/v1/instances/" + ids["disk-0"] + "/drain", tokens["disk-0"], ""},
		{"DELETE", "/v1/instances/" + ids["disk-1"], tokens["disk-1"], ""},
		{"DELETE", "/v1/keys/" + k.ID, h.AdminToken(t), ""},
	} {
		code, retry, data := rawDo(t, w.method, url+w.path, w.token, w.body)
		var eb api.ErrorBody
		json.Unmarshal(data, &eb)
		if code != 503 || eb.Error.Code != api.CodeUnavailable || retry != "10" || !strings.Contains(eb.Error.Message, "disk is full") {
			t.Errorf("%s %s on a full disk = %d, Retry-After %q, %s; want 503 unavailable, Retry-After 10, a message naming the disk",
				w.method, w.path, code, retry, data)
		}
		if i < 2 {
			refused = append(refused, strings.Split(w.path, "/")[3])
		}
	}
	if n := inst.CallCount(); n != calls {
		t.Errorf("the registry called the instance back %d times for registrations a full disk refused", n-calls)
	}
	// A heartbeat of a passing instance writes nothing: it goes on.
	if code, _, data := rawDo(t, "PUT", url+"/v1/instances/"+ids["disk-2"]+"/heartbeat", tokens["disk-2"], ""); code != 200 {
		t.Errorf("heartbeat on a full disk = %d %s, want 200", code, data)
	}
	time.Sleep(300 * time.Millisecond) // lookups run meanwhile

	free()
	if code, hz := readyz(t, url); code != 200 || hz.Status != "ready" || hz.Degraded != "" {
		t.Errorf("readyz after space was freed = %d %+v, want 200 ready", code, hz)
	}
	reg, err := h.Anon.Register(ctx, "disk-after", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	if err != nil {
		t.Fatalf("register after space was freed: %v", err)
	}
	acked = append(acked, reg.Service)

	n, failures := stop()
	if len(failures) > 0 || n < 20 {
		t.Errorf("%d of %d lookups failed while the disk was full (want 0 of at least 20): %v", len(failures), n, failures)
	}
	t.Logf("%d lookups, %d failed", n, len(failures))
	return acked, refused
}

// TestServer_DiskFull checks the HTTP contract of a full disk at the
// cluster's seam (its free-space reading), so that it runs anywhere; see
// TestServer_DiskFull_tmpfs for a real full filesystem.
func TestServer_DiskFull(t *testing.T) {
	var freeBytes atomic.Uint64
	freeBytes.Store(1 << 40)
	h := start(t, func(c *server.Config) {
		c.Cluster.DiskFree = func(string) (uint64, error) { return freeBytes.Load(), nil }
	})
	fullDisk(t, h, func() {
		freeBytes.Store(1 << 20)
		// Far from the reserve, the guard keeps a reading for a quarter
		// second (cluster/disk.go).
		time.Sleep(300 * time.Millisecond)
	}, func() { freeBytes.Store(1 << 40) })
}
