package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
)

func numCPU() int { return runtime.NumCPU() }

// fill sets a result's rates and CPU figures from what the meter saw,
// and whether the generator was the limit.
func (r *runner) fill(res *Result, u usage) {
	res.Seconds = round3(u.wall.Seconds())
	if s := u.wall.Seconds(); s > 0 {
		res.OpsPerS = round3(float64(res.Ops) / s)
		res.LoadCores = round3(u.loadCPU.Seconds() / s)
	}
	if u.serverOK {
		cpu := round3(u.serverCPU.Seconds())
		res.ServerCPUS = &cpu
		if cpu > 0 {
			v := round3(float64(res.Ops) / cpu)
			res.OpsPerServerCPUS = &v
		}
		if s := u.wall.Seconds(); s > 0 {
			c := round3(cpu / s)
			res.ServerCores = &c
		}
	}
	if res.Ops == 0 {
		return
	}
	load := res.LoadCores
	if r.pin.pinned {
		res.GeneratorBound = load >= 0.9*float64(r.pin.loadCPU) &&
			(res.ServerCores == nil || *res.ServerCores < 0.9*float64(r.pin.serverCPU))
	} else if res.ServerCores != nil {
		res.GeneratorBound = load+*res.ServerCores >= 0.9*float64(r.pin.loadCPU) && load > *res.ServerCores
	}
	if res.GeneratorBound {
		res.Notes = strings.TrimSpace(res.Notes + " GENERATOR-BOUND: the load, not the server, was the limit.")
	}
}

// finish fills res for a run of a workload: its server's usage u, the
// latencies rec holds, the server's memory, and its first error, if any.
func (r *runner) finish(res *Result, u usage, rec *recorder, err error) {
	r.fill(res, u)
	latencies(res, rec)
	r.rss(res)
	if err != nil {
		res.Notes += "; first error: " + err.Error()
	}
	if res.Ops == 0 && (res.Errors > 0 || err != nil) && res.Status == "" {
		res.Status = "failed" // every attempt failed: not a figure
	}
}

// latencies copies a recorder's quantiles into the result.
func latencies(res *Result, rec *recorder) {
	if p50, p99, ok := rec.quantiles(); ok {
		res.P50MS, res.P99MS = &p50, &p99
	}
}

func (r *runner) rss(res *Result) int64 {
	pid := r.serverPID()
	if pid == 0 {
		return 0
	}
	v, err := ReadRSS(pid)
	if err != nil {
		return 0
	}
	res.RSSBytes = &v
	return v
}

func round3(f float64) float64 {
	if f < 0 {
		return 0
	}
	return float64(int64(f*1000+0.5)) / 1000
}

// WriteTable prints the results as an aligned table, and the run's
// setting under it.
func WriteTable(w io.Writer, rep *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tSTATUS\tOPS\tOPS/S\tSERVER CPU-S\tOPS/SERVER CPU-S\tP50\tP99\tRSS\tNOTES")
	for _, x := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Workload, x.Status, x.Ops, num(&x.OpsPerS),
			num(x.ServerCPUS), num(x.OpsPerServerCPUS), ms(x.P50MS), ms(x.P99MS), mib(x.RSSBytes), x.Notes)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, rep.Env)
	return err
}

// WriteJSON prints one JSON object a line, one per result.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	for _, x := range rep.Results {
		if err := enc.Encode(x); err != nil {
			return err
		}
	}
	return nil
}

func num(f *float64) string {
	switch {
	case f == nil:
		return "unknown"
	case *f >= 100:
		return fmt.Sprintf("%.0f", *f)
	default:
		return fmt.Sprintf("%.2f", *f)
	}
}

func ms(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fms", *f)
}

func mib(b *int64) string {
	if b == nil {
		return "-"
	}
	return fmt.Sprintf("%.0fMiB", float64(*b)/(1<<20))
}
