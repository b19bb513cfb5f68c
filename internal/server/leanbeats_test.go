package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// rawAnswer sends raw on a fresh connection to addr and returns the
// answer's status line, its headers but Date and X-Request-Id, and its
// body, as text.
func rawAnswer(tb testing.TB, addr, raw string) (status int, text string, body []byte) {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		tb.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		tb.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Header.Del("Date")
	resp.Header.Del("X-Request-Id")
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", resp.Status)
	resp.Header.Write(&b)
	fmt.Fprintf(&b, "close %v\n%s", resp.Close, body)
	return resp.StatusCode, b.String(), body
}

// leanCount reads muster_http_lean_requests_total.
func leanCount(t *testing.T, url string) float64 {
	t.Helper()
	v, _ := value(scrape(t, url+"/metrics", ""), "muster_http_lean_requests_total", nil)
	return v
}

// TestLeanBeats_AnswersAsNetHTTPDoes: a plain heartbeat is answered by
// the lean reader, with the answer net/http gives the same request
// (made not plain by a header of its own): for a good token, a wrong
// one, none, and an instance that does not exist. A stranger without
// the session token is refused either way.
func TestLeanBeats_AnswersAsNetHTTPDoes(t *testing.T) {
	h := start(t, nil)
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(context.Background(), "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	tok := inst.TokenOf(reg.ID)
	head := func(id, auth string) string {
		s := "PUT /v1/instances/" + id + "/heartbeat HTTP/1.1\r\nHost: " + h.Srv.Addr() + "\r\nUser-Agent: test\r\nContent-Length: 0\r\n"
		if auth != "" {
			s += "Authorization: " + auth + "\r\n"
		}
		return s
	}
	cases := []struct {
		name, id, auth string
		status         int
		code           string
	}{
		{"good token", reg.ID, "Bearer " + tok, 200, ""},
		{"wrong token", reg.ID, "Bearer " + tok + "x", 403, api.CodeForbidden},
		{"no token", reg.ID, "", 401, api.CodeUnauthorized},
		{"not a bearer", reg.ID, "Basic " + tok, 401, api.CodeUnauthorized},
		{"no such instance", "i-nope", "Bearer " + tok, 404, api.CodeNotFound},
	}
	before := leanCount(t, h.Srv.URL())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, lean, body := rawAnswer(t, h.Srv.Addr(), head(tc.id, tc.auth)+"\r\n")
			_, std, _ := rawAnswer(t, h.Srv.Addr(), head(tc.id, tc.auth)+"X-Not-Plain: 1\r\n\r\n")
			if lean != std {
				t.Fatalf("the lean answer:\n%s\nnet/http's:\n%s", lean, std)
			}
			if status != tc.status {
				t.Fatalf("status %d; want %d: %s", status, tc.status, body)
			}
			if tc.code != "" {
				var e api.ErrorBody
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
					t.Fatalf("error body %s (%v); want code %q with a message", body, err, tc.code)
				}
			}
		})
	}
	if got := leanCount(t, h.Srv.URL()) - before; got != float64(len(cases)) {
		t.Fatalf("muster_http_lean_requests_total moved by %v; want %d (one per plain heartbeat)", got, len(cases))
	}
	// The lean heartbeat did what a heartbeat does: the instance is
	// passing, and its heartbeat is fresh.
	ins, err := h.Anon.Lookup(context.Background(), "svc")
	if err != nil || len(ins.Instances) != 1 || ins.Instances[0].Status != "passing" {
		t.Fatalf("lookup after the heartbeats: %+v, %v", ins, err)
	}
}

// TestLeanBeats_Off: with NoLeanHeartbeats every heartbeat is net/http's.
func TestLeanBeats_Off(t *testing.T) {
	h := start(t, func(c *server.Config) { c.NoLeanHeartbeats = true })
	k := h.Key(t, "svc")
	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	reg, err := h.Anon.Register(context.Background(), "svc", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	raw := "PUT /v1/instances/" + reg.ID + "/heartbeat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + inst.TokenOf(reg.ID) + "\r\n\r\n"
	if status, _, body := rawAnswer(t, h.Srv.Addr(), raw); status != 200 {
		t.Fatalf("heartbeat: %d %s", status, body)
	}
	if n := leanCount(t, h.Srv.URL()); n != 0 {
		t.Fatalf("muster_http_lean_requests_total = %v with the lean reader off", n)
	}
}
