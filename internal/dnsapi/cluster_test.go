package dnsapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// TestDNS_Cluster: in a cluster of three, every server answers DNS from
// its own replica, as it answers lookups: an instance registered through
// one is answered by all, leaves every answer when its TTL runs out, and
// a follower cut off from its leader for longer than MaxStale answers
// SERVFAIL (where HTTP answers 503), never a stale address.
func TestDNS_Cluster(t *testing.T) {
	servers := testserver.StartCluster(t, 3, func(_ int, c *server.Config) {
		c.DNS.Addr = "127.0.0.1:0"
		c.Registry.MaxStale = 500 * time.Millisecond
	})
	lead := testserver.WaitCluster(t, servers)
	ctx := context.Background()
	admin, _ := client.New(client.Config{Addr: servers[lead].URL(), Token: testserver.ClusterAdminToken})
	k, err := admin.CreateKey(ctx, []string{"api"}, "")
	if err != nil {
		t.Fatal(err)
	}
	in := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := admin.Register(ctx, "api", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: in.Port(), TTL: "4s"}); err != nil {
		t.Fatal(err)
	}
	ask := func(s *server.Server) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion("api.service.muster.", dns.TypeSRV)
		m, _, err := (&dns.Client{Timeout: time.Second}).Exchange(q, s.DNSAddr())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, s := range servers {
		testserver.Eventually(t, 5*time.Second, "every server answers the instance", func() bool {
			m := ask(s)
			return m.Rcode == dns.RcodeSuccess && len(m.Answer) == 1 && m.Answer[0].(*dns.SRV).Port == uint16(in.Port())
		})
	}
	for _, s := range servers {
		testserver.Eventually(t, 10*time.Second, "its TTL runs out on every server", func() bool {
			m := ask(s)
			return m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0
		})
	}
	// Two servers stop: the third hears no leader.
	follower := servers[(lead+1)%3]
	servers[lead].Close()
	servers[(lead+2)%3].Close()
	testserver.Eventually(t, 10*time.Second, "the cut-off follower answers SERVFAIL", func() bool {
		return ask(follower).Rcode == dns.RcodeServerFailure
	})
}
