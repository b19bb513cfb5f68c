package seedapi_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
)

// TestSeedProtocol_AuditRecords: a tutorial-protocol registration is one
// audit record whatever becomes of it: refused at once (a bad url, a
// name out of scope), refused after its verification (a wrong answer),
// or registered (from the applied log, with its index), each with the
// caller's address and the protocol's key.
func TestSeedProtocol_AuditRecords(t *testing.T) {
	h := testserver.NewHarness(t, func(c *server.Config) {
		sc := registry.DefaultSeedConfig()
		sc.Services, sc.VerifyTimeout = []string{"fetch_url"}, 2*time.Second
		c.Registry.Seed = &sc
	})
	base := h.Srv.URL()
	good := newTutorialService(t, "fetch_url")
	bad := newTutorialService(t, "fetch_url")
	bad.reply = "no umbrella"
	for _, form := range []string{
		"name=fetch_url&url=ftp://localhost&port=1",                             // a bad url: refused at once
		"name=other&url=http://localhost&port=1",                                // out of scope
		"name=fetch_url&url=http://localhost&port=" + strconv.Itoa(bad.port()),  // refused after the callback
		"name=fetch_url&url=http://localhost&port=" + strconv.Itoa(good.port()), // registered
	} {
		postForm(t, base+"/api/v1/register/", form)
	}
	want := map[string]int{"refused fetch_url": 2, "refused other": 1, "ok fetch_url": 1}
	var got map[string]int
	var recs []api.AuditRecord
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		res, err := h.Admin.Audit(context.Background(), client.AuditQuery{Action: "register"})
		if err != nil {
			t.Fatal(err)
		}
		got, recs = map[string]int{}, res.Records
		for _, r := range recs {
			got[r.Outcome+" "+r.Service]++
		}
		if len(recs) >= 4 {
			break
		}
	}
	if len(got) != len(want) || got["refused fetch_url"] != 2 || got["refused other"] != 1 || got["ok fetch_url"] != 1 || len(recs) != 4 {
		t.Fatalf("records %v, want %v: %+v", got, want, recs)
	}
	for _, r := range recs {
		if r.Caller == "" || r.KeyID != "key_seed_compat" || r.Node != h.Srv.Node().NodeID() || (r.Outcome == "ok") != (r.Index > 0) {
			t.Errorf("record %+v", r)
		}
	}
}
