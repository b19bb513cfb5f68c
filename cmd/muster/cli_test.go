package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// runCLI runs the CLI in-process and returns its stdout, stderr, error and
// exit code (as main would exit).
func runCLI(tb testing.TB, env map[string]string, args ...string) (stdout, stderr string, code int, err error) {
	tb.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	code = report(err, func(k string) string { return env[k] }, &errOut)
	return out.String(), errOut.String(), code, err
}

// commandPaths lists every command of the tree, as arguments.
func commandPaths() [][]string {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			if !sub.Hidden {
				walk(sub, append(append([]string(nil), path...), sub.Name()))
			}
		}
	}
	walk(newRootCmd(env{getenv: func(string) string { return "" }}), nil)
	return paths
}

// TestRun_HelpExitsZero: -h, --help and `muster help` show the help on
// stdout and exit 0, for every command and subcommand.
func TestRun_HelpExitsZero(t *testing.T) {
	paths := commandPaths()
	if len(paths) < 15 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, path := range paths {
		for _, args := range [][]string{append(path, "-h"), append(path, "--help"), append([]string{"help"}, path...)} {
			out, errOut, code, err := runCLI(t, nil, args...)
			if err != nil || code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
				t.Errorf("muster %s: exit %d, err %v, stderr %q, stdout:\n%s", strings.Join(args, " "), code, err, errOut, out)
			}
		}
	}
	// A group given no command shows its help on stderr and exits 2.
	for _, args := range [][]string{nil, {"keys"}} {
		out, errOut, code, _ := runCLI(t, nil, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "Available Commands:") {
			t.Errorf("muster %v: exit %d, stdout %q, stderr:\n%s", args, code, out, errOut)
		}
	}
}

// TestReport_UsageErrors: a usage error exits 2 with one line naming the
// mistake and one pointing at the command's -h, and nothing else. A bad
// flag value is one, even where only the registry knew the rule before.
func TestReport_UsageErrors(t *testing.T) {
	// reg is a register command line, complete but for extra.
	reg := func(extra ...string) []string {
		return append([]string{"register", "--service", "web", "--address", "127.0.0.1", "--port", "8080"}, extra...)
	}
	for _, tc := range []struct {
		args []string
		want string // in the error line
		cmd  string // the command whose -h is pointed at
	}{
		{[]string{"server", "--frob"}, "unknown flag: --frob", "muster server"},
		{[]string{"keys", "list", "--frob"}, "unknown flag: --frob", "muster keys list"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`, "muster"},
		{[]string{"serve"}, `did you mean "server"?`, "muster"},
		{[]string{"keys", "bogus"}, `unknown command "bogus" for "muster keys"`, "muster keys"},
		{[]string{"server", "--log-level", "verbose"}, "must be one of debug, info, warn, error", "muster server"},
		{[]string{"server", "--log-format", "xml"}, "must be one of text, json", "muster server"},
		{[]string{"lookup", "web", "--status", "up"}, "must be one of passing, critical, draining, any", "muster lookup"},
		{[]string{"services", "-o", "xml"}, "must be one of table, json, yaml, id", "muster services"},
		{[]string{"lookup"}, "lookup needs one service NAME", "muster lookup"},
		{[]string{"lookup", "web", "--consistent", "--stale"}, "--consistent and --stale exclude each other", "muster lookup"},
		{[]string{"lookup", "web", "--meta", "zone"}, `--meta "zone" must be key=value (or key:value)`, "muster lookup"},
		{[]string{"keys", "create"}, "needs at least one --service", "muster keys create"},
		{[]string{"keys", "revoke"}, "keys revoke needs one key ID or more", "muster keys revoke"},
		{[]string{"drain"}, "drain needs one instance ID", "muster drain"},
		{[]string{"server", "extra"}, "server needs no arguments", "muster server"},
		{[]string{"register", "--service", "web"}, "register needs --service, --address and --port", "muster register"},
		{[]string{"completion", "tcsh"}, "completion needs one shell", "muster completion"},
		{[]string{"help", "keys", "bogus"}, `unknown help topic "keys bogus"`, "muster help"},
		{[]string{"server", "--register-rate", "0"}, "--register-rate must be between", "muster server"},
		// Values the registry would refuse (400, exit 1) are refused
		// here, naming the flag.
		{reg("--port", "99999"), "--port must be from 1 to 65535, not 99999", "muster register"},
		{reg("--port", "-1"), "--port must be from 1 to 65535, not -1", "muster register"},
		{reg("--verify-port", "70000"), "--verify-port must be from 1 to 65535 (or 0 for any free port), not 70000", "muster register"},
		{reg("--ttl", "500ms"), "--ttl must be from 1s to 1h (or 0, with a check, for no heartbeats), not 500ms", "muster register"},
		{reg("--ttl", "2h"), "--ttl must be from 1s to 1h", "muster register"},
		{reg("--ttl", "-1s"), "--ttl must be from 1s to 1h", "muster register"},
		{reg("--check-tcp", "--check-interval", "500ms"), "--check-interval must be from 1s to 1h, not 500ms", "muster register"},
		{reg("--check-tcp", "--check-interval", "2h"), "--check-interval must be from 1s to 1h, not 2h", "muster register"},
		{reg("--check-tcp", "--check-timeout", "20s"), "--check-timeout must be from 100ms to 10s and at most --check-interval (10s), not 20s", "muster register"},
		{reg("--check-tcp", "--check-interval", "2s", "--check-timeout", "3s"), "at most --check-interval (2s), not 3s", "muster register"},
		{reg("--check-http", "healthz"), "--check-http: path must start with /", "muster register"},
		{[]string{"evict", "abc", "--for", "1000h"}, "--for must be from 1s to 720h, not 1000h", "muster evict"},
		{[]string{"evict", "abc", "--for", "0s"}, "--for must be from 1s to 720h, not 0s", "muster evict"},
		{[]string{"keys", "create", "--service", "web", "--max-instances", "-1"}, "--max-instances must be from 0 (the server's --max-instances-per-key) to 1000000, not -1", "muster keys create"},
		{[]string{"keys", "create", "--service", "web", "--max-instances", "1000001"}, "to 1000000, not 1000001", "muster keys create"},
		{[]string{"health", "--timeout", "0s"}, "--timeout must be above 0, not 0s", "muster health"},
		{[]string{"snapshot", "restore", "backup.json", "--timeout", "0s"}, "--timeout must be above 0, not 0s", "muster snapshot restore"},
	} {
		out, errOut, code, err := runCLI(t, nil, tc.args...)
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != 2 || !errors.Is(err, errUsage) || out != "" || len(lines) != 2 ||
			!strings.HasPrefix(lines[0], "muster: ") || !strings.Contains(lines[0], tc.want) ||
			lines[1] != "Run '"+tc.cmd+" -h' for usage." {
			t.Errorf("muster %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2, %q, and a pointer to %q",
				strings.Join(tc.args, " "), code, out, errOut, tc.want, tc.cmd+" -h")
		}
	}
}

// TestServerProcess_UsageError: the binary exits 2 on a usage error, with
// the two lines and no usage dump.
func TestServerProcess_UsageError(t *testing.T) {
	var stderr bytes.Buffer
	cmd := exec.Command(binary, "server", "--frob")
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || stderr.String() != "muster: unknown flag: --frob\nRun 'muster server -h' for usage.\n" {
		t.Fatalf("muster server --frob: %v, stderr %q", err, stderr.String())
	}
	out, err := exec.Command(binary, "keys", "-h").Output()
	if err != nil || !strings.Contains(string(out), "muster keys [command]") {
		t.Fatalf("muster keys -h: %v\n%s", err, out)
	}
}

// TestSingleDashLong: the single-dash long flags Go's flag package took
// still work; values and arguments after -- are left alone.
func TestSingleDashLong(t *testing.T) {
	root := newRootCmd(env{getenv: func(string) string { return "" }})
	for _, tc := range []struct{ in, want string }{
		{"server -http-addr :0 -data-dir=/x -seed-compat", "server --http-addr :0 --data-dir=/x --seed-compat"},
		{"lookup web -status any -o json -tag -meta", "lookup web --status any -o json --tag -meta"},
		{"lookup web -- -status", "lookup web -- -status"},
		{"server -help", "server --help"},
		{"keys create -service web -max-instances 3", "keys create --service web --max-instances 3"},
		{"register -service web -ttl 5s -frob", "register --service web --ttl 5s -frob"},
		{"-version", "--version"},
	} {
		if got := strings.Join(singleDashLong(root, strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("%q → %q, want %q", tc.in, got, tc.want)
		}
	}
	// End to end: the server reads them (and refuses --seed-compat
	// without names, before it starts anything).
	dir := filepath.Join(t.TempDir(), "data")
	_, _, _, err := runCLI(t, nil, "server", "-http-addr", "127.0.0.1:0", "-data-dir", dir, "-seed-compat")
	if err == nil || !strings.Contains(err.Error(), "seed") {
		t.Fatalf("server with single-dash flags: %v", err)
	}
}

// TestCLI_Outputs: -o id, json and yaml on every command that prints
// records; meta in both syntaxes; drain.
func TestCLI_Outputs(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	env := map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": h.AdminToken(t)}
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, _, err := runCLI(t, env, args...)
		if err != nil {
			t.Fatalf("muster %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out
	}

	keyID := strings.TrimSpace(cli("keys", "create", "--service", "web", "-o", "id"))
	var key api.Key
	if err := json.Unmarshal([]byte(cli("keys", "create", "web2", "-o", "json")), &key); err != nil || key.Secret == "" {
		t.Fatalf("keys create -o json: %+v, %v", key, err)
	}
	if !strings.HasPrefix(keyID, "key_") || strings.ContainsAny(keyID, " \n") {
		t.Fatalf("keys create -o id = %q", keyID)
	}
	if got := cli("keys", "list", "-o", "id"); got != keyID+"\n"+key.ID+"\n" && got != key.ID+"\n"+keyID+"\n" {
		t.Fatalf("keys list -o id = %q, want %s and %s", got, keyID, key.ID)
	}
	var keys []map[string]any
	if err := yaml.Unmarshal([]byte(cli("keys", "list", "-o", "yaml")), &keys); err != nil || len(keys) != 2 || keys[0]["max_instances"] == nil {
		t.Fatalf("keys list -o yaml: %v, %v", keys, err)
	}

	in := testutil.NewInstance(t, key.Secret, verify.Proof)
	reg, err := h.Admin.Register(context.Background(), "web2", key.Secret, api.RegisterRequest{
		Address: "127.0.0.1", Port: in.Port(), Tags: []string{"v2"}, Meta: map[string]string{"zone": "a", "url": "http://x:1"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cli("services", "-o", "id"); got != "web2\n" {
		t.Fatalf("services -o id = %q", got)
	}
	// Meta in both forms, split at the first = or :.
	for _, meta := range [][]string{{"zone=a"}, {"zone:a"}, {"url=http://x:1", "zone:a"}, {"url:http://x:1"}} {
		args := []string{"lookup", "web2", "-o", "id"}
		for _, m := range meta {
			args = append(args, "--meta", m)
		}
		if got := cli(args...); got != reg.ID+"\n" {
			t.Errorf("lookup --meta %v -o id = %q, want %s", meta, got, reg.ID)
		}
	}
	if got := cli("lookup", "web2", "--meta", "zone=b", "-o", "id"); got != "" {
		t.Errorf("lookup --meta zone=b = %q, want nothing", got)
	}
	if got := cli("lookup", "web2"); !strings.Contains(got, "url=http://x:1,zone=a") {
		t.Errorf("lookup table prints meta as %q, want url=http://x:1,zone=a", got)
	}
	var doc struct {
		Service   string
		Index     uint64
		Instances []struct {
			ID         string
			Meta       map[string]string
			LastSeenMS int64 `yaml:"last_seen_ms"`
		}
	}
	y := cli("lookup", "web2", "-o", "yaml")
	if err := yaml.Unmarshal([]byte(y), &doc); err != nil || doc.Service != "web2" || doc.Index == 0 || len(doc.Instances) != 1 ||
		doc.Instances[0].ID != reg.ID || doc.Instances[0].Meta["url"] != "http://x:1" || !strings.HasPrefix(y, "service: web2\n") {
		t.Fatalf("lookup -o yaml (%+v, %v):\n%s", doc, err, y)
	}
	var inst api.Instance
	if err := json.Unmarshal([]byte(cli("instance", reg.ID, "-o", "json")), &inst); err != nil || inst.ID != reg.ID || inst.Status != "passing" {
		t.Fatalf("instance -o json: %+v, %v", inst, err)
	}
	if got := cli("instance", reg.ID); !strings.Contains(got, "status:") || !strings.Contains(got, "zone=a") {
		t.Fatalf("instance table:\n%s", got)
	}

	// Drain, with the admin token: out of default lookups, still there.
	if got := cli("drain", reg.ID); got != "drained "+reg.ID+" (status draining)\n" {
		t.Fatalf("drain = %q", got)
	}
	if got := cli("lookup", "web2", "-o", "id"); got != "" {
		t.Fatalf("a drained instance in a default lookup: %q", got)
	}
	if got := cli("lookup", "web2", "--status", "draining", "-o", "id"); got != reg.ID+"\n" {
		t.Fatalf("lookup --status draining = %q", got)
	}
	if _, _, code, err := runCLI(t, env, "drain", "nope"); !errors.Is(err, client.ErrNotFound) || code != 1 {
		t.Fatalf("drain of an unknown instance: %v, exit %d", err, code)
	}
	if _, errOut, _, err := runCLI(t, map[string]string{"MUSTER_ADDR": h.Srv.URL()}, "drain", reg.ID); !errors.Is(err, client.ErrUnauthorized) || !strings.Contains(errOut, "hint: set MUSTER_TOKEN") {
		t.Fatalf("drain without a token: %v\n%s", err, errOut)
	}
}

// TestParseMeta: key=value and key:value, split at the first of either.
func TestParseMeta(t *testing.T) {
	for in, want := range map[string][2]string{
		"a=b": {"a", "b"}, "a:b": {"a", "b"}, "url=http://x": {"url", "http://x"}, "url:http://x": {"url", "http://x"},
		"t:12:30": {"t", "12:30"}, "a=": {"a", ""}, "a:b=c": {"a", "b=c"},
	} {
		k, v, err := parseMeta(in)
		if err != nil || k != want[0] || v != want[1] {
			t.Errorf("parseMeta(%q) = %q, %q, %v", in, k, v, err)
		}
	}
	for _, in := range []string{"", "a", "=b", ":b"} {
		if _, _, err := parseMeta(in); !errors.Is(err, errUsage) {
			t.Errorf("parseMeta(%q): %v, want a usage error", in, err)
		}
	}
}

// TestPrintYAML: field names and order are the JSON's, and strings that
// would read as another type stay strings.
func TestPrintYAML(t *testing.T) {
	var b bytes.Buffer
	v := struct {
		Zeta  string            `json:"zeta"`
		Alpha []string          `json:"alpha"`
		Meta  map[string]string `json:"meta"`
		N     int               `json:"n"`
	}{"true", []string{"1", "", "null", "a: b"}, map[string]string{}, 3}
	if err := printYAML(&b, v); err != nil {
		t.Fatal(err)
	}
	want := "zeta: \"true\"\nalpha:\n  - \"1\"\n  - \"\"\n  - \"null\"\n  - 'a: b'\nmeta: {}\nn: 3\n"
	if b.String() != want {
		t.Fatalf("printYAML =\n%s\nwant\n%s", b.String(), want)
	}
}

// TestVersion: muster version and muster --version show the version,
// commit, commit time and Go version; -ldflags -X main.version wins.
func TestVersion(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"}}}
	got := newBuildInfo("", bi).text()
	want := "muster v1.4.0\ncommit:      0123abcd (modified)\ncommit time: 2026-01-02T03:04:05Z\ngo:          " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if got != want {
		t.Errorf("text =\n%s\nwant\n%s", got, want)
	}
	if v := newBuildInfo("v2.0.0", bi).Version; v != "v2.0.0" {
		t.Errorf("the -ldflags version lost to %q", v)
	}
	if v := newBuildInfo("", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}).Version; v != "dev" {
		t.Errorf("a devel build's version = %q", v)
	}

	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		out, _, _, err := runCLI(t, nil, args...)
		if err != nil || !strings.HasPrefix(out, "muster ") || !strings.Contains(out, "\ncommit:") || !strings.Contains(out, "\ncommit time:") ||
			!strings.Contains(out, runtime.Version()) {
			t.Errorf("muster %v = %q, %v", args, out, err)
		}
	}
	out, _, _, err := runCLI(t, nil, "version", "-o", "json")
	var j map[string]any
	if err != nil || json.Unmarshal([]byte(out), &j) != nil || j["version"] == nil || j["go"] != runtime.Version() {
		t.Errorf("version -o json = %q, %v", out, err)
	}

	if testing.Short() {
		return
	}
	bin := filepath.Join(t.TempDir(), "muster")
	if b, err := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-test", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	for _, arg := range []string{"version", "--version"} {
		b, err := exec.Command(bin, arg).Output()
		if err != nil || !strings.HasPrefix(string(b), "muster v9.8.7-test\ncommit:") {
			t.Errorf("%s %s = %q, %v", bin, arg, b, err)
		}
	}
}

// TestCompletion: a script for every shell, and completion of flag values
// and of service names from the registry.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		out, _, _, err := runCLI(t, nil, "completion", sh)
		if err != nil || len(out) < 1000 || !strings.Contains(out, "muster") {
			t.Errorf("completion %s: %d bytes, %v", sh, len(out), err)
		}
	}
	out, _, _, err := runCLI(t, nil, "__complete", "server", "--log-level", "")
	if err != nil || !strings.Contains(out, "debug\ninfo\nwarn\nerror\n") {
		t.Errorf("completing --log-level: %q, %v", out, err)
	}
	h := testserver.NewHarness(t, nil)
	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := h.Anon.Register(context.Background(), "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port()}); err != nil {
		t.Fatal(err)
	}
	out, _, _, err = runCLI(t, map[string]string{"MUSTER_ADDR": h.Srv.URL()}, "__complete", "lookup", "")
	if err != nil || !strings.HasPrefix(out, "web\n") {
		t.Errorf("completing lookup NAME: %q, %v", out, err)
	}
}

// serverConfigOf runs `muster server args` with env in-process, up to the
// point where it would start the registry, and returns its configuration.
func serverConfigOf(t *testing.T, vars map[string]string, args ...string) (server.Config, error) {
	t.Helper()
	var got server.Config
	var out bytes.Buffer
	e := env{getenv: func(k string) string { return vars[k] }, stdout: &out, stderr: &out,
		serve: func(_ context.Context, _ env, cfg server.Config) error { got = cfg; return nil }}
	err := execute(context.Background(), e, append([]string{"server"}, args...))
	return got, err
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "muster.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestServerConfig_Precedence: a flag's value comes from the command line,
// else its environment variable, else the config file, else the default.
func TestServerConfig_Precedence(t *testing.T) {
	def := server.DefaultConfig()
	file := writeFile(t, `
# every type of flag
http-addr = "127.0.0.1:7001"       # has an env variable
expiry-grace = "7s"                # has none
max-instances-per-key = 70
register-rate = 2.5
seed-compat = true
seed-services = ["fetch_url", "wordcloud"]
log-level = "DEBUG"
verify-allow = ["10.0.0.0/8", "127.0.0.1"]
`)
	for _, tc := range []struct {
		name      string
		env       map[string]string
		args      []string
		addr      string
		grace     time.Duration
		perKey    int
		seedNames int
	}{
		{"default", nil, nil, def.HTTPAddr, def.Liveness.Grace, def.Registry.MaxInstancesPerKey, 0},
		{"file over default", nil, []string{"--config", file}, "127.0.0.1:7001", 7 * time.Second, 70, 2},
		{"file named by env", map[string]string{"MUSTER_CONFIG": file}, nil, "127.0.0.1:7001", 7 * time.Second, 70, 2},
		{"env over file", map[string]string{"MUSTER_HTTP_ADDR": "127.0.0.1:7002"}, []string{"--config", file}, "127.0.0.1:7002", 7 * time.Second, 70, 2},
		{"flag over env", map[string]string{"MUSTER_HTTP_ADDR": "127.0.0.1:7002"}, []string{"--config", file, "--http-addr", "127.0.0.1:7003",
			"--expiry-grace", "9s", "--max-instances-per-key=90", "--seed-services", "x"}, "127.0.0.1:7003", 9 * time.Second, 90, 1},
		{"flag over default", nil, []string{"--http-addr", "127.0.0.1:7003"}, "127.0.0.1:7003", def.Liveness.Grace, def.Registry.MaxInstancesPerKey, 0},
		{"env over default", map[string]string{"MUSTER_HTTP_ADDR": "127.0.0.1:7002"}, nil, "127.0.0.1:7002", def.Liveness.Grace, def.Registry.MaxInstancesPerKey, 0},
		{"empty env is unset", map[string]string{"MUSTER_HTTP_ADDR": ""}, []string{"--config", file}, "127.0.0.1:7001", 7 * time.Second, 70, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := serverConfigOf(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			seedNames := 0
			if cfg.Registry.Seed != nil {
				seedNames = len(cfg.Registry.Seed.Services)
			}
			if cfg.HTTPAddr != tc.addr || cfg.Liveness.Grace != tc.grace || cfg.Registry.MaxInstancesPerKey != tc.perKey || seedNames != tc.seedNames {
				t.Fatalf("http-addr %q, expiry-grace %s, max-instances-per-key %d, seed names %d; want %q, %s, %d, %d",
					cfg.HTTPAddr, cfg.Liveness.Grace, cfg.Registry.MaxInstancesPerKey, seedNames, tc.addr, tc.grace, tc.perKey, tc.seedNames)
			}
		})
	}
	cfg, err := serverConfigOf(t, nil, "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	wantAllow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	if len(cfg.Verify.Allow) != 2 || cfg.Verify.Allow[0] != wantAllow[0] || cfg.Verify.Allow[1] != wantAllow[1] ||
		cfg.Registry.RegisterEvery != 400*time.Millisecond || !cfg.Logger.Enabled(context.Background(), -4) {
		t.Fatalf("from the file: allow %v, register every %s, debug logging %v", cfg.Verify.Allow, cfg.Registry.RegisterEvery, cfg.Logger.Enabled(context.Background(), -4))
	}
}

// TestServerConfig_FileErrors: an unknown key, a value of the wrong type,
// a flag a file may not set, bad TOML, or a bad env value is a usage error
// naming the key or variable, before anything starts.
func TestServerConfig_FileErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"http_addr = \"x\"\n", `unknown key "http_addr"; did you mean "http-addr"?`},
		{"frobnicate = 1\n", `unknown key "frobnicate" (the keys are the flags' names`},
		{"[server]\nhttp-addr = \"x\"\n", `unknown key "server"`},
		{"help = true\n", `unknown key "help"`},
		{"force-new-cluster = true\n", "force-new-cluster: it is for one start"},
		{"config = \"other.toml\"\n", "config: a config file cannot name another"},
		{"max-instances-per-key = \"10\"\n", "max-instances-per-key: want an integer, got a string"},
		{"http-addr = 9000\n", "http-addr: want a string, got an integer"},
		{"seed-compat = \"yes\"\n", "seed-compat: want true or false, got a string"},
		{"expiry-grace = 10\n", `expiry-grace: want a duration string such as "10s", got an integer`},
		{"verify-allow = [1]\n", "verify-allow: want an array of strings"},
		{"expiry-grace = \"soon\"\n", `expiry-grace = "soon": time: invalid duration`},
		{"log-level = \"verbose\"\n", "must be one of debug, info, warn, error"},
		{"http-addr = \n", "toml:"},
	} {
		path := writeFile(t, tc.text)
		_, err := serverConfigOf(t, nil, "--config", path)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line with %q", tc.text, err, tc.want)
		}
	}
	if _, err := serverConfigOf(t, nil, "--config", filepath.Join(t.TempDir(), "none.toml")); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "none.toml") {
		t.Errorf("a missing config file: %v", err)
	}
	if _, err := serverConfigOf(t, map[string]string{"MUSTER_LOG_LEVEL": "verbose"}); !errors.Is(err, errUsage) ||
		!strings.Contains(err.Error(), `MUSTER_LOG_LEVEL="verbose": must be one of debug, info, warn, error`) {
		t.Errorf("a bad env value: %v", err)
	}
}

// TestServerProcess_ConfigFile: the binary takes its HTTP address, log
// format and data dir from --config, and a flag wins over the file.
func TestServerProcess_ConfigFile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the server binary")
	}
	fileDir, flagDir := filepath.Join(t.TempDir(), "file"), filepath.Join(t.TempDir(), "flag")
	file := writeFile(t, fmt.Sprintf("http-addr = \"127.0.0.1:0\"\nlog-format = \"json\"\ndata-dir = %q\n", fileDir))
	startProcArgs(t, "server", "--config", file, "--data-dir", flagDir)
	if _, err := os.Stat(filepath.Join(flagDir, "admin-token")); err != nil {
		t.Fatalf("--data-dir: %v", err)
	}
	if _, err := os.Stat(fileDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file's data-dir was used although --data-dir was given: %v", err)
	}
	startProcArgs(t, "server", "--config", file)
	if _, err := os.Stat(filepath.Join(fileDir, "admin-token")); err != nil {
		t.Fatalf("the file's data-dir: %v", err)
	}
}

// TestCLI_RegisterSidecarRefused: the sidecar exits 1 at once, with the
// registry's message, when the registry refuses it for good, and prints
// neither registered nor deregistered.
func TestCLI_RegisterSidecarRefused(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	k := h.Key(t, "legacy")
	other := testserver.NewHarness(t, func(c *server.Config) {
		c.Verify.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} // not loopback
	})
	ok := other.Key(t, "legacy")
	for _, tc := range []struct {
		name, addr, key, service string
		want, hint               string
	}{
		{"unknown key", h.Srv.URL(), "mk_" + strings.Repeat("x", 40), "legacy", "(401 unauthorized)", "MUSTER_KEY"},
		{"name outside the key", h.Srv.URL(), k.Secret, "other", "(403 forbidden, field service)", "muster keys list"},
		{"bad request", h.Srv.URL(), k.Secret, "Legacy", "(400 invalid_argument, field service)", ""},
		{"address not allowed", other.Srv.URL(), ok.Secret, "legacy", "(422 address_not_allowed, field address)", "--verify-allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, errOut, code, err := runCLI(t, map[string]string{"MUSTER_ADDR": tc.addr, "MUSTER_KEY": tc.key},
				"register", "--service", tc.service, "--address", "127.0.0.1", "--port", "8080")
			if code != 1 || !errors.Is(err, client.ErrRefused) || !strings.Contains(errOut, "\nmuster: the registry refused the registration: ") ||
				!strings.Contains(errOut, tc.want+"\n") || tc.hint != "" && !strings.Contains(errOut, "\nhint: ") || !strings.Contains(errOut, tc.hint) {
				t.Fatalf("exit %d, err %v; stderr:\n%s", code, err, errOut)
			}
			if out != "" {
				t.Fatalf("stdout %q, want nothing", out)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %s to give up", d)
			}
		})
	}
}

// TestCLI_RegisterSidecarCannotListen: a sidecar given an --address that
// is not this host's, or a --verify-port in use, exits 1 at once with a
// hint naming the flag to change; --address's help says the rule.
func TestCLI_RegisterSidecarCannotListen(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	env := map[string]string{"MUSTER_ADDR": deadURL(t), "MUSTER_KEY": "mk_" + strings.Repeat("x", 40)}
	for _, tc := range []struct {
		name  string
		extra []string
		want  []string // in stderr
	}{
		// 192.0.2.1 is TEST-NET-1: documentation's, no host's.
		{"not this host's", []string{"--address", "192.0.2.1"}, []string{
			"muster: listen on 192.0.2.1:0 for the verification callback: ",
			"\nhint: --address 192.0.2.1 is not an address of this host: the sidecar listens on --address for the registry's verification callback",
			"run muster register on the host that holds 192.0.2.1\n"}},
		{"verify port in use", []string{"--address", "127.0.0.1", "--verify-port", busyPort}, []string{
			"muster: listen on 127.0.0.1:" + busyPort + " for the verification callback: ",
			"\nhint: --verify-port " + busyPort + " is in use on 127.0.0.1: give a free port, or leave --verify-port out for any free one\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"register", "--service", "web", "--port", "8080"}, tc.extra...)
			out, errOut, code, _ := runCLI(t, env, args...)
			if code != 1 || out != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
			}
			for _, want := range tc.want {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr does not say %q:\n%s", want, errOut)
				}
			}
		})
	}
	help, _, _, _ := runCLI(t, nil, "register", "-h")
	if !strings.Contains(help, "the sidecar listens on it for the registry's callback, so it must be an address of this host") {
		t.Errorf("register -h does not say what --address must be:\n%s", help)
	}
}

// TestCLI_RegisterSidecarInterruptedUnregistered: Ctrl-C before the
// sidecar ever registered (the registry is down) ends it cleanly, without
// claiming to have deregistered anything.
func TestCLI_RegisterSidecarInterruptedUnregistered(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	env := map[string]string{"MUSTER_ADDR": "http://" + addr, "MUSTER_KEY": "mk_" + strings.Repeat("x", 40)}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"register", "--service", "legacy", "--address", "127.0.0.1", "--port", "8080"},
			func(k string) string { return env[k] }, &out, &errOut)
	}()
	time.Sleep(500 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("register: %v\n%s", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sidecar did not stop")
	}
	if out.String() != "" {
		t.Fatalf("stdout %q, want nothing: it never registered", out.String())
	}
	if !strings.Contains(errOut.String(), "registration failed; retrying") {
		t.Fatalf("it did not try:\n%s", errOut.String())
	}
}

// TestCLI_Health: muster health exits 0 while the registry answers 200,
// and 1 when nothing listens.
func TestCLI_Health(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	for args, want := range map[string]string{"health": "ok\n", "health --ready": "ready\n"} {
		out, errOut, code, err := runCLI(t, map[string]string{"MUSTER_ADDR": h.Srv.URL()}, strings.Fields(args)...)
		if err != nil || code != 0 || out != want {
			t.Errorf("muster %s: %q, exit %d, %v\n%s", args, out, code, err, errOut)
		}
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	if out, errOut, code, _ := runCLI(t, map[string]string{"MUSTER_ADDR": "http://" + addr}, "health"); code != 1 || out != "" || !strings.HasPrefix(errOut, "muster: health: ") {
		t.Errorf("muster health with nothing listening: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// hungURL returns the URL of a server that is hung as a SIGSTOPped
// process is: the kernel accepts connections, nothing answers them.
func hungURL(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	conns := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	return "http://" + ln.Addr().String()
}

// TestCLI_HealthSeveralServers: muster health gives each server of
// MUSTER_ADDR a bounded turn, so that a hung server first does not hold
// up a healthy one, and when none is healthy the error names each server
// and why.
func TestCLI_HealthSeveralServers(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	hung := hungURL(t)
	start := time.Now()
	out, errOut, code, err := runCLI(t, map[string]string{"MUSTER_ADDR": hung + "," + h.Srv.URL()}, "health", "--ready", "--timeout", "10s")
	if took := time.Since(start); code != 0 || out != "ready\n" || took > 3*time.Second {
		t.Errorf("health --ready with a hung server first: %q, exit %d, %v after %s\n%s", out, code, err, took, errOut)
	}

	dead := deadURL(t)
	start = time.Now()
	out, errOut, code, err = runCLI(t, map[string]string{"MUSTER_ADDR": hung + "," + dead}, "health", "--ready", "--timeout", "3s")
	if took := time.Since(start); code != 1 || out != "" || took > 5*time.Second {
		t.Fatalf("health with a hung and a dead server: %q, exit %d, %v after %s", out, code, err, took)
	}
	for _, want := range []string{"muster: health: no server answered 200 within 3s: ", hung + "/readyz: no answer within 1s",
		dead + "/readyz: dial tcp", "connection refused"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("the error does not say %q:\n%s", want, errOut)
		}
	}
	// The default --timeout, 2 s, leaves each of three servers its turn.
	out, errOut, code, _ = runCLI(t, map[string]string{"MUSTER_ADDR": hung + "," + hungURL(t) + "," + h.Srv.URL()}, "health")
	if code != 0 || out != "ok\n" {
		t.Errorf("health (2 s) with two hung servers before a good one: %q, exit %d\n%s", out, code, errOut)
	}
}

// deadURL returns the URL of a port nothing listens on.
func deadURL(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

// TestCLI_ClientsSkipHungServer: the CLI's commands, reads and a POST
// alike, go past a hung server first in MUSTER_ADDR within the client's
// probe (1 s), not its 30 s timeout.
func TestCLI_ClientsSkipHungServer(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	env := map[string]string{"MUSTER_ADDR": hungURL(t) + "," + h.Srv.URL(), "MUSTER_TOKEN": h.AdminToken(t)}
	for _, args := range [][]string{
		{"keys", "create", "--service", "web", "-o", "id"},
		{"lookup", "web"},
		{"services"},
		{"keys", "list"},
	} {
		start := time.Now()
		out, errOut, code, err := runCLI(t, env, args...)
		if took := time.Since(start); code != 0 || took > 5*time.Second {
			t.Errorf("muster %s with a hung server first: %q, exit %d, %v after %s\n%s", strings.Join(args, " "), out, code, err, took, errOut)
		}
	}
}

// TestReport_AnsweredErrors: the CLI says what to do in its own terms (a
// flag, not the API's ?stale), and asks whether a registry is running
// only when none answered.
func TestReport_AnsweredErrors(t *testing.T) {
	// A follower cut off from its leader answers default reads so (the
	// registry's own words).
	stale := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"unavailable","message":"this server has not heard from a leader recently, so its answer may be behind; retry, ask another server, or add ?stale to accept it"}}`))
	}))
	defer stale.Close()
	dead := deadURL(t)
	for _, tc := range []struct {
		addr string
		args []string
		want []string // in stderr
		not  []string // not in stderr
	}{
		{stale.URL, []string{"lookup", "web"}, []string{"add --stale to accept it"}, []string{"?stale", "hint:"}},
		{stale.URL + "," + stale.URL, []string{"lookup", "web"}, []string{"add --stale to accept it"}, []string{"?stale", "hint:"}},
		{stale.URL, []string{"services"}, []string{"muster lookup NAME --stale"}, []string{"?stale", "hint:"}},
		{dead, []string{"services"}, []string{"hint: is a registry running at " + dead + "?"}, nil},
		{dead + "," + deadURL(t), []string{"services"}, []string{"hint: is a registry running at " + dead}, nil},
	} {
		_, errOut, code, _ := runCLI(t, map[string]string{"MUSTER_ADDR": tc.addr}, tc.args...)
		if code != 1 {
			t.Errorf("muster %s: exit %d", strings.Join(tc.args, " "), code)
		}
		for _, want := range tc.want {
			if !strings.Contains(errOut, want) {
				t.Errorf("muster %s at %s: stderr does not say %q:\n%s", strings.Join(tc.args, " "), tc.addr, want, errOut)
			}
		}
		for _, not := range tc.not {
			if strings.Contains(errOut, not) {
				t.Errorf("muster %s at %s: stderr says %q:\n%s", strings.Join(tc.args, " "), tc.addr, not, errOut)
			}
		}
	}
}

// TestCLI_MembersOutput: muster members lists the members sorted by ID,
// shows "-" for what the answering server does not know of an
// unreachable member, and says so when the answering server is not in
// the configuration it reports.
func TestCLI_MembersOutput(t *testing.T) {
	answer := `{"node":"n2","members":[
		{"id":"n3","raft_addr":"127.0.0.3:9001","http_addr":"127.0.0.3:9000","suffrage":"voter","state":"unreachable","last_contact_ms":-1,"error":"timeout"},
		{"id":"n1","raft_addr":"127.0.0.1:9001","http_addr":"127.0.0.1:9000","suffrage":"voter","state":"follower","term":4,"applied_index":41,"last_contact_ms":12},
		{"id":"n2","raft_addr":"127.0.0.2:9001","http_addr":"127.0.0.2:9000","suffrage":"voter","state":"leader","term":4,"applied_index":41,"last_contact_ms":0}]}`
	var body atomic.Value
	body.Store(answer)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body.Load().(string)))
	}))
	defer srv.Close()
	env := map[string]string{"MUSTER_ADDR": srv.URL}
	if out, _, code, err := runCLI(t, env, "members", "-o", "id"); code != 0 || out != "n1\nn2\nn3\n" {
		t.Errorf("members -o id: %q, exit %d, %v; want them sorted", out, code, err)
	}
	out, _, code, err := runCLI(t, env, "members")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[1], "n1 ") || !strings.HasPrefix(lines[3], "n3 ") ||
		!strings.Contains(lines[2], "leader (answered)") || !strings.HasSuffix(lines[3], "-        -") ||
		!strings.HasSuffix(lines[2], "41       4") || strings.Contains(out, " 0 ") {
		t.Errorf("members: exit %d, %v:\n%s", code, err, out)
	}

	// n2 was removed: it answers with the configuration it last knew.
	body.Store(strings.Replace(answer, `"node":"n2"`, `"node":"n9"`, 1))
	out, errOut, code, err := runCLI(t, env, "members")
	if code != 0 || strings.Contains(out, "(answered)") || !strings.Contains(out, "n9, the server that answered, is not in the configuration it reports") {
		t.Errorf("members answered by a removed server: exit %d, %v:\n%s", code, err, out)
	}
	out, errOut, code, _ = runCLI(t, env, "members", "-o", "id")
	if code != 0 || out != "n1\nn2\nn3\n" || !strings.Contains(errOut, "n9, the server that answered, is not in the configuration") {
		t.Errorf("members -o id answered by a removed server: %q, stderr %q, exit %d", out, errOut, code)
	}
}

// TestCLI_LookupEmptyNote: a lookup whose table is empty says why on
// stderr (no such service, the instances' other statuses, the filters)
// and still exits 0; -o id and json stay silent for scripts.
func TestCLI_LookupEmptyNote(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	env := map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": h.AdminToken(t)}
	const header = "ID  URL  STATUS  LAST SEEN  QUALITY  TAGS  META\n"
	lookup := func(want string, args ...string) {
		t.Helper()
		out, errOut, code, err := runCLI(t, env, append([]string{"lookup"}, args...)...)
		if code != 0 || err != nil || out != header || errOut != want {
			t.Errorf("muster lookup %s: exit %d, %v\nstdout %q\nstderr %q\nwant only the header, and %q",
				strings.Join(args, " "), code, err, out, errOut, want)
		}
	}
	lookup("muster: no service named nosuch (muster services lists the services)\n", "nosuch")

	k := h.Key(t, "web")
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(context.Background(), "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), Tags: []string{"v1"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	lookup("muster: no instance of web, of any status, has the --tag and --meta given\n", "web", "--tag", "v2")
	lookup("muster: no critical instances of web (1 passing, 0 draining; --status any shows them)\n", "web", "--status", "critical")
	if _, err := h.Admin.Drain(context.Background(), reg.ID, ""); err != nil {
		t.Fatal(err)
	}
	lookup("muster: no passing instances of web (1 draining, 0 critical; --status any shows them)\n", "web")
	lookup("muster: no passing instances of web with the --tag and --meta given (1 draining, 0 critical; --status any shows them)\n",
		"web", "--tag", "v1")
	lookup("muster: no instance of web has the --tag and --meta given\n", "web", "--status", "any", "--meta", "zone=a")
	for _, args := range [][]string{{"web", "-o", "id"}, {"nosuch", "-o", "id"}} {
		if out, errOut, code, _ := runCLI(t, env, append([]string{"lookup"}, args...)...); out != "" || errOut != "" || code != 0 {
			t.Errorf("muster lookup %s: exit %d, stdout %q, stderr %q; want nothing at all", strings.Join(args, " "), code, out, errOut)
		}
	}
	if out, errOut, _, _ := runCLI(t, env, "lookup", "web", "-o", "json"); errOut != "" || !strings.Contains(out, `"instances": []`) {
		t.Errorf("muster lookup web -o json: stdout %s, stderr %q", out, errOut)
	}
	if err := h.Admin.Deregister(context.Background(), reg.ID, ""); err != nil {
		t.Fatal(err)
	}
	lookup("muster: web has no instances now\n", "web")
	lookup("muster: web has no instances now\n", "web", "--status", "any")

	if help, _, _, _ := runCLI(t, nil, "lookup", "-h"); !strings.Contains(help, "The exit status is 0 all the same") {
		t.Errorf("lookup -h does not say how an empty answer exits:\n%s", help)
	}
}

// TestCLI_KeysRevokeSeveral: keys revoke takes several IDs, as
// `muster keys revoke $(muster keys list -o id)` gives it: it revokes
// each it can, says which it could not and why, and exits 1 if any
// failed, having tried the rest; a refused admin token stops it at the
// first, naming those not tried.
func TestCLI_KeysRevokeSeveral(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	env := map[string]string{"MUSTER_ADDR": h.Srv.URL(), "MUSTER_TOKEN": h.AdminToken(t)}
	a, b, c := h.Key(t, "a"), h.Key(t, "b"), h.Key(t, "c")
	const unknown = "key_0123456789abcdef"

	out, errOut, code, err := runCLI(t, env, "keys", "revoke", a.ID, unknown, b.ID, a.ID)
	if code != 1 || out != "revoked "+a.ID+"\nrevoked "+b.ID+"\n" || !errors.Is(err, client.ErrNotFound) ||
		!strings.HasPrefix(errOut, "muster: "+unknown+": revoke key: not found") ||
		!strings.HasSuffix(errOut, "\nmuster: revoked 2 of 3 keys; not revoked: "+unknown+" (why is above)\n") {
		t.Errorf("keys revoke with an unknown ID among them: exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, out, errOut)
	}
	if got, _, _, _ := runCLI(t, env, "keys", "list", "-o", "id"); got != c.ID+"\n" {
		t.Fatalf("keys left: %q, want only %s", got, c.ID)
	}

	// As the README does it.
	d := h.Key(t, "d")
	ids, _, _, _ := runCLI(t, env, "keys", "list", "-o", "id")
	out, errOut, code, err = runCLI(t, env, append([]string{"keys", "revoke"}, strings.Fields(ids)...)...)
	if code != 0 || !strings.Contains(out, "revoked "+c.ID+"\n") || !strings.Contains(out, "revoked "+d.ID+"\n") || errOut != "" {
		t.Errorf("keys revoke $(keys list -o id): exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, out, errOut)
	}

	// No admin token: every revocation would be refused alike.
	e, f := h.Key(t, "e"), h.Key(t, "f")
	out, errOut, code, err = runCLI(t, map[string]string{"MUSTER_ADDR": h.Srv.URL()}, "keys", "revoke", e.ID, f.ID, unknown)
	if code != 1 || out != "" || !errors.Is(err, client.ErrUnauthorized) || strings.Count(errOut, "muster: ") != 1 ||
		!strings.Contains(errOut, "muster: "+e.ID+": revoke key: ") ||
		!strings.Contains(errOut, "; not tried, as the registry would refuse them alike: "+f.ID+", "+unknown+"\n") ||
		!strings.Contains(errOut, "\nhint: set MUSTER_TOKEN") {
		t.Errorf("keys revoke without a token: exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, out, errOut)
	}

	// One ID fails as it always did: the registry's error, once.
	_, errOut, code, err = runCLI(t, env, "keys", "revoke", unknown)
	if code != 1 || !errors.Is(err, client.ErrNotFound) || strings.Count(errOut, "muster: ") != 1 || strings.Contains(errOut, "revoked") {
		t.Errorf("keys revoke of one unknown ID: exit %d, %v\nstderr:\n%s", code, err, errOut)
	}
}
