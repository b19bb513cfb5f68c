package presubmit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The files under deploy/ are not Go, so no compiler checks them: these
// tests parse them and hold them to what the binary and the README say.
// Where systemd-analyze, hadolint or a Docker daemon is installed, they
// also run it on the files; elsewhere they say what they skipped.
const (
	dockerfilePath = "../../deploy/Dockerfile"
	unitPath       = "../../deploy/muster.service"
	releaseScript  = "../../scripts/release"
)

// release is the host's muster as scripts/release builds it, built once
// for the tests that run the binary.
var release struct {
	once    sync.Once
	dir     string // MUSTER_DIST: the binary and SHA256SUMS
	version string // stamped in
	bin     string
	out     string // what the script printed
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if release.dir != "" {
		os.RemoveAll(release.dir)
	}
	os.Exit(code)
}

// hostRelease runs the README's `scripts/release VERSION` for this
// machine's target only (MUSTER_RELEASE_TARGETS=host) into a temporary
// dist directory, and returns the binary. The four default targets build
// the same way; the test does not spend the time on the other three.
func hostRelease(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: builds muster with scripts/release")
	}
	args := readmeRelease(tb) // before Do: a Fatal inside it would leave the Once done and no binary
	release.once.Do(func() {
		release.version = args[0]
		release.dir, release.err = os.MkdirTemp("", "muster-release-")
		if release.err != nil {
			return
		}
		cmd := exec.Command(releaseScript, args...)
		cmd.Env = append(os.Environ(), "MUSTER_RELEASE_TARGETS=host", "MUSTER_DIST="+release.dir)
		out, err := cmd.CombinedOutput()
		release.out = string(out)
		if err != nil {
			release.err = fmt.Errorf("%s %s: %v\n%s", releaseScript, strings.Join(args, " "), err, out)
			return
		}
		release.bin = filepath.Join(release.dir, fmt.Sprintf("muster-%s-%s-%s", release.version, runtime.GOOS, runtime.GOARCH))
	})
	if release.err != nil {
		tb.Fatal(release.err)
	}
	return release.bin
}

// readmeRelease returns the arguments of the README's release command.
func readmeRelease(tb testing.TB) []string {
	tb.Helper()
	for _, c := range readmeDeployCommands(tb) {
		if len(c) >= 1 && c[0] == "scripts/release" {
			if len(c) != 2 {
				tb.Fatalf("the README's release command %q should name one version", c)
			}
			return c[1:]
		}
	}
	tb.Fatal("the README's Deploy section shows no scripts/release command")
	return nil
}

// TestRelease_HostTarget: scripts/release builds a static binary that
// says the version it was given, named as the README says, and
// SHA256SUMS holds its sum.
func TestRelease_HostTarget(t *testing.T) {
	bin := hostRelease(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	if !strings.Contains(string(out), release.version) {
		t.Errorf("`muster version` says %q, want the stamped %q", out, release.version)
	}

	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	sums, err := os.ReadFile(filepath.Join(release.dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(sum[:]) + "  " + filepath.Base(bin) + "\n"; string(sums) != want {
		t.Errorf("SHA256SUMS = %q, want %q", sums, want)
	}
	if _, err := exec.LookPath("sha256sum"); err == nil { // the README's check
		cmd := exec.Command("sha256sum", "-c", "SHA256SUMS")
		cmd.Dir = release.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c SHA256SUMS: %v\n%s", err, out)
		}
	}

	if runtime.GOOS == "linux" {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is dynamically linked (%v); the release is static (CGO_ENABLED=0)", bin, p.Type)
			}
		}
	}
}

// TestRelease_Targets: without MUSTER_RELEASE_TARGETS the script builds
// linux and darwin on amd64 and arm64, with the flags the Dockerfile uses
// too, and dist/ is ignored by git.
func TestRelease_Targets(t *testing.T) {
	b, err := os.ReadFile(releaseScript)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^targets=\$\{MUSTER_RELEASE_TARGETS:-([^}]*)\}$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("scripts/release: no line targets=${MUSTER_RELEASE_TARGETS:-...}")
	}
	got := strings.Fields(string(m[1]))
	slices.Sort(got)
	if want := []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64"}; !slices.Equal(got, want) {
		t.Errorf("scripts/release builds %v by default, want %v", got, want)
	}
	for _, s := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=$version"} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("scripts/release does not build with %s", s)
		}
	}
	ignore, err := os.ReadFile("../../.gitignore")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Fields(string(ignore)), "/dist/") {
		t.Error(".gitignore does not ignore /dist/, where scripts/release writes")
	}
}

// serverFlags returns the long flags `muster server -h` lists, in the
// flag package's format ("  -name") or pflag's ("  -n, --name").
func serverFlags(tb testing.TB, bin string) map[string]bool {
	tb.Helper()
	out, _ := exec.Command(bin, "server", "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--?([a-z][a-z-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 5 {
		tb.Fatalf("could not read the flags from `muster server -h`:\n%s", out)
	}
	return flags
}

// checkServerArgs reports whether args, after `muster server`, are flags
// that `muster server` has, each with its value.
func checkServerArgs(tb testing.TB, what string, args []string, flags map[string]bool) {
	tb.Helper()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			tb.Errorf("%s: %q is not a flag; muster server takes no arguments", what, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !flags[name] {
			tb.Errorf("%s: muster server has no flag --%s", what, name)
		}
		if !hasValue && name != "force-new-cluster" && name != "seed-compat" {
			i++ // its value
		}
	}
}

// A dockerInstr is one instruction of a Dockerfile: its keyword, upper
// case, and the rest of its logical line.
type dockerInstr struct {
	line int
	cmd  string
	args string
}

// dockerInstructions are the Dockerfile reference's instructions.
var dockerInstructions = []string{"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
	"LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

// parseDockerfile splits a Dockerfile into instructions: comment lines
// (and parser directives) are dropped, a line ending in a backslash goes
// on on the next one.
func parseDockerfile(tb testing.TB, text string) []dockerInstr {
	tb.Helper()
	var out []dockerInstr
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, dockerInstr{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		tb.Errorf("Dockerfile ends inside a continued line: %q", cur.String())
	}
	return out
}

// execForm parses an instruction's JSON exec form.
func execForm(tb testing.TB, in dockerInstr) []string {
	tb.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(in.args), &argv); err != nil || len(argv) == 0 {
		tb.Errorf("Dockerfile:%d: %s %s: want the exec form, a JSON array", in.line, in.cmd, in.args)
	}
	return argv
}

// dockerImage is what the test reads from the Dockerfile's final stage.
type dockerImage struct {
	buildFrom   string   // the first FROM's image
	buildRun    []string // the build stages' RUN lines
	user        string
	volumes     []string
	env         map[string]string
	expose      []string
	healthcheck []string // its CMD's argv
	entrypoint  []string
	cmd         []string
	copies      []string // COPY lines of the final stage
}

func readDockerfile(tb testing.TB) dockerImage {
	tb.Helper()
	b, err := os.ReadFile(dockerfilePath)
	if err != nil {
		tb.Fatal(err)
	}
	img := dockerImage{env: map[string]string{}}
	froms := 0
	instrs := parseDockerfile(tb, string(b))
	final := 0
	for i, in := range instrs {
		if in.cmd == "FROM" {
			final = i
		}
	}
	for i, in := range instrs {
		if !slices.Contains(dockerInstructions, in.cmd) {
			tb.Errorf("Dockerfile:%d: unknown instruction %s", in.line, in.cmd)
			continue
		}
		if in.cmd == "FROM" {
			froms++
			if froms == 1 {
				f := strings.Fields(in.args)
				for len(f) > 0 && strings.HasPrefix(f[0], "--") {
					f = f[1:]
				}
				if len(f) > 0 {
					img.buildFrom = f[0]
				}
			}
			continue
		}
		if i < final {
			if in.cmd == "RUN" {
				img.buildRun = append(img.buildRun, in.args)
			}
			continue
		}
		switch in.cmd {
		case "USER":
			img.user = in.args
		case "VOLUME":
			if strings.HasPrefix(in.args, "[") {
				img.volumes = append(img.volumes, execForm(tb, in)...)
			} else {
				img.volumes = append(img.volumes, strings.Fields(in.args)...)
			}
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || strings.ContainsAny(v, `"'`) {
					tb.Errorf("Dockerfile:%d: ENV %s: the test reads KEY=VALUE pairs without quotes", in.line, in.args)
				}
				img.env[k] = v
			}
		case "EXPOSE":
			img.expose = append(img.expose, strings.Fields(in.args)...)
		case "HEALTHCHECK":
			_, cmd, ok := strings.Cut(" "+in.args, " CMD ")
			if !ok {
				tb.Errorf("Dockerfile:%d: HEALTHCHECK %s has no CMD", in.line, in.args)
				continue
			}
			img.healthcheck = execForm(tb, dockerInstr{in.line, "HEALTHCHECK CMD", strings.TrimSpace(cmd)})
		case "ENTRYPOINT":
			img.entrypoint = execForm(tb, in)
		case "CMD":
			img.cmd = execForm(tb, in)
		case "COPY":
			img.copies = append(img.copies, in.args)
		}
	}
	if froms < 2 {
		tb.Errorf("Dockerfile has %d stages; want a build stage and a runtime stage", froms)
	}
	return img
}

// goModVersion returns the go directive of go.mod, major.minor.
func goModVersion(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		tb.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		tb.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// TestDockerfile: the image is built as the release is (static, trimmed,
// version stamped) with the Go that go.mod asks for, runs `muster server`
// as a user other than root with its data dir in a volume, listens on
// the exposed port, and has a health check.
func TestDockerfile(t *testing.T) {
	img := readDockerfile(t)

	if want := "golang:" + goModVersion(t); img.buildFrom != want && !strings.HasPrefix(img.buildFrom, want+"-") && !strings.HasPrefix(img.buildFrom, want+".") {
		t.Errorf("the build stage is FROM %s; go.mod asks for %s", img.buildFrom, want)
	}
	build := strings.Join(img.buildRun, "\n")
	for _, s := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=", "./cmd/muster"} {
		if !strings.Contains(build, s) {
			t.Errorf("the build stage does not build ./cmd/muster with %s", s)
		}
	}

	uid, _, _ := strings.Cut(img.user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("the image runs as USER %q; want a user other than root", img.user)
	}

	// The command: muster server, its data dir the volume.
	argv := append(slices.Clone(img.entrypoint), img.cmd...)
	if len(argv) < 2 || filepath.Base(argv[0]) != "muster" || argv[1] != "server" {
		t.Fatalf("the image runs %q; want muster server", argv)
	}
	binary := argv[0]
	copied := false
	for _, c := range img.copies {
		if f := strings.Fields(c); len(f) > 0 && f[len(f)-1] == binary {
			copied = true
		}
	}
	if !copied {
		t.Errorf("the final stage does not COPY the binary to %s", binary)
	}
	dataDir := img.env["MUSTER_DATA_DIR"]
	if i := slices.Index(argv, "--data-dir"); i > 0 && i+1 < len(argv) {
		dataDir = argv[i+1]
	}
	if dataDir == "" || !slices.Contains(img.volumes, dataDir) {
		t.Errorf("the data dir is %q, volumes %q: the data dir should be a VOLUME", dataDir, img.volumes)
	}

	// The API listens on every interface, on the exposed port, and the
	// CLI in the container (the health check) reaches it there.
	httpAddr := img.env["MUSTER_HTTP_ADDR"]
	if i := slices.Index(argv, "--http-addr"); i > 0 && i+1 < len(argv) {
		httpAddr = argv[i+1]
	}
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil || host != "0.0.0.0" {
		t.Errorf("the API listens on %q; in a container it should listen on 0.0.0.0:PORT", httpAddr)
	}
	if !slices.Contains(img.expose, port) {
		t.Errorf("the API listens on port %q but the image EXPOSEs %q", port, img.expose)
	}
	if want := "http://127.0.0.1:" + port; img.env["MUSTER_ADDR"] != want {
		t.Errorf("ENV MUSTER_ADDR = %q, want %q, where the health check and the CLI find the API", img.env["MUSTER_ADDR"], want)
	}

	if len(img.healthcheck) < 2 || img.healthcheck[0] != binary {
		t.Errorf("HEALTHCHECK runs %q; want %s itself (the image has no curl or wget)", img.healthcheck, binary)
	}
	if t.Failed() {
		return
	}
	if !testing.Short() {
		checkServerArgs(t, "the image's command", argv[2:], serverFlags(t, hostRelease(t)))
	}
}

// TestDockerfile_HealthcheckRuns: the image's health check, run with
// this machine's muster, passes against a live server and fails against
// none, so an unhealthy container is reported as such.
func TestDockerfile_HealthcheckRuns(t *testing.T) {
	img := readDockerfile(t)
	if len(img.healthcheck) < 2 {
		t.Fatalf("no HEALTHCHECK CMD: %q", img.healthcheck)
	}
	bin := hostRelease(t)
	url := startServer(t, bin)
	check := func(addr string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, img.healthcheck[1:]...)
		cmd.Env = append(os.Environ(), "MUSTER_ADDR="+addr)
		return cmd.CombinedOutput()
	}
	out, err := check(url)
	if err != nil {
		hint := ""
		if strings.Contains(string(out), "unknown command") {
			hint = "\ncmd/muster has no such command yet: the Dockerfile's HEALTHCHECK needs `muster health` (GET $MUSTER_ADDR/livez, exit 0 on 200, 1 otherwise)"
		}
		t.Fatalf("the health check %q against a live server: %v\n%s%s", img.healthcheck, err, out, hint)
	}
	if out, err := check("http://" + closedAddr(t)); err == nil {
		t.Fatalf("the health check %q passed with no server listening:\n%s", img.healthcheck, out)
	}
}

// startServer runs `bin server` on a free port over a temporary data dir
// until the test ends, and returns its URL once it listens.
func startServer(tb testing.TB, bin string) string {
	tb.Helper()
	cmd := exec.Command(bin, "server", "--data-dir", filepath.Join(tb.TempDir(), "data"),
		"--http-addr", "127.0.0.1:0", "--log-format", "json")
	cmd.Env = append(os.Environ(), "MUSTER_ADMIN_TOKEN=presubmit-admin-token-0123456789")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "muster listening" {
				if u, ok := rec["url"].(string); ok {
					urls <- u
				}
			}
		}
	}()
	select {
	case u := <-urls:
		return u
	case <-time.After(30 * time.Second):
		tb.Fatal("muster server did not log `muster listening` within 30s")
		return ""
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestDockerfile_Tools: hadolint and docker build --check, where they
// are installed, find nothing wrong.
func TestDockerfile_Tools(t *testing.T) {
	t.Run("hadolint", func(t *testing.T) {
		if _, err := exec.LookPath("hadolint"); err != nil {
			t.Skip("hadolint is not installed")
		}
		if out, err := exec.Command("hadolint", dockerfilePath).CombinedOutput(); err != nil {
			t.Fatalf("hadolint: %v\n%s", err, out)
		}
	})
	t.Run("docker build --check", func(t *testing.T) {
		if _, err := exec.LookPath("docker"); err != nil {
			t.Skip("docker is not installed")
		}
		if err := exec.Command("docker", "buildx", "version").Run(); err != nil {
			t.Skip("docker has no buildx, which --check needs")
		}
		if err := exec.Command("docker", "info").Run(); err != nil {
			t.Skip("no Docker daemon answers")
		}
		cmd := exec.Command("docker", "build", "--check", "-f", "deploy/Dockerfile", ".")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker build --check: %v\n%s", err, out)
		}
	})
}

// A unitKey is one assignment of a systemd unit file.
type unitKey struct {
	line    int
	section string
	key     string
	value   string
}

// unitKeys are the settings the unit may use, by section: a misspelt
// key would be ignored by systemd with only a warning in the journal. A
// real key that is missing here goes in this list.
var unitKeys = map[string][]string{
	"Unit": {"Description", "Documentation", "After", "Before", "Wants", "Requires", "BindsTo", "PartOf",
		"Conflicts", "StartLimitIntervalSec", "StartLimitBurst", "ConditionPathExists", "AssertPathExists"},
	"Service": {"Type", "ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop", "Restart", "RestartSec",
		"TimeoutStartSec", "TimeoutStopSec", "KillSignal", "KillMode", "SuccessExitStatus", "RestartPreventExitStatus",
		"User", "Group", "DynamicUser", "SupplementaryGroups", "WorkingDirectory",
		"StateDirectory", "StateDirectoryMode", "RuntimeDirectory", "RuntimeDirectoryMode", "CacheDirectory",
		"LogsDirectory", "ConfigurationDirectory", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "UMask",
		"Environment", "EnvironmentFile", "LoadCredential", "SetCredential",
		"NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "RestrictSUIDSGID", "LockPersonality",
		"MemoryDenyWriteExecute", "RestrictRealtime", "RestrictNamespaces", "ProtectSystem", "ProtectHome",
		"PrivateTmp", "PrivateDevices", "PrivateMounts", "PrivateUsers", "PrivateNetwork", "PrivateIPC",
		"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
		"ProtectHostname", "ProtectProc", "ProcSubset", "RemoveIPC", "KeyringMode", "DevicePolicy", "DeviceAllow",
		"RestrictAddressFamilies", "IPAddressAllow", "IPAddressDeny", "SocketBindAllow", "SocketBindDeny",
		"SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
		"LimitNOFILE", "LimitNPROC", "LimitCORE", "TasksMax", "MemoryMax", "MemoryHigh", "CPUQuota",
		"StandardOutput", "StandardError", "SyslogIdentifier", "LogLevelMax", "OOMPolicy", "OOMScoreAdjust"},
	"Install": {"WantedBy", "RequiredBy", "Alias", "Also"},
}

// parseUnit reads a unit file's assignments; comments start with # or ;.
func parseUnit(tb testing.TB, text string) []unitKey {
	tb.Helper()
	var out []unitKey
	section := ""
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		n := i + 1
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(lines[i])
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if _, ok := unitKeys[section]; !ok {
				tb.Errorf("muster.service:%d: unknown section [%s]", n, section)
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				tb.Errorf("muster.service:%d: %q is not Key=Value inside a section", n, line)
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !slices.Contains(unitKeys[section], k) {
				tb.Errorf("muster.service:%d: unknown key %s in [%s]", n, k, section)
			}
			out = append(out, unitKey{n, section, k, v})
		}
	}
	return out
}

// unitValue returns the last value of key in section ("" if unset) and
// whether it was set.
func unitValue(keys []unitKey, section, key string) (string, bool) {
	v, set := "", false
	for _, k := range keys {
		if k.section == section && k.key == key {
			v, set = k.value, true
		}
	}
	return v, set
}

// TestUnit: deploy/muster.service runs `muster server` with its data in
// the unit's state directory, restarts it on failure, and keeps the
// hardening the README promises.
func TestUnit(t *testing.T) {
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	keys := parseUnit(t, string(b))

	start, _ := unitValue(keys, "Service", "ExecStart")
	argv := strings.Fields(start)
	if len(argv) < 2 || !filepath.IsAbs(argv[0]) || filepath.Base(argv[0]) != "muster" || argv[1] != "server" {
		t.Fatalf("ExecStart=%s; want /…/muster server", start)
	}
	if i := slices.Index(argv, "--data-dir"); i < 0 || i+1 >= len(argv) || argv[i+1] != "${STATE_DIRECTORY}" {
		t.Errorf("ExecStart=%s: want --data-dir ${STATE_DIRECTORY}", start)
	}
	if v, _ := unitValue(keys, "Service", "StateDirectory"); v != "muster" {
		t.Errorf("StateDirectory=%s, want muster (the README's /var/lib/muster)", v)
	}

	for _, want := range []struct{ key, value string }{
		{"Restart", "on-failure"},
		{"DynamicUser", "yes"},
		{"StateDirectoryMode", "0700"},
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"PrivateDevices", "yes"},
		{"CapabilityBoundingSet", ""},
		{"RestrictAddressFamilies", "AF_INET AF_INET6"},
		{"SystemCallArchitectures", "native"},
	} {
		if v, set := unitValue(keys, "Service", want.key); !set || v != want.value {
			t.Errorf("%s=%s (set: %v), want %s=%s", want.key, v, set, want.key, want.value)
		}
	}
	var filters []string
	for _, k := range keys {
		if k.key == "SystemCallFilter" {
			filters = append(filters, k.value)
		}
	}
	if !slices.Contains(filters, "@system-service") {
		t.Errorf("SystemCallFilter=%q: want @system-service among them", filters)
	}
	if v, _ := unitValue(keys, "Install", "WantedBy"); v != "multi-user.target" {
		t.Errorf("WantedBy=%s, want multi-user.target", v)
	}
	if !testing.Short() {
		checkServerArgs(t, "ExecStart", argv[2:], serverFlags(t, hostRelease(t)))
	}
}

// TestUnit_SystemdAnalyze: where systemd is installed, systemd-analyze
// verify accepts the unit without a warning (it warns about unknown keys
// and bad values, and exits 0), and its exposure score stays low. verify
// needs ExecStart's binary to exist, so it checks a copy pointing at the
// release binary.
func TestUnit_SystemdAnalyze(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed; TestUnit checks the unit's keys")
	}
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	bin := hostRelease(t)
	re := regexp.MustCompile(`(?m)^ExecStart=/\S+/muster `)
	if !re.Match(b) {
		t.Fatal("no ExecStart=/…/muster line")
	}
	copyPath := filepath.Join(t.TempDir(), "muster.service")
	if err := os.WriteFile(copyPath, re.ReplaceAll(b, []byte("ExecStart="+bin+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", copyPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure is 0 (locked down) to 10 (unprotected); --threshold takes
	// it times ten. The unit scores 1.1 ("OK").
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager", copyPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0, or an error: %v\n%s", err, out)
	}
}
