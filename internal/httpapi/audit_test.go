package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// trail reads a server's audit trail as it grows: each step's records
// are what follows the cursor of the step before.
type trail struct {
	c    *client.Client
	next string
	all  []api.AuditRecord
}

func newTrail(tb testing.TB, c *client.Client) *trail {
	tb.Helper()
	res, err := c.Audit(context.Background(), client.AuditQuery{Limit: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return &trail{c: c, next: res.Next}
}

// step returns the records written since the last step once there are
// n, waiting up to 10 s for them (they are written by the journals'
// writers, a moment after the request was answered), then a little more
// for any that should not be there.
func (tr *trail) step(tb testing.TB, n int) []api.AuditRecord {
	tb.Helper()
	var got []api.AuditRecord
	deadline := time.Now().Add(10 * time.Second)
	settle := time.Time{}
	for {
		wait := 500 * time.Millisecond
		if len(got) >= n {
			if settle.IsZero() {
				settle = time.Now().Add(200 * time.Millisecond)
			}
			wait = time.Until(settle)
		}
		if wait > 0 {
			res, err := tr.c.Audit(context.Background(), client.AuditQuery{After: tr.next, Wait: wait, Limit: 1000})
			if err != nil {
				tb.Fatal(err)
			}
			got = append(got, res.Records...)
			tr.next = res.Next
		}
		if !settle.IsZero() && time.Now().After(settle) || time.Now().After(deadline) {
			break
		}
	}
	tr.all = append(tr.all, got...)
	if len(got) != n {
		tb.Fatalf("%d records, want %d:\n%s", len(got), n, show(got))
	}
	return got
}

func show(rs []api.AuditRecord) string {
	var b strings.Builder
	for _, r := range rs {
		j, _ := json.Marshal(r)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// want checks one record: every field want sets must match; caller is
// checked to be a loopback address unless want.Caller is "-" (none).
func want(tb testing.TB, got api.AuditRecord, w api.AuditRecord, node string) {
	tb.Helper()
	bad := func(field, g, x string) {
		tb.Errorf("%s: %s is %q, want %q\n%s", w.Action, field, g, x, show([]api.AuditRecord{got}))
	}
	if got.Action != w.Action {
		bad("action", got.Action, w.Action)
	}
	if got.Outcome != w.Outcome {
		bad("outcome", got.Outcome, w.Outcome)
	}
	for _, f := range []struct{ name, g, w string }{
		{"service", got.Service, w.Service}, {"instance_id", got.InstanceID, w.InstanceID}, {"key_id", got.KeyID, w.KeyID},
		{"status", got.Status, w.Status},
	} {
		if f.g != f.w {
			bad(f.name, f.g, f.w)
		}
	}
	if w.Reason != "" && !strings.Contains(got.Reason, w.Reason) {
		bad("reason", got.Reason, "…"+w.Reason+"…")
	}
	if w.Caller == "-" {
		if got.Caller != "" {
			bad("caller", got.Caller, "")
		}
	} else if host, _, err := net.SplitHostPort(got.Caller); err != nil || host != "127.0.0.1" {
		bad("caller", got.Caller, "127.0.0.1:port")
	}
	if got.Node != node {
		bad("node", got.Node, node)
	}
	if t, err := time.Parse(time.RFC3339Nano, got.Time); err != nil || time.Since(t) > time.Minute || time.Until(t) > time.Second {
		bad("time", got.Time, "about now")
	}
	if (w.Index != 0) != (got.Index != 0) {
		bad("index", fmt.Sprint(got.Index), map[bool]string{true: "an index", false: "none"}[w.Index != 0])
	}
}

const some = 1 // an Index in a want: the record has one

// TestAPI_AuditEachAction: every action is exactly one audit record
// with the right fields: the time, the action and its outcome, the
// service, the instance, the key's ID (the one a refused registration
// tried, never its secret), the caller's address, the node, and the Raft
// index of a decision that went through the log. No record holds a
// secret or a token.
func TestAPI_AuditEachAction(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Verify.Timeout = 300 * time.Millisecond })
	ctx := context.Background()
	node := h.Srv.Node().NodeID()
	tr := newTrail(t, h.Admin)
	adminToken := h.AdminToken(t)
	raw := func(method, path, token string, body string) int {
		resp, _ := h.Call(t, method, path, token, []byte(body))
		return resp.StatusCode
	}

	k := h.Key(t, "web*")
	want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "key_create", Outcome: "ok", KeyID: k.ID, Index: some}, node)

	inst := testutil.NewInstance(t, k.Secret, verify.Proof)
	good := regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()})

	t.Run("registration refusals", func(t *testing.T) {
		if st, _, _ := h.Post(t, "web", "mk_wrong-secret", good); st != 401 {
			t.Fatalf("wrong key: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "register", Outcome: "refused", Service: "web", Reason: "names no enrolment key"}, node)
		if st, _, _ := h.Post(t, "web", "", good); st != 401 {
			t.Fatalf("no key: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "register", Outcome: "refused", Service: "web", Reason: "credential required"}, node)
		if st, _, _ := h.Post(t, "db", k.Secret, good); st != 403 {
			t.Fatalf("out of scope: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "register", Outcome: "refused", Service: "db", KeyID: k.ID, Reason: "not allowed for service"}, node)
		if st, _, _ := h.Post(t, "web", k.Secret, []byte(`{"address":`)); st != 400 {
			t.Fatalf("bad body: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "register", Outcome: "refused", Service: "web", KeyID: k.ID, Reason: "truncated"}, node)
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		closed := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if st, _, _ := h.Post(t, "web", k.Secret, regBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: closed})); st != 422 {
			t.Fatalf("callback refused: %d", st)
		}
		r := tr.step(t, 1)[0]
		want(t, r, api.AuditRecord{Action: "register", Outcome: "refused", Service: "web", KeyID: k.ID, InstanceID: r.InstanceID, Reason: "verification failed"}, node)
		if len(r.InstanceID) != 32 {
			t.Errorf("a refused callback's record names no instance ID: %+v", r)
		}
	})

	reg, err := h.Anon.Register(ctx, "web", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()})
	if err != nil {
		t.Fatal(err)
	}
	token := inst.TokenOf(reg.ID)
	r := tr.step(t, 1)[0]
	want(t, r, api.AuditRecord{Action: "register", Outcome: "ok", Service: "web", InstanceID: reg.ID, KeyID: k.ID, Reason: "api", Index: some}, node)
	if r.Index != reg.Index {
		t.Errorf("the registration's record is at index %d, the registration at %d", r.Index, reg.Index)
	}

	t.Run("heartbeats", func(t *testing.T) {
		if _, err := h.Anon.Heartbeat(ctx, reg.ID, token); err != nil {
			t.Fatal(err)
		}
		if st := raw("PUT", "/v1/instances/"+reg.ID+"/heartbeat", "wrong-token", ""); st != 403 {
			t.Fatalf("wrong token: %d", st)
		}
		if st := raw("PUT", "/v1/instances/"+reg.ID+"/heartbeat", "", ""); st != 401 {
			t.Fatalf("no token: %d", st)
		}
		rs := tr.step(t, 2) // the heartbeat itself is none
		want(t, rs[0], api.AuditRecord{Action: "heartbeat", Outcome: "refused", Service: "web", InstanceID: reg.ID, KeyID: k.ID, Reason: "token not allowed"}, node)
		want(t, rs[1], api.AuditRecord{Action: "heartbeat", Outcome: "refused", Service: "web", InstanceID: reg.ID, KeyID: k.ID, Reason: "credential required"}, node)
		if _, err := h.Anon.Heartbeats(ctx, []api.Beat{{ID: reg.ID, Token: token}, {ID: reg.ID, Token: "wrong"}}); err != nil {
			t.Fatal(err)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "heartbeat", Outcome: "refused", Service: "web", InstanceID: reg.ID, KeyID: k.ID}, node)
	})

	t.Run("drain", func(t *testing.T) {
		if st := raw("PUT", "/v1/instances/"+reg.ID+"/drain", "wrong-token", ""); st != 403 {
			t.Fatalf("wrong token: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "drain", Outcome: "refused", Service: "web", InstanceID: reg.ID, KeyID: k.ID}, node)
		if _, err := h.Anon.Drain(ctx, reg.ID, token); err != nil {
			t.Fatal(err)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "drain", Outcome: "ok", Service: "web", InstanceID: reg.ID, KeyID: k.ID, Index: some}, node)
		if _, err := h.Anon.Drain(ctx, reg.ID, token); err != nil {
			t.Fatal(err)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "drain", Outcome: "ok", Service: "web", InstanceID: reg.ID, KeyID: k.ID, Reason: "already draining"}, node)
	})

	t.Run("deregister", func(t *testing.T) {
		if err := h.Admin.Deregister(ctx, reg.ID, ""); err != nil {
			t.Fatal(err)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "deregister", Outcome: "ok", Service: "web", InstanceID: reg.ID, KeyID: k.ID, Index: some}, node)
		if st := raw("DELETE", "/v1/instances/"+reg.ID, adminToken, ""); st != 404 {
			t.Fatalf("deregister again: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "deregister", Outcome: "refused", InstanceID: reg.ID, Reason: "not registered"}, node)
	})

	t.Run("evict", func(t *testing.T) {
		ev, err := h.Anon.Register(ctx, "web-evicted", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port()})
		if err != nil {
			t.Fatal(err)
		}
		tr.step(t, 1)
		if st := raw("POST", "/v1/instances/"+ev.ID+"/evict", "", `{"for":"1m"}`); st != 401 {
			t.Fatalf("evict without a token: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "evict", Outcome: "refused", Reason: "credential required"}, node)
		if st := raw("POST", "/v1/instances/"+ev.ID+"/evict", adminToken, `{"for":"forever"}`); st != 400 {
			t.Fatalf("evict for a bad duration: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "evict", Outcome: "refused", InstanceID: ev.ID, Reason: "not a duration"}, node)
		if _, err := h.Admin.Evict(ctx, ev.ID, time.Minute, "bad build"); err != nil {
			t.Fatal(err)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "evict", Outcome: "ok", Service: "web-evicted", InstanceID: ev.ID, KeyID: k.ID, Reason: "bad build", Index: some}, node)
	})

	t.Run("expiry, return and removal", func(t *testing.T) {
		short, err := h.Anon.Register(ctx, "web-short", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1s", DeregisterAfter: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		tr.step(t, 1)
		// It never heartbeats: the sweep expires it, on its own.
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "expire", Outcome: "ok", Service: "web-short", InstanceID: short.ID, KeyID: k.ID, Status: "critical", Reason: "ttl expired", Caller: "-", Index: some}, node)
		if _, err := h.Anon.Heartbeat(ctx, short.ID, inst.TokenOf(short.ID)); err != nil {
			t.Fatal(err)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "status", Outcome: "ok", Service: "web-short", InstanceID: short.ID, KeyID: k.ID, Status: "passing", Reason: "heartbeat", Index: some}, node)
		if err := h.Anon.Deregister(ctx, short.ID, inst.TokenOf(short.ID)); err != nil {
			t.Fatal(err)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "deregister", Outcome: "ok", Service: "web-short", InstanceID: short.ID, KeyID: k.ID, Index: some}, node)
		gone, err := h.Anon.Register(ctx, "web-gone", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: inst.Port(), TTL: "1s", DeregisterAfter: "1s"})
		if err != nil {
			t.Fatal(err)
		}
		rs := tr.step(t, 3) // registered, expired, removed
		want(t, rs[1], api.AuditRecord{Action: "expire", Outcome: "ok", Service: "web-gone", InstanceID: gone.ID, KeyID: k.ID, Status: "critical", Caller: "-", Index: some}, node)
		want(t, rs[2], api.AuditRecord{Action: "remove", Outcome: "ok", Service: "web-gone", InstanceID: gone.ID, KeyID: k.ID, Reason: "deregister_after", Caller: "-", Index: some}, node)
	})

	t.Run("keys and backups", func(t *testing.T) {
		if _, err := h.Admin.Keys(ctx); err != nil {
			t.Fatal(err)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "key_list", Outcome: "ok"}, node)
		if st := raw("GET", "/v1/keys", "not-the-admin-token", ""); st != 403 {
			t.Fatalf("keys with a wrong token: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "key_list", Outcome: "refused", Reason: "token not allowed"}, node)
		var backup bytes.Buffer
		if _, err := h.Admin.Snapshot(ctx, &backup); err != nil {
			t.Fatal(err)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "snapshot_save", Outcome: "ok", Index: some}, node)
		if st := raw("POST", "/v1/keys", "", `{"services":["x"]}`); st != 401 {
			t.Fatalf("create a key without a token: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "key_create", Outcome: "refused", Reason: "credential required"}, node)
		if st := raw("POST", "/v1/keys", adminToken, `{"services":[]}`); st != 400 {
			t.Fatalf("create a key of no service: %d", st)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "key_create", Outcome: "refused", Reason: "services"}, node)
		if err := h.Admin.RevokeKey(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "key_revoke", Outcome: "ok", KeyID: k.ID, Index: some}, node)
		if err := h.Admin.RevokeKey(ctx, k.ID); err == nil {
			t.Fatal("revoked twice")
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "key_revoke", Outcome: "refused", KeyID: k.ID, Reason: "not found", Index: some}, node)
		if _, err := h.Admin.Restore(ctx, backup.Bytes()); err != nil {
			t.Fatal(err)
		}
		rs := tr.step(t, 2)
		slices.SortFunc(rs, func(a, b api.AuditRecord) int { return strings.Compare(a.Action, b.Action) })
		want(t, rs[0], api.AuditRecord{Action: "snapshot_installed", Outcome: "ok", Caller: "-", Index: some}, node)
		want(t, rs[1], api.AuditRecord{Action: "snapshot_restore", Outcome: "ok", Index: some}, node)
		if err := h.Admin.RemoveMember(ctx, "n9"); err == nil {
			t.Fatal("removed a member of no cluster")
		}
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "member_remove", Outcome: "refused", Reason: "member n9"}, node)
	})

	t.Run("reading the trail", func(t *testing.T) {
		if st := raw("GET", "/v1/audit", "wrong", ""); st != 403 {
			t.Fatalf("audit with a wrong token: %d", st)
		}
		if st := raw("GET", "/v1/audit?limit=5000", adminToken, ""); st != 400 {
			t.Fatalf("audit with a huge limit: %d", st)
		}
		// A read is no record; a refused one is.
		want(t, tr.step(t, 1)[0], api.AuditRecord{Action: "audit_read", Outcome: "refused", Reason: "token not allowed"}, node)
	})

	all := show(tr.all)
	for _, secret := range []string{k.Secret, token, adminToken, "mk_wrong-secret", "wrong-token", "not-the-admin-token"} {
		if strings.Contains(all, secret) {
			t.Errorf("a record holds the secret %q:\n%s", secret, all)
		}
	}
	if t.Failed() {
		t.Logf("the whole trail:\n%s", all)
	}
}

// TestAPI_AuditQueryErrors: every bad input to GET /v1/audit is a JSON
// error with a code, a message and the field; a missing or wrong token
// is refused before the query is read.
func TestAPI_AuditQueryErrors(t *testing.T) {
	h := start(t, nil)
	tok := h.AdminToken(t)
	cases := []struct {
		query, token string
		status       int
		code, field  string
	}{
		{"", "", 401, api.CodeUnauthorized, ""},
		{"limit=0", "wrong", 403, api.CodeForbidden, ""},
		{"since=yesterday", tok, 400, api.CodeInvalidArgument, "since"},
		{"since=-1h", tok, 400, api.CodeInvalidArgument, "since"},
		{"since=0s", tok, 200, "", ""},
		{"limit=0", tok, 400, api.CodeInvalidArgument, "limit"},
		{"limit=1001", tok, 400, api.CodeInvalidArgument, "limit"},
		{"limit=many", tok, 400, api.CodeInvalidArgument, "limit"},
		{"action=drop", tok, 400, api.CodeInvalidArgument, "action"},
		{"outcome=maybe", tok, 400, api.CodeInvalidArgument, "outcome"},
		{"service=Web", tok, 400, api.CodeInvalidArgument, "service"},
		{"after=1.2.3", tok, 400, api.CodeInvalidArgument, "after"},
		{"wait=1s", tok, 400, api.CodeInvalidArgument, "wait"},
		{"after=0.0.0.0&wait=11m", tok, 400, api.CodeInvalidArgument, "wait"},
		{"color=blue", tok, 400, api.CodeInvalidArgument, "color"},
		{"limit=%zz", tok, 400, api.CodeInvalidArgument, "query"},
		{"since=1h&service=web&action=register&outcome=refused&limit=1000", tok, 200, "", ""},
		{"after=99.99.99.99&wait=10ms", tok, 400, api.CodeInvalidArgument, "after"},
		{"after=0.0.0.0&wait=10ms", tok, 200, "", ""},
		{"limit=1&limit=2", tok, 400, api.CodeInvalidArgument, "limit"},
		{"action=register&action=evict", tok, 400, api.CodeInvalidArgument, "action"},
	}
	for _, c := range cases {
		t.Run(c.query+" "+c.token, func(t *testing.T) {
			req, _ := http.NewRequest("GET", h.Srv.URL()+"/v1/audit?"+c.query, nil)
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var eb api.ErrorBody
			json.NewDecoder(resp.Body).Decode(&eb)
			if resp.StatusCode != c.status || eb.Error.Code != c.code || eb.Error.Field != c.field || (c.code != "" && eb.Error.Message == "") {
				t.Fatalf("status %d, error %+v; want %d %s field %q", resp.StatusCode, eb.Error, c.status, c.code, c.field)
			}
		})
	}
}

// TestAPI_AuditFollowBounded: a follower's read (after, wait) returns as
// soon as a record after its cursor is written, and the follows one
// client holds open are bounded with its blocking queries: one more is
// 503 busy.
func TestAPI_AuditFollowBounded(t *testing.T) {
	h := start(t, func(c *server.Config) { c.Registry.MaxWaitersPerClient = 1 })
	ctx := context.Background()
	first, err := h.Admin.Audit(ctx, client.AuditQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		res api.AuditResponse
		err error
		at  time.Time
	}
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		res, err := h.Admin.Audit(ctx, client.AuditQuery{After: first.Next, Wait: 10 * time.Second})
		done <- answer{res, err, time.Now()}
	}()
	time.Sleep(300 * time.Millisecond) // the follow is held open
	_, err = h.Admin.Audit(ctx, client.AuditQuery{After: first.Next, Wait: 10 * time.Second})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 503 || ce.Code != api.CodeBusy {
		t.Fatalf("a second follow from the same client: %v, want 503 busy", err)
	}
	k := h.Key(t, "web")
	a := <-done
	if a.err != nil || len(a.res.Records) == 0 || a.res.Records[0].KeyID != k.ID {
		t.Fatalf("the follow answered %+v, %v", a.res, a.err)
	}
	if d := a.at.Sub(start); d > 5*time.Second {
		t.Errorf("the follow answered %s after it began, not when the record came", d)
	}
}
