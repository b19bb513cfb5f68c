//go:build unix

package audit_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/catalog"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLog_Applied measures what auditing costs a registration
// applied by the FSM: deriving its record and queueing it (on the FSM
// goroutine: ns/op), and, in all, with the writer's encoding, writes
// and fsyncs (cpu-ns/op, the process's CPU over the run divided by the
// records, the fsyncs made durable at the end).
func BenchmarkLog_Applied(b *testing.B) {
	l, _ := openLog(b, nil)
	in := &catalog.Instance{ID: "0123456789abcdef0123456789abcdef", Service: "fetch_url", Address: "127.0.0.1", Port: 8080, Scheme: "http",
		KeyID: "key_2283c8f7f3a26b48", TokenHash: catalog.HashSecret("t"), Status: catalog.StatusPassing, RegisteredAt: time.Now()}
	cmd := catalog.Command{Op: catalog.OpRegister, Instance: in, Reason: "api", Rules: catalog.RulesCurrent,
		Origin: &catalog.Origin{Time: time.Now().UTC(), Node: "node-3f9a2c", Caller: "192.0.2.7:51234"}}
	res := catalog.Result{Instance: in}
	b.ReportAllocs()
	cpu := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		l.Applied(uint64(i+1), cmd, res)
	}
	if err := l.Durable(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	if s := l.Stats(); s.Dropped > 0 {
		b.Logf("%d dropped: the queue was full", s.Dropped)
	}
}
