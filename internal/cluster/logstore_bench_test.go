package cluster

import (
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// BenchmarkLogStore_Commit measures the floor of what the Raft log costs
// a write on this machine: raft.db opened as a node opens it
// (openStore), and StoreLogs of batches of 1, 16 and 64 entries of 700
// bytes (about a registration's command), each batch one bbolt commit
// with its two fdatasyncs, as the leader makes one per batch of applies.
// Figures: cpu-us/commit and cpu-us/entry, the process's CPU (user and
// system: on a VM most of it is the kernel's work for the fdatasyncs),
// and ns/op, a commit's wall time. Run it with
//
//	go test -run xxx -bench LogStore_Commit -benchtime 400x ./internal/cluster/
func BenchmarkLogStore_Commit(b *testing.B) {
	for _, batch := range []int{1, 16, 64} {
		b.Run(fmt.Sprint(batch), func(b *testing.B) {
			dir := b.TempDir()
			snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
			if err != nil {
				b.Fatal(err)
			}
			st, err := openStore(Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler)}, snaps)
			if err != nil {
				b.Fatal(err)
			}
			defer st.store.Close()
			data := make([]byte, 700)
			for i := range data {
				data[i] = byte('a' + i%26)
			}
			index := uint64(0)
			logs := make([]*raft.Log, batch)
			b.ResetTimer()
			cpu0 := processCPU()
			for range b.N {
				for i := range logs {
					index++
					logs[i] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
				}
				if err := st.store.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
			}
			cpu := processCPU() - cpu0
			b.StopTimer()
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/commit")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*batch), "cpu-us/entry")
		})
	}
}

// processCPU returns the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
