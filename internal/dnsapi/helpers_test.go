package dnsapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/verify"
)

// rig is a real registry with DNS on 127.0.0.1:0, an enrolment key for
// every name, and the listeners that answer its callbacks, one per
// address the tests register instances at.
type rig struct {
	h   *testserver.Harness
	dns string // the DNS address, UDP and TCP
	key api.Key

	mu      sync.Mutex
	callees map[string]int    // address → port of its callback listener
	tokens  map[string]string // instance ID → session token
}

// newRig starts a registry with DNS on (mutate may change its config).
func newRig(t testing.TB, mutate func(*server.Config)) *rig {
	t.Helper()
	h := testserver.NewHarness(t, func(c *server.Config) {
		c.DNS.Addr = "127.0.0.1:0"
		if mutate != nil {
			mutate(c)
		}
	})
	r := &rig{h: h, dns: h.Srv.DNSAddr(), callees: map[string]int{}, tokens: map[string]string{}}
	if r.dns == "" {
		t.Fatal("the server has no DNS address")
	}
	r.key = h.Key(t, "*")
	return r
}

// callee returns the port of a listener on ip that answers the
// registry's callbacks for the rig's key, starting one the first time.
func (r *rig) callee(t testing.TB, ip string) int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.callees[ip]; ok {
		return p
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var vr api.VerifyRequest
		body, _ := io.ReadAll(req.Body)
		json.Unmarshal(body, &vr)
		r.mu.Lock()
		r.tokens[vr.InstanceID] = vr.Token
		r.mu.Unlock()
		json.NewEncoder(w).Encode(api.VerifyResponse{Proof: verify.Proof(r.key.Secret, vr.Challenge)})
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	p := ln.Addr().(*net.TCPAddr).Port
	r.callees[ip] = p
	return p
}

// register registers an instance of service at address:port (its
// callback answered on callIP, the address itself unless it is a host
// name) and returns its ID.
func (r *rig) register(t testing.TB, service, address, callIP string, port int, ttl string, tags ...string) string {
	t.Helper()
	if callIP == "" {
		callIP = address
	}
	res, err := r.h.Admin.Register(context.Background(), service, r.key.Secret, api.RegisterRequest{Address: address, Port: port,
		VerifyPort: r.callee(t, callIP), TTL: ttl, Tags: tags})
	if err != nil {
		t.Fatalf("register %s at %s:%d: %v", service, address, port, err)
	}
	return res.ID
}

// query asks the server name's records of type t over network (udp or
// tcp), with EDNS0 offering bufsize when it is not 0, and fails the test
// if no answer comes.
func (r *rig) query(t testing.TB, network, name string, t16 uint16, bufsize uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, t16)
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	return r.exchange(t, network, m)
}

// exchange sends m over network and returns the answer.
func (r *rig) exchange(t testing.TB, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	var lastErr error
	for range 3 { // UDP may drop a datagram on a loaded machine
		in, _, err := c.Exchange(m, r.dns)
		if err == nil {
			return in
		}
		lastErr = err
	}
	t.Fatalf("%s %s %s: %v", network, m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], lastErr)
	return nil
}

// lookup returns the HTTP lookup of service (with tag, when not ""), as
// "address:port" strings, sorted.
func (r *rig) lookup(t testing.TB, service, tag string) []string {
	t.Helper()
	var opts []client.LookupOption
	if tag != "" {
		opts = append(opts, client.WithTag(tag))
	}
	res, err := r.h.Anon.Lookup(context.Background(), service, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, in := range res.Instances {
		out = append(out, net.JoinHostPort(in.Address, strconv.Itoa(in.Port)))
	}
	sort.Strings(out)
	return out
}

// addrs returns the addresses of the A and AAAA records in rrs, sorted.
func addrs(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	sort.Strings(out)
	return out
}

// endpoints resolves the SRV records of an answer through its additional
// section, as a client does, into "address:port" strings, sorted; a
// target without an address record stays a name ("host.:port").
func endpoints(m *dns.Msg) []string {
	byName := map[string]string{}
	for _, rr := range m.Extra {
		switch rr := rr.(type) {
		case *dns.A:
			byName[rr.Hdr.Name] = rr.A.String()
		case *dns.AAAA:
			byName[rr.Hdr.Name] = rr.AAAA.String()
		}
	}
	var out []string
	for _, rr := range m.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			host := strings.TrimSuffix(srv.Target, ".")
			if a, ok := byName[srv.Target]; ok {
				host = a
			}
			out = append(out, net.JoinHostPort(host, strconv.Itoa(int(srv.Port))))
		}
	}
	sort.Strings(out)
	return out
}

// types returns the record types of rrs, sorted, OPT left out.
func types(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, dns.TypeToString[rr.Header().Rrtype])
		}
	}
	slices.Sort(out)
	return out
}

// readDir returns the names in dir; none when it does not exist.
func readDir(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out, err
}
