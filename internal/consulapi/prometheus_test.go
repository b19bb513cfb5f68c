package consulapi_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	promconsul "github.com/prometheus/prometheus/discovery/consul"
	"github.com/prometheus/prometheus/discovery/targetgroup"
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
	reg := prometheus.NewRegistry()
	refresh := discovery.NewRefreshMetrics(reg)
	if err := refresh.Register(); err != nil {
		t.Fatal(err)
	}
	metrics := conf.NewDiscovererMetrics(reg, refresh)
	if err := metrics.Register(); err != nil {
		t.Fatal(err)
	}
	defer metrics.Unregister()
	d, err := promconsul.NewDiscovery(conf, slog.New(slog.DiscardHandler), metrics)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan []*targetgroup.Group, 16)
	go d.Run(ctx, ch)

	// targets reads groups until one for web holds want targets.
	targets := func(want int) *targetgroup.Group {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case groups := <-ch:
				for _, g := range groups {
					if g != nil && g.Source == "web" && len(g.Targets) == want {
						return g
					}
				}
			case <-deadline:
				t.Fatalf("Prometheus's discovery did not see %d targets of web", want)
				return nil
			}
		}
	}
	g := targets(1)
	tg := g.Targets[0]
	if tg[model.AddressLabel] == "" || g.Labels["__meta_consul_service"] != "web" || tg["__meta_consul_service_id"] != model.LabelValue(id) ||
		tg["__meta_consul_tags"] != ",v1," || tg["__meta_consul_service_metadata_zone"] != "a" || tg["__meta_consul_health"] != "passing" {
		t.Errorf("the target: %v, its group's labels %v", tg, g.Labels)
	}
	if err := h.Anon.Deregister(context.Background(), id, tok); err != nil {
		t.Fatal(err)
	}
	targets(0)
}
