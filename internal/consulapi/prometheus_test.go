package consulapi_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	promconsul "github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

// TestConsul_PrometheusDiscovery: Prometheus's own Consul service
// discovery (its discovery/consul package, the code consul_sd_configs
// runs), pointed at the Consul-compatible API, finds the registered
// instance as a target with its address, service and tags, and sees it
// leave once it is deregistered.
func TestConsul_PrometheusDiscovery(t *testing.T) {
	h, _ := start(t, nil)
	k := h.Key(t, "web")
	id, tok := register(t, h, "web", k.Secret, []string{"v1"}, map[string]string{"zone": "a"})

	conf := &promconsul.SDConfig{Server: h.Srv.ConsulAddr(), Scheme: "http", Services: []string{"web"},
		RefreshInterval: model.Duration(100 * time.Millisecond), TagSeparator: ","}
	ch := discover(t, conf)
	g := targets(t, ch, "web", 1)
	tg := g.Targets[0]
	if tg[model.AddressLabel] == "" || g.Labels["__meta_consul_service"] != "web" || tg["__meta_consul_service_id"] != model.LabelValue(id) ||
		tg["__meta_consul_tags"] != ",v1," || tg["__meta_consul_service_metadata_zone"] != "a" || tg["__meta_consul_health"] != "passing" {
		t.Errorf("the target: %v, its group's labels %v", tg, g.Labels)
	}
	if err := h.Anon.Deregister(context.Background(), id, tok); err != nil {
		t.Fatal(err)
	}
	targets(t, ch, "web", 0) // the same discovery sees it leave
}

// TestPrometheusExample: examples/prometheus/prometheus.yml, as
// Prometheus reads it: its consul_sd_configs (the server changed to this
// test's), run by Prometheus's own discovery against a real muster, find
// the passing instances, and its relabelling keeps those and drops a
// draining one, with the labels its README promises.
func TestPrometheusExample(t *testing.T) {
	b, err := os.ReadFile("../../examples/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Global struct {
			ScrapeInterval model.Duration `yaml:"scrape_interval"`
		} `yaml:"global"`
		ScrapeConfigs []struct {
			JobName        string                 `yaml:"job_name"`
			ConsulSD       []*promconsul.SDConfig `yaml:"consul_sd_configs"`
			RelabelConfigs []*relabel.Config      `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.UnmarshalStrict(b, &file); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if len(file.ScrapeConfigs) != 1 || len(file.ScrapeConfigs[0].ConsulSD) != 1 {
		t.Fatalf("prometheus.yml: %+v", file)
	}
	sc := file.ScrapeConfigs[0]
	for _, rc := range sc.RelabelConfigs {
		if err := rc.Validate(model.UTF8Validation); err != nil {
			t.Fatal(err)
		}
	}
	if sc.ConsulSD[0].Server != "127.0.0.1:8500" {
		t.Errorf("the example points at %s, not the address its README starts muster on", sc.ConsulSD[0].Server)
	}

	h, _ := start(t, nil)
	k := h.Key(t, "web")
	id, _ := register(t, h, "web", k.Secret, nil, nil)
	drained, dtok := register(t, h, "web", k.Secret, nil, nil)
	if _, err := h.Anon.Drain(context.Background(), drained, dtok); err != nil {
		t.Fatal(err)
	}
	conf := sc.ConsulSD[0]
	conf.Server = h.Srv.ConsulAddr()
	g := targets(t, discover(t, conf), "web", 2)
	var kept []labels.Labels
	for _, tg := range g.Targets {
		lb := labels.NewBuilder(labels.EmptyLabels())
		for n, v := range g.Labels {
			lb.Set(string(n), string(v))
		}
		for n, v := range tg {
			lb.Set(string(n), string(v))
		}
		if relabel.ProcessBuilder(lb, sc.RelabelConfigs...) {
			kept = append(kept, lb.Labels())
		}
	}
	if len(kept) != 1 || kept[0].Get("service") != "web" || kept[0].Get("instance_id") != id {
		t.Errorf("after relabelling: %v; want the passing instance %s with service and instance_id", kept, id)
	}
}

// discover starts Prometheus's Consul discovery with conf, until the
// test ends, and returns the channel of what it reports.
func discover(t *testing.T, conf *promconsul.SDConfig) <-chan []*targetgroup.Group {
	t.Helper()
	reg := prometheus.NewRegistry()
	refresh := discovery.NewRefreshMetrics(reg)
	if err := refresh.Register(); err != nil {
		t.Fatal(err)
	}
	metrics := conf.NewDiscovererMetrics(reg, refresh)
	if err := metrics.Register(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(metrics.Unregister)
	d, err := promconsul.NewDiscovery(conf, slog.New(slog.DiscardHandler), metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan []*targetgroup.Group, 16)
	go d.Run(ctx, ch)
	// Not waited for: its blocking queries end with the test's server.
	t.Cleanup(cancel)
	return ch
}

// targets reads what ch reports until a group of service holds want
// targets, and returns it.
func targets(t *testing.T, ch <-chan []*targetgroup.Group, service string, want int) *targetgroup.Group {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case groups := <-ch:
			for _, g := range groups {
				if g != nil && g.Source == service && len(g.Targets) == want {
					return g
				}
			}
		case <-deadline:
			t.Fatalf("Prometheus's discovery did not see %d targets of %s", want, service)
			return nil
		}
	}
}
