package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/registry"
)

// BenchmarkLookup_Large measures the server side of a lookup of a
// 1,000-instance service into a writer that keeps nothing: with the
// largest labels the registry accepts, and with 40 KiB of labels (the
// size of issue 8's report).
func BenchmarkLookup_Large(b *testing.B) {
	for _, labelBytes := range []int{registry.MaxLabelBytes, 40 << 10} {
		b.Run(fmt.Sprintf("labels=%dKiB", labelBytes>>10), func(b *testing.B) {
			reg := bigRegistry(b, "big", 1000, labelBytes)
			handler := httpapi.NewHandler(httpapi.Deps{Registry: reg})
			req := httptest.NewRequest(http.MethodGet, "/v1/services/big", nil)
			w := &discardWriter{h: http.Header{}}
			handler.ServeHTTP(w, req) // warm the encoding cache
			size := w.n
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := &discardWriter{h: http.Header{}}
				handler.ServeHTTP(w, req)
				if w.status != http.StatusOK || w.n != size {
					b.Fatalf("status %d, %d bytes; want 200, %d", w.status, w.n, size)
				}
			}
		})
	}
}
