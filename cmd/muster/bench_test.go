package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/internal/testutil"
)

// TestBench_Short runs `muster bench --short --json` end to end, as CI
// does, against the real binary (which starts a server of its own), and
// checks that every workload printed one JSON line with the fields and
// sane, non-negative numbers. It never checks a figure: the figures are
// the report's, not the test's.
func TestBench_Short(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark suite's short mode (about 40 s)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // about 35 s; slack for a loaded machine
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "bench", "--short", "--json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("muster bench --short: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	t.Logf("stderr:\n%s", stderr.String())
	want := []string{"http-floor", "lookup-c16", "lookup-c64", "dns-c16", "dns-c64", "heartbeat", "heartbeat-sdk", "watch-fanout",
		"bulk-load", "idle-cpu", "deaths-1", "deaths-20", "deaths-200", "restart", "register-c16", "register-c64"}
	fields := []string{"workload", "status", "ops", "errors", "seconds", "ops_per_s", "server_cpu_s", "ops_per_server_cpu_s",
		"server_cores", "load_cores", "p50_ms", "p99_ms", "rss_bytes", "pinned", "generator_bound", "notes"}
	got := map[string]map[string]any{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		name, _ := row["workload"].(string)
		if _, dup := got[name]; dup {
			t.Errorf("workload %q printed twice", name)
		}
		got[name] = row
	}
	for _, name := range want {
		row, ok := got[name]
		if !ok {
			t.Errorf("no JSON line for workload %q", name)
			continue
		}
		for _, f := range fields {
			if _, ok := row[f]; !ok {
				t.Errorf("%s: no field %q", name, f)
			}
		}
		for f, v := range row {
			if n, ok := v.(float64); ok && n < 0 {
				t.Errorf("%s: %s = %v, negative", name, f, n)
			}
		}
		if extra, ok := row["extra"].(map[string]any); ok {
			for f, v := range extra {
				if n, ok := v.(float64); !ok || n < 0 {
					t.Errorf("%s: extra %s = %v, not a non-negative number", name, f, v)
				}
			}
		}
		status, _ := row["status"].(string)
		switch {
		case status != "ok" && status != "partial":
			t.Errorf("%s: status %q: %v", name, status, row["notes"])
		case name != "idle-cpu" && row["ops"].(float64) <= 0:
			t.Errorf("%s: no operations: %v", name, row["notes"])
		}
		if status == "ok" && row["server_cpu_s"] == nil {
			t.Errorf("%s: the server's CPU is unknown although the run started the server", name)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d workloads printed, want %d: %v", len(got), len(want), got)
	}
}

// TestBench_Flags: bad flags are usage errors, found before anything
// starts.
func TestBench_Flags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{name: "unknown workload", args: []string{"bench", "--only", "lookup,nope"}},
		{name: "addr without token", args: []string{"bench", "--addr", "http://127.0.0.1:1"}},
		{name: "too few instances", args: []string{"bench", "--instances", "5"}},
		{name: "pid without addr", args: []string{"bench", "--server-pid", "1"}},
		{name: "argument", args: []string{"bench", "extra"}},
		{name: "empty --only", args: []string{"bench", "--only", ""}},
		{name: "no such server pid", args: []string{"bench", "--addr", "http://127.0.0.1:1", "--server-pid", "999999999"},
			env: map[string]string{"MUSTER_TOKEN": "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, &out, &errOut)
			if code := report(err, func(string) string { return "" }, &errOut); code != 2 {
				t.Errorf("exit code %d, want 2 (usage); err %v; stderr %s", code, err, errOut.String())
			}
		})
	}
}

// TestBench_AddrOnly: the suite aimed at a running server (--addr, with
// its admin token and --server-pid) runs only the workloads --only names,
// for --duration each, and reads that server's CPU from its PID.
func TestBench_AddrOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark suite against a server process")
	}
	dir := t.TempDir()
	p := startProc(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "bench", "--addr", p.url, "--server-pid", strconv.Itoa(p.cmd.Process.Pid),
		"--only", "lookup", "--duration", "500ms", "--json")
	cmd.Env = append(os.Environ(), "MUSTER_TOKEN="+adminToken(t, dir))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("muster bench --addr: %v\nstderr:\n%s", err, stderr.String())
	}
	var names []string
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var row struct {
			Workload   string   `json:"workload"`
			Status     string   `json:"status"`
			Ops        int64    `json:"ops"`
			Seconds    float64  `json:"seconds"`
			ServerCPUS *float64 `json:"server_cpu_s"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		names = append(names, row.Workload)
		if row.Status != "ok" || row.Ops <= 0 || row.Seconds < 0.4 || row.Seconds > 5 || row.ServerCPUS == nil {
			t.Errorf("%s: %+v (want ok, some ops, about 0.5 s, the server's CPU read)", row.Workload, row)
		}
	}
	if strings.Join(names, ",") != "lookup-c16,lookup-c64" {
		t.Fatalf("workloads run: %v, want only the lookups", names)
	}
}

// TestBench_AddrNobodyThere: a --addr where no registry answers is an
// error that names that address, not the CLI's MUSTER_ADDR.
func TestBench_AddrNobodyThere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"bench", "--addr", dead, "--only", "lookup"},
		func(k string) string { return map[string]string{"MUSTER_TOKEN": "x"}[k] }, &out, &errOut)
	code := report(err, func(string) string { return "" }, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), dead+" (--addr)") || strings.Contains(errOut.String(), "MUSTER_ADDR") {
		t.Fatalf("exit %d, stderr %q: want 1, naming %s and not MUSTER_ADDR", code, errOut.String(), dead)
	}
}

// TestBench_AddrTLS: against an https:// server whose certificate is
// from a CA of its own, the suite trusts what $MUSTER_CACERT names, as
// every other command does, in every workload's clients (the per-request
// heartbeats, the SDK's batches and the event streams among them).
func TestBench_AddrTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark suite against a server process")
	}
	dir := t.TempDir()
	ca := testutil.NewTestCA(t, "bench-ca")
	cert, key := ca.Issue(t, dir, "api")
	p := launchProcCmd(t, exec.Command(binary, "server", "--http-addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
		"--log-format", "json", "--http-tls-cert", cert, "--http-tls-key", key,
		"--register-rate", "1000000", "--max-instances-per-key", "1000000", "--max-instances-per-address", "1000000"))
	if !strings.HasPrefix(p.url, "https://") {
		t.Fatalf("url %s", p.url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := append(os.Environ(), "MUSTER_TOKEN="+adminToken(t, filepath.Join(dir, "data")), "MUSTER_CACERT="+ca.File)
	ready := exec.CommandContext(ctx, binary, "health", "--ready", "--timeout", "15s")
	ready.Env = append(env, "MUSTER_ADDR="+p.url)
	if out, err := ready.CombinedOutput(); err != nil {
		t.Fatalf("muster health --ready: %v: %s", err, out)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "bench", "--addr", p.url, "--short", "--only", "heartbeat,watch-fanout", "--json")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("muster bench --addr https://: %v\nstderr:\n%s", err, stderr.String())
	}
	var names []string
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var row struct {
			Workload, Status, Notes string
			Ops                     int64
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		names = append(names, row.Workload)
		if row.Status != "ok" || row.Ops <= 0 {
			t.Errorf("%s: %+v (want ok, some ops)", row.Workload, row)
		}
	}
	if strings.Join(names, ",") != "heartbeat,heartbeat-sdk,watch-fanout" {
		t.Fatalf("workloads run: %v", names)
	}
}
