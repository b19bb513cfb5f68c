//go:build unix

package verify_test

import (
	"context"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/verify"
)

// cpuTime is the process's user plus system CPU time.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerifier_Verify measures callbacks to one listener proving its
// host, 64 at a time, the instance answering in this process: "kept",
// with the address the registry pins (DialIP), whose connections are kept
// between callbacks; "fresh", without one, a connection per callback.
// Figures: ns/op (wall time over 64 at once) and cpu-us/op, the
// process's CPU (the verifier's and the instance's) per callback. Run it
// with
//
//	go test -run xxx -bench Verifier_Verify ./internal/verify/
func BenchmarkVerifier_Verify(b *testing.B) {
	in := serve(b, answer(keySecret))
	for _, tc := range []struct {
		name   string
		dialIP bool
	}{{"kept", true}, {"fresh", false}} {
		b.Run(tc.name, func(b *testing.B) {
			v := newVerifier(b, nil)
			tg := target(b, in.srv)
			if tc.dialIP {
				tg.DialIP = netip.MustParseAddr(tg.Address)
			}
			req := request()
			b.SetParallelism(64)
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := v.Verify(context.Background(), tg, req, keySecret); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
	_ = verify.Proof
}
