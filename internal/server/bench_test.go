package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// benchSetup registers n instances of "bench" and returns the harness, one
// instance ID and its session token.
func benchSetup(b *testing.B, n int) (*harness, string, string) {
	b.Helper()
	h := start(b, nil)
	k := h.Key(b, "bench")
	ctx := context.Background()
	var id, tok string
	for i := 0; i < n; i++ {
		inst := testutil.NewInstance(b, k.Secret, verify.Proof)
		reg, err := h.Anon.Register(ctx, "bench", k.Secret, api.RegisterRequest{
			Address: "127.0.0.1", Port: inst.Port(), TTL: "1h", Tags: []string{"v1"}, Meta: map[string]string{"zone": fmt.Sprint(i % 3)}})
		if err != nil {
			b.Fatal(err)
		}
		call, _ := inst.LastCall()
		id, tok = reg.ID, call.Token
	}
	return h, id, tok
}

// BenchmarkLookup_Handler measures the server side of a lookup of a
// 10-instance service: routing, filtering, freshness, JSON encoding.
func BenchmarkLookup_Handler(b *testing.B) {
	h, _, _ := benchSetup(b, 10)
	handler := h.Srv.Handler()
	req := httptest.NewRequest(http.MethodGet, "/v1/services/bench?tag=v1", nil)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkHeartbeat_Handler measures the server side of a heartbeat: token
// check and tracker update, no Raft write.
func BenchmarkHeartbeat_Handler(b *testing.B) {
	h, id, tok := benchSetup(b, 1)
	handler := h.Srv.Handler()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodPut, "/v1/instances/"+id+"/heartbeat", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		for pb.Next() {
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkLookup_Loopback measures a whole lookup over loopback HTTP with
// keep-alive connections.
func BenchmarkLookup_Loopback(b *testing.B) {
	h, _, _ := benchSetup(b, 10)
	url := h.Srv.URL() + "/v1/services/bench"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// BenchmarkRegister_Loopback measures a verified registration: callback,
// Raft commit with fsync, answer.
func BenchmarkRegister_Loopback(b *testing.B) {
	h := start(b, nil)
	k := h.Key(b, "bench")
	inst := testutil.NewInstance(b, k.Secret, verify.Proof)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := h.Anon.Register(ctx, "bench", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"}); err != nil {
			b.Fatal(err)
		}
	}
}
