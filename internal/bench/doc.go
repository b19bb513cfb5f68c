// Package bench is muster's benchmark suite, what `muster bench` runs.
// It starts the muster binary as a child `muster server` process (or
// targets a running one), pinned to CPU 0 with taskset while this
// process, the load, runs on the other CPUs; runs each workload for a
// bounded time; and reports, beside ops a second, ops per second of the
// server's CPU, read from /proc (ReadCPU, ReadRSS), which hold up on a
// shared, noisy machine. It answers the registrations' verification
// callbacks itself, in process, and reports how long that took, so that
// the responder is seen not to be the bottleneck.
//
//	cfg := bench.ShortConfig()
//	cfg.Exe, _ = os.Executable()
//	rep, err := bench.Run(ctx, cfg)
//	if err != nil {
//		return err
//	}
//	bench.WriteTable(os.Stdout, rep)
//
// Run's goroutine owns the run; every goroutine a workload starts ends
// before it returns, except the deaths' heartbeat keeper and event
// watcher, which the restart reuses and Run stops before it returns. The
// child server gets SIGKILL when the run ends, and, on Linux, when this
// process dies however it dies.
package bench
