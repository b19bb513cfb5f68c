package presubmit

import (
	"bufio"
	"bytes"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/musterhq/muster/"

// layers is which packages of this module each package may import (its
// non-test files; tests may import more). It is the architecture of
// docs/architecture.md, enforced: a package that is not listed, or an
// import that is not allowed, fails TestImports_Layers. A pattern ending
// in "/..." matches the packages under it.
//
// Read it bottom-up: catalog, random, durable and redact import nothing of ours;
// cluster, health and audit sit on the catalog; checks (active health checks)
// sits on verify's guard; registry holds the workflows over catalog,
// checks, health and verify; front ends (httpapi, seedapi) call the
// registry and never cluster, health or verify (dnsapi, the DNS front end,
// needs neither api nor httpapi); server assembles them all;
// cmd/muster and embedding programs use server.
var layers = map[string][]string{
	"api":    {},
	"client": {"api", "internal/pattern", "internal/tlsfiles"},
	// The gRPC resolver: the SDK and grpc-go, nothing else.
	"client/grpcresolver": {"client"},
	"client/grpcservice":  {"api", "client"},

	"internal/catalog":  {"internal/pattern"},
	"internal/pattern":  {},
	"internal/random":   {},
	"internal/durable":  {},
	"internal/redact":   {},
	"internal/tlsfiles": {"internal/durable"},
	"internal/cluster":  {"internal/catalog", "internal/durable", "internal/random"},
	"internal/audit":    {"internal/catalog", "internal/durable", "internal/redact"},
	"internal/health":   {"internal/catalog"},
	"internal/verify":   {"api", "internal/redact"},
	"internal/checks":   {"api", "internal/verify"},
	"internal/registry": {"api", "internal/audit", "internal/catalog", "internal/checks", "internal/health", "internal/random", "internal/redact", "internal/tlsfiles", "internal/verify"},
	"internal/httpapi":  {"api", "internal/audit", "internal/catalog", "internal/redact", "internal/registry"},
	"internal/seedapi":  {"api", "internal/audit", "internal/catalog", "internal/httpapi", "internal/registry"},
	"internal/dnsapi":   {"internal/catalog", "internal/registry"},
	// The Consul-compatible front end writes its errors as /v1 does.
	"internal/consulapi": {"api", "internal/catalog", "internal/httpapi", "internal/registry"},
	"internal/console":   {"api", "internal/audit", "internal/catalog", "internal/health", "internal/httpapi", "internal/registry"},
	// telemetry holds the Prometheus registry and instruments; it
	// imports nothing of ours (the server feeds it).
	"internal/telemetry": {},
	// leanhttp answers plain heartbeats on the API's listener; it knows
	// net/http only (the server gives it the handler and the route).
	"internal/leanhttp": {},
	"internal/server": {"api", "internal/audit", "internal/catalog", "internal/checks", "internal/cluster", "internal/console", "internal/consulapi", "internal/dnsapi", "internal/durable", "internal/health",
		"internal/httpapi", "internal/leanhttp", "internal/random", "internal/redact", "internal/registry", "internal/seedapi", "internal/telemetry", "internal/tlsfiles", "internal/verify"},

	// Test helpers (imported only by _test files).
	"internal/testutil":   {"api"},
	"internal/testserver": {"api", "client", "internal/cluster", "internal/server", "internal/testutil"},
	"internal/presubmit":  {},

	// The benchmark suite runs the server as a child process, so it
	// never imports internal/server: what it measures is the binary.
	"internal/bench": {"api", "client", "internal/verify"},

	"cmd/muster": {"api", "client", "internal/audit", "internal/bench", "internal/checks", "internal/durable", "internal/registry", "internal/server", "internal/tlsfiles", "internal/verify"},

	// The examples use the SDK only; the demo command also embeds a
	// registry, as any program may through internal/server.
	"examples/wordcloud/cmd/demo": {"api", "client", "examples/wordcloud/...", "internal/durable", "internal/server"},
	"examples/wordcloud/...":      {"api", "client", "examples/wordcloud/..."},
	"examples/grpc":               {"client", "client/grpcresolver", "client/grpcservice"},
}

// thirdParty is which packages may import each module outside the
// standard library. Raft and its storage stay inside internal/cluster.
var thirdParty = map[string][]string{
	"github.com/hashicorp/raft":         {"internal/cluster"},
	"github.com/hashicorp/raft-boltdb/": {"internal/cluster"},
	"github.com/hashicorp/go-hclog":     {"internal/cluster"},
	"go.etcd.io/bbolt":                  {"internal/cluster"},
	// Metrics: client_golang, and go-metrics for Raft's own (its
	// Prometheus sink), in internal/telemetry alone.
	"github.com/prometheus/client_golang": {"internal/telemetry"},
	"github.com/armon/go-metrics":         {"internal/telemetry"},
	"golang.org/x/net/html":               {"examples/wordcloud/..."},
	"github.com/spf13/cobra":              {"cmd/muster"},
	"github.com/spf13/pflag":              {"cmd/muster"},
	"github.com/BurntSushi/toml":          {"cmd/muster"},
	"go.yaml.in/yaml/v3":                  {"cmd/muster"},
	// DNS's wire format: the DNS front end, and the benchmark's DNS
	// load.
	"github.com/miekg/dns": {"internal/dnsapi", "internal/bench"},
	// grpc-go: the SDK's gRPC resolver (a package of its own, so that a
	// program that does not use it does not link grpc-go), and
	// internal/checks' tests (its gRPC check against grpc-go's own
	// health server). It never reaches the muster binary.
	"google.golang.org/grpc": {"client/grpcresolver", "client/grpcservice", "examples/grpc"},
	// github.com/hashicorp/consul/api and github.com/prometheus/prometheus
	// likewise, for internal/consulapi's tests alone: the real Consul
	// client and Prometheus's own Consul discovery against the
	// Consul-compatible API.
}

func match(pattern, pkg string) bool {
	if p, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == p || strings.HasPrefix(pkg, p+"/")
	}
	return pkg == pattern
}

// rule returns the allowed imports of pkg: the exact entry if there is
// one, else the longest matching pattern.
func rule(pkg string) ([]string, bool) {
	if r, ok := layers[pkg]; ok {
		return r, true
	}
	best, found := "", false
	for p := range layers {
		if match(p, pkg) && len(p) > len(best) {
			best, found = p, true
		}
	}
	return layers[best], found
}

// TestImports_Layers checks every package's imports against layers and
// thirdParty.
func TestImports_Layers(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(fields[0], module)
		allowed, ok := rule(pkg)
		if !ok {
			t.Errorf("package %s is not in the layer table of imports_test.go: add it, and to docs/architecture.md", pkg)
			continue
		}
		seen++
		for _, imp := range fields[1:] {
			if own, ok := strings.CutPrefix(imp, module); ok {
				if !slices.ContainsFunc(allowed, func(p string) bool { return match(p, own) }) {
					t.Errorf("%s imports %s, which its layer does not allow (allowed: %v)", pkg, own, allowed)
				}
				continue
			}
			if !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
				continue // standard library
			}
			ok := false
			for prefix, users := range thirdParty {
				if strings.HasPrefix(imp, prefix) || imp == strings.TrimSuffix(prefix, "/") {
					ok = slices.ContainsFunc(users, func(p string) bool { return match(p, pkg) })
					break
				}
			}
			if !ok {
				t.Errorf("%s imports %s, which no rule in thirdParty allows it", pkg, imp)
			}
		}
	}
	if seen < 15 {
		t.Fatalf("only %d packages checked; go list output:\n%s", seen, out)
	}
}

// TestImports_RuleTable: every entry of layers names a package or a
// pattern that exists, so the table cannot rot.
func TestImports_RuleTable(t *testing.T) {
	cmd := exec.Command("go", "list", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	pkgs := strings.Fields(string(out))
	for p := range layers {
		if !slices.ContainsFunc(pkgs, func(full string) bool { return match(p, strings.TrimPrefix(full, module)) }) {
			t.Errorf("layers lists %s, which matches no package", p)
		}
		if path.Clean(p) != p && !strings.HasSuffix(p, "/...") {
			t.Errorf("layers entry %q is not a clean path", p)
		}
	}
}
