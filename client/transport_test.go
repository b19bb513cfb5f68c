package client_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/musterhq/muster/client"
)

// TestTransport_NotServiceName: a host that is a service name but for
// its case is an error that says so, not a DNS lookup; with OnlyServices,
// so is every host that is not a service name.
func TestTransport_NotServiceName(t *testing.T) {
	reg := startRegistry(t, t.TempDir(), "127.0.0.1:0")
	key := newKey(t, reg.URL(), "hello")
	b := startBackend(t, reg.URL(), key, "hello", "hi")
	c, _ := client.New(client.Config{Addr: reg.URL()})
	res, _ := client.NewResolver(client.ResolverConfig{Client: c})
	other := httpTestServer(t)
	get := func(httpc *http.Client, u string) (string, error) {
		resp, err := httpc.Get(u)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), err
	}
	for _, tc := range []struct {
		name    string
		only    bool
		url     string
		wantErr string // "" for success
	}{
		{"service", false, "http://hello/", ""},
		{"upper case", false, "http://Hello/", `service names are lower case; write "hello"`},
		{"upper case, only services", true, "http://HELLO/x", `service names are lower case; write "hello"`},
		{"not a service passes through", false, other, ""},
		{"LOCALHOST is no service", false, strings.Replace(other, "127.0.0.1", "LOCALHOST", 1), ""},
		{"only services: service", true, "http://hello/", ""},
		{"only services: IP and port", true, other, "sends requests only to muster services"},
		{"only services: DNS name", true, "http://example.com/", "sends requests only to muster services"},
		{"only services: service name with a port", true, "http://hello:8080/", "sends requests only to muster services"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			httpc := &http.Client{Transport: &client.Transport{Resolver: res, OnlyServices: tc.only}}
			before := b.hits.Load()
			_, err := get(httpc, tc.url)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, client.ErrNotServiceName) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("GET %s: %v; want ErrNotServiceName saying %q", tc.url, err, tc.wantErr)
			}
			if b.hits.Load() != before {
				t.Fatal("the request reached the service anyway")
			}
			t.Logf("GET %s: %v", tc.url, err)
		})
	}
}
