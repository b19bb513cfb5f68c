package presubmit

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeShell returns the commands of the README's ```sh blocks, each as
// its words, in the section whose heading is section ("" for the whole
// file). Comments are dropped and continued lines joined; words are split
// as the shell would for the simple quoting the README uses.
func readmeShell(tb testing.TB, section string) [][]string {
	tb.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		tb.Fatal(err)
	}
	in, block := section == "", false
	var cmds [][]string
	var cont string
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case section != "" && strings.HasPrefix(line, "## "):
			in = line == "## "+section
			continue
		case !in:
			continue
		case strings.HasPrefix(line, "```"):
			block = line == "```sh"
			continue
		case !block:
			continue
		}
		line = cont + line
		cont = ""
		if strings.HasSuffix(line, "\\") {
			cont = strings.TrimSuffix(line, "\\") + " "
			continue
		}
		if words := shellWords(tb, line); len(words) > 0 {
			cmds = append(cmds, words)
		}
	}
	return cmds
}

// shellWords splits a command line into words: blanks separate them,
// single and double quotes group them, and # starts a comment.
func shellWords(tb testing.TB, line string) []string {
	tb.Helper()
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '#' && !inWord:
			return words
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		tb.Errorf("README: unbalanced quote in %q", line)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// readmeDeployCommands returns the commands of the README's Deploy
// section.
func readmeDeployCommands(tb testing.TB) [][]string {
	tb.Helper()
	cmds := readmeShell(tb, "Deploy")
	if len(cmds) == 0 {
		tb.Fatal("the README has no ```sh commands under ## Deploy")
	}
	return cmds
}

// flagValue returns the value of the flag name in args (given as
// "name value" or "name=value") and the args without the flag.
func flagValue(args []string, name string) (string, []string) {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1], append(slices.Clone(args[:i]), args[i+2:]...)
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, append(slices.Clone(args[:i]), args[i+1:]...)
		}
	}
	return "", args
}

// TestREADME_Deploy: every command of the README's Deploy section is
// one this test knows, and agrees with the files it uses: the release
// command's version and names (TestRelease_HostTarget runs it), the
// unit's binary path, name and state directory, the Dockerfile's path,
// port and volume, and one container name and image tag throughout. The
// docker and systemctl commands need a daemon and root, so they are
// checked, not run.
func TestREADME_Deploy(t *testing.T) {
	unitText, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := parseUnit(t, string(unitText))
	start, _ := unitValue(unit, "Service", "ExecStart")
	unitBin := strings.Fields(start)[0]
	stateDir, _ := unitValue(unit, "Service", "StateDirectory")
	img := readDockerfile(t)

	var version, tag, container string
	seen := map[string]bool{}
	for _, c := range readmeDeployCommands(t) {
		line := strings.Join(c, " ")
		args := c
		if args[0] == "sudo" {
			args = args[1:]
		}
		switch {
		case args[0] == "scripts/release":
			if len(args) != 2 || !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`).MatchString(args[1]) {
				t.Errorf("%q: want scripts/release VERSION", line)
				continue
			}
			version = args[1]
			seen["release"] = true

		case len(args) == 5 && args[0] == "install" && args[1] == "-m" && strings.HasPrefix(args[3], "dist/"):
			m := regexp.MustCompile(`^dist/muster-(.+)-linux-(amd64|arm64)$`).FindStringSubmatch(args[3])
			if m == nil || m[1] != version {
				t.Errorf("%q installs %s; scripts/release %s writes dist/muster-%[3]s-linux-ARCH", line, args[3], version)
			}
			if args[2] != "0755" || args[4] != unitBin {
				t.Errorf("%q: want install -m 0755 … %s, the unit's ExecStart", line, unitBin)
			}
			seen["install binary"] = true

		case len(args) == 5 && args[0] == "install" && args[1] == "-m":
			if args[2] != "0644" || "../../"+args[3] != unitPath || args[4] != "/etc/systemd/system/"+filepath.Base(unitPath) {
				t.Errorf("%q: want install -m 0644 deploy/muster.service /etc/systemd/system/muster.service", line)
			}
			seen["install unit"] = true

		case slices.Equal(args, []string{"systemctl", "daemon-reload"}):
			seen["daemon-reload"] = true

		case len(args) == 4 && args[0] == "systemctl" && args[1] == "enable" && args[2] == "--now":
			if args[3] != strings.TrimSuffix(filepath.Base(unitPath), ".service") && args[3] != filepath.Base(unitPath) {
				t.Errorf("%q: the unit is %s", line, filepath.Base(unitPath))
			}
			seen["enable"] = true

		case len(args) == 2 && args[0] == "cat":
			if want := "/var/lib/" + stateDir + "/admin-token"; args[1] != want {
				t.Errorf("%q: the unit's admin token is %s", line, want)
			}
			seen["token"] = true

		case len(args) > 2 && args[0] == "docker" && args[1] == "build":
			rest := args[2:]
			var file string
			file, rest = flagValue(rest, "-f")
			tag, rest = flagValue(rest, "-t")
			for {
				var arg string
				if arg, rest = flagValue(rest, "--build-arg"); arg == "" {
					break
				}
				if !strings.HasPrefix(arg, "VERSION=") {
					t.Errorf("%q: the Dockerfile takes --build-arg VERSION only", line)
				}
			}
			if "../../"+file != dockerfilePath || tag == "" || !slices.Equal(rest, []string{"."}) {
				t.Errorf("%q: want docker build -f deploy/Dockerfile -t TAG . (the context is the repository's root)", line)
			}
			seen["docker build"] = true

		case len(args) > 2 && args[0] == "docker" && args[1] == "run":
			rest := args[2:]
			var publish, volume string
			container, rest = flagValue(rest, "--name")
			publish, rest = flagValue(rest, "-p")
			volume, rest = flagValue(rest, "-v")
			if i := slices.Index(rest, "-d"); i >= 0 {
				rest = slices.Delete(rest, i, i+1)
			}
			if len(rest) == 0 || rest[0] != tag {
				t.Errorf("%q: want the image built above, %q, after the flags", line, tag)
			} else if len(rest) > 1 {
				if rest[1] != "server" {
					t.Errorf("%q: the image's entrypoint is muster; its command is server", line)
				} else if !testing.Short() {
					checkServerArgs(t, line, rest[2:], serverFlags(t, hostRelease(t)))
				}
			}
			// -p 127.0.0.1:HOSTPORT:CONTAINERPORT: this host only, the port
			// the image listens on.
			hostIP, ports, _ := strings.Cut(publish, ":")
			_, containerPort, _ := strings.Cut(ports, ":")
			if net.ParseIP(hostIP) == nil || !net.ParseIP(hostIP).IsLoopback() || !slices.Contains(img.expose, containerPort) {
				t.Errorf("%q: want -p 127.0.0.1:PORT:%v, this host only", line, img.expose)
			}
			_, target, _ := strings.Cut(volume, ":")
			if !slices.Contains(img.volumes, target) {
				t.Errorf("%q mounts %q; the image's VOLUME is %v", line, target, img.volumes)
			}
			if container == "" {
				t.Errorf("%q: name the container (--name), as the commands after it do", line)
			}
			seen["docker run"] = true

		case len(args) == 4 && args[0] == "docker" && args[1] == "cp":
			name, path, _ := strings.Cut(args[2], ":")
			if name != container || !slices.Contains(img.volumes, filepath.Dir(path)) || filepath.Base(path) != "admin-token" {
				t.Errorf("%q: the admin token is %s:%v/admin-token", line, container, img.volumes)
			}
			seen["docker cp"] = true

		case len(args) == 5 && args[0] == "docker" && args[1] == "inspect" && args[2] == "--format":
			if args[3] != "{{.State.Health.Status}}" || args[4] != container {
				t.Errorf("%q: want docker inspect --format '{{.State.Health.Status}}' %s", line, container)
			}
			seen["docker inspect"] = true

		default:
			t.Errorf("the README's Deploy section shows %q, which no test checks", line)
		}
	}
	for _, want := range []string{"release", "install binary", "install unit", "daemon-reload", "enable", "token", "docker build", "docker run"} {
		if !seen[want] {
			t.Errorf("the README's Deploy section shows no %s command", want)
		}
	}
}
