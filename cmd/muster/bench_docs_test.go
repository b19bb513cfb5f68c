package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/musterhq/muster/internal/bench"
)

var (
	codeSpan     = regexp.MustCompile("`([^`]+)`")
	fenceBlock   = regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	assignment   = regexp.MustCompile(`^[A-Z_]+=`)
	substitution = regexp.MustCompile(`\$\([^)]*\)`)
)

// docBenchCommands returns every `muster bench` command that text shows,
// in code spans (joined across the lines a span wraps over) and in fenced
// blocks, as the words after "bench" with the environment assignments
// before it; a comment is cut. Mentions that are not commands (a key's
// name, "muster bench 0") are left out: the command takes flags only.
func docBenchCommands(text string) (cmds [][]string, envs []map[string]string) {
	var candidates []string
	for _, m := range fenceBlock.FindAllStringSubmatch(text, -1) {
		candidates = append(candidates, strings.Split(m[1], "\n")...)
	}
	text = fenceBlock.ReplaceAllString(text, "")
	for _, m := range codeSpan.FindAllStringSubmatch(text, -1) {
		candidates = append(candidates, strings.Join(strings.Fields(m[1]), " "))
	}
	for _, c := range candidates {
		c, _, _ = strings.Cut(c, " #")
		c = substitution.ReplaceAllString(c, "value") // MUSTER_TOKEN=$(cat …)
		f := strings.Fields(c)
		env := map[string]string{}
		for len(f) > 0 && assignment.MatchString(f[0]) {
			k, v, _ := strings.Cut(f[0], "=")
			env[k] = v
			f = f[1:]
		}
		if len(f) < 2 || (f[0] != "muster" && f[0] != "./muster") || f[1] != "bench" {
			continue
		}
		if len(f) > 2 && !strings.HasPrefix(f[2], "--") {
			continue
		}
		cmds = append(cmds, f[1:])
		envs = append(envs, env)
	}
	return cmds, envs
}

// TestDocs_BenchCommands: every `muster bench` command the README and
// docs/ show parses, and passes the suite's checks (its flags, the
// workloads --only names, the token --addr needs), up to the point where
// the suite would start; the runs themselves take minutes each, and
// TestBench_Short and TestBench_AddrOnly run the suite end to end.
func TestDocs_BenchCommands(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	// A process that exists: the suite refuses a PID without one.
	pid := strconv.Itoa(os.Getpid())
	shellVars := strings.NewReplacer("$SERVER_PID", pid, "$!", pid)
	found := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		cmds, envs := docBenchCommands(string(b))
		for i, args := range cmds {
			found++
			for j := range args {
				args[j] = shellVars.Replace(args[j])
			}
			var ran *bench.Config
			var out bytes.Buffer
			e := env{getenv: func(k string) string { return envs[i][k] }, stdout: &out, stderr: &out,
				bench: func(_ context.Context, cfg bench.Config) (*bench.Report, error) {
					ran = &cfg
					return nil, nil
				}}
			if err := execute(context.Background(), e, args); err != nil {
				t.Errorf("%s: muster %s: %v\n%s", filepath.Base(file), strings.Join(args, " "), err, out.String())
				continue
			}
			if ran == nil {
				t.Errorf("%s: muster %s: the suite was not started", filepath.Base(file), strings.Join(args, " "))
			}
		}
	}
	if found < 8 {
		t.Fatalf("found %d muster bench commands in the docs; the extraction is broken", found)
	}
}

// TestDocs_BenchCommandsExtraction: what docBenchCommands takes for a
// command, and what it leaves.
func TestDocs_BenchCommandsExtraction(t *testing.T) {
	text := "run `./muster bench --only restart\n--instances 100000` and\n" +
		"```sh\nMUSTER_TOKEN=$(cat dir/admin-token) ./muster bench --addr http://h:1 --server-pid $SERVER_PID # note\n```\n" +
		"keys (`muster bench 0`, …) and `muster bench`; then `muster bench --nope`"
	cmds, envs := docBenchCommands(text)
	got := make([]string, len(cmds))
	for i, c := range cmds {
		got[i] = strings.Join(c, " ")
	}
	want := []string{
		"bench --addr http://h:1 --server-pid $SERVER_PID",
		"bench --only restart --instances 100000",
		"bench",
		"bench --nope",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("commands %q, want %q", got, want)
	}
	if envs[0]["MUSTER_TOKEN"] != "value" {
		t.Fatalf("environment %v", envs[0])
	}
	var out bytes.Buffer
	e := env{getenv: func(string) string { return "" }, stdout: &out, stderr: &out,
		bench: func(context.Context, bench.Config) (*bench.Report, error) { return nil, nil }}
	if err := execute(context.Background(), e, cmds[3]); err == nil {
		t.Fatal("muster bench --nope passed")
	}
}
