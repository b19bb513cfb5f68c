package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/internal/catalog"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// putSnapshot sends body to PUT /v1/snapshot with token and returns the
// status and the decoded answer or error.
func putSnapshot(tb testing.TB, url, token string, body []byte) (int, api.RestoreResponse, api.ErrorBody) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPut, url+"/v1/snapshot", bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var ok api.RestoreResponse
	var eb api.ErrorBody
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, &ok); err != nil {
			tb.Fatalf("answer %s: %v", data, err)
		}
	} else if err := json.Unmarshal(data, &eb); err != nil || eb.Error.Code == "" {
		tb.Fatalf("error answer %d is not an API error: %s", resp.StatusCode, data)
	}
	return resp.StatusCode, ok, eb
}

// TestAPI_Restore: a backup put into the running registry replaces its
// catalog: the registrations and keys made after the save are gone, those
// before are back and looked up, with the session tokens they had;
// nothing restored expires at once (their registrations are older than
// their TTL, and they have no heartbeat history), and each expires a TTL
// after the restore if it stays silent; the catalog's index moves
// forward, so a blocking query wakes, and an event stream resyncs.
func TestAPI_Restore(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	admin := h.AdminToken(t)

	kept := h.Key(t, "web")
	instA := testutil.NewInstance(t, kept.Secret, verify.Proof)
	regA, err := h.Anon.Register(ctx, "web", kept.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: instA.Port(), TTL: "2s"})
	if err != nil {
		t.Fatal(err)
	}
	tokenA := instA.Calls[0].Token
	var backup bytes.Buffer
	saved, err := h.Admin.Snapshot(ctx, &backup)
	if err != nil {
		t.Fatal(err)
	}

	// After the save: a key and an instance that the restore removes,
	// and A deregistered, which it brings back.
	lost := h.Key(t, "web", "db")
	instB := testutil.NewInstance(t, lost.Secret, verify.Proof)
	regB, err := h.Anon.Register(ctx, "db", lost.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: instB.Port(), TTL: "10s"})
	if err != nil {
		t.Fatal(err)
	}
	tokenB := instB.Calls[0].Token
	if err := h.Admin.Deregister(ctx, regA.ID, ""); err != nil {
		t.Fatal(err)
	}
	// A's registration is now older than its TTL, and the server has
	// led for longer than that: judged from before the restore, A would
	// be critical at once.
	time.Sleep(2200 * time.Millisecond)
	before := h.Srv.Catalog().Index()

	// A blocking query on db, and an event stream of web, from before.
	blocked := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("%s/v1/services/db?index=%d&wait=20s", h.Srv.URL(), before))
		if err != nil {
			t.Error(err)
		}
		blocked <- resp
	}()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	resyncs := make(chan *api.WatchSnapshot, 4)
	go h.Anon.Watch(wctx, client.WatchRequest{Services: []string{"web"}}, func(ev client.WatchEvent) error {
		if ev.Type == api.EventSnapshot && ev.Snapshot.Resync {
			resyncs <- ev.Snapshot
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // the stream and the query are open

	status, res, eb := putSnapshot(t, h.Srv.URL(), admin, backup.Bytes())
	if status != http.StatusOK {
		t.Fatalf("restore: %d %+v", status, eb)
	}
	if res.SnapshotIndex != saved || res.Index <= before || res.Instances != 1 || res.Keys != 1 || res.Services != 1 || res.Evictions != 0 {
		t.Fatalf("restore answered %+v; saved at %d, catalog was at %d", res, saved, before)
	}
	if got := h.Srv.Catalog().Index(); got != res.Index {
		t.Errorf("catalog index %d, answer %d", got, res.Index)
	}

	// Nothing restored is critical, now or half a TTL later (the sweep
	// runs every 50 ms).
	for _, wait := range []time.Duration{0, time.Second} {
		time.Sleep(wait)
		look, err := h.Anon.Lookup(ctx, "web", client.WithStatus("any"))
		if err != nil {
			t.Fatal(err)
		}
		if len(look.Instances) != 1 || look.Instances[0].ID != regA.ID || look.Instances[0].Status != "passing" {
			t.Fatalf("%s after the restore, web = %+v", wait, look.Instances)
		}
		if inst, ok := h.Srv.Catalog().Instance(regA.ID); !ok || inst.Status != catalog.StatusPassing {
			t.Fatalf("%s after the restore, the catalog holds %+v", wait, inst)
		}
	}
	if keys, err := h.Admin.Keys(ctx); err != nil || len(keys) != 1 || keys[0].ID != kept.ID {
		t.Errorf("keys after the restore: %+v, %v", keys, err)
	}
	if _, err := h.Admin.Instance(ctx, regB.ID); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("the instance registered after the save: %v", err)
	}
	if _, err := h.Anon.Heartbeat(ctx, regB.ID, tokenB); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("its heartbeat: %v, want not found (so that it registers again)", err)
	}
	if _, err := h.Anon.Register(ctx, "db", lost.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: instB.Port()}); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("registering with the key created after the save: %v", err)
	}

	// The blocking query woke, with db emptied at the new index.
	select {
	case resp := <-blocked:
		var look api.LookupResponse
		json.NewDecoder(resp.Body).Decode(&look)
		resp.Body.Close()
		if idx, _ := strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64); idx != res.Index || len(look.Instances) != 0 {
			t.Errorf("the blocking query answered index %d with %d instances; want %d and none", idx, len(look.Instances), res.Index)
		}
	case <-time.After(5 * time.Second):
		t.Error("the blocking query on db did not wake at the restore")
	}
	select {
	case snap := <-resyncs:
		if snap.Index != res.Index || len(snap.Instances) != 1 || snap.Instances[0].ID != regA.ID {
			t.Errorf("the stream's resync: index %d, %+v", snap.Index, snap.Instances)
		}
	case <-time.After(5 * time.Second):
		t.Error("the event stream was not resynced")
	}

	// A's session token is back with it; silent, it expires a TTL after
	// the restore, judged from then.
	if _, err := h.Anon.Heartbeat(ctx, regA.ID, tokenA); err != nil {
		t.Errorf("a heartbeat of the restored instance: %v", err)
	}
	testserver.Eventually(t, 5*time.Second, "the silent restored instance expires", func() bool {
		inst, ok := h.Srv.Catalog().Instance(regA.ID)
		return ok && inst.Status == catalog.StatusCritical
	})
}

// TestAPI_RestoreRefusals: a restore without the admin token, or with a
// body that is not a muster catalog snapshot, changes nothing; the token
// is checked, and a declared size over the bound refused, before any of
// the body is read.
func TestAPI_RestoreRefusals(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	admin := h.AdminToken(t)
	k := h.Key(t, "web")
	var backup bytes.Buffer
	if _, err := h.Admin.Snapshot(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	good := backup.String()
	h.Key(t, "db") // after the save: a restore would remove it
	before := h.Srv.Catalog().Index()

	tests := []struct {
		name   string
		token  string
		body   string
		status int
		code   string
		msg    string
	}{
		{"no token", "", good, 401, api.CodeUnauthorized, "admin token required"},
		{"an enrolment key", k.Secret, good, 403, api.CodeForbidden, "neither the admin token"},
		{"empty", admin, "", 400, api.CodeInvalidArgument, "it is empty"},
		{"truncated", admin, good[:len(good)/2], 400, api.CodeInvalidArgument, "truncated"},
		{"not JSON", admin, "\x1f\x8b\x08 gzip", 400, api.CodeInvalidArgument, "malformed JSON"},
		{"another program's JSON", admin, `{"ID":"1-2-3","Index":5,"Term":2}`, 400, api.CodeInvalidArgument, "unknown field"},
		{"a newer version", admin, strings.Replace(good, `"version":1`, `"version":2`, 1), 400, api.CodeInvalidArgument, "snapshot version 2"},
		{"a damaged record", admin, strings.Replace(good, `"secret_hash":"`, `"secret_hash":"AAAA`, 1), 400, api.CodeInvalidArgument, "key 0"},
		{"two snapshots", admin, good + good, 400, api.CodeInvalidArgument, "data follows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, eb := putSnapshot(t, h.Srv.URL(), tt.token, []byte(tt.body))
			if status != tt.status || eb.Error.Code != tt.code || !strings.Contains(eb.Error.Message, tt.msg) {
				t.Fatalf("%d %+v, want %d %s saying %q", status, eb.Error, tt.status, tt.code, tt.msg)
			}
			if status == 400 && !strings.Contains(eb.Error.Message, "nothing was restored") {
				t.Errorf("message %q does not say that nothing changed", eb.Error.Message)
			}
			if got := h.Srv.Catalog().Index(); got != before {
				t.Errorf("the catalog moved from %d to %d", before, got)
			}
			if keys, err := h.Admin.Keys(ctx); err != nil || len(keys) != 2 {
				t.Errorf("keys: %d, %v", len(keys), err)
			}
		})
	}

	// Answered from the headers alone: the body is never sent.
	heads := []struct {
		name  string
		token string
		want  string
	}{
		{"a stranger's upload", "", "401 Unauthorized"},
		{"an upload over the bound", admin, "413 Request Entity Too Large"},
	}
	for _, tt := range heads {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", h.Srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			auth := ""
			if tt.token != "" {
				auth = "Authorization: Bearer " + tt.token + "\r\n"
			}
			fmt.Fprintf(conn, "PUT /v1/snapshot HTTP/1.1\r\nHost: muster\r\n%sContent-Length: %d\r\n\r\n{", auth, int64(catalog.MaxSnapshotSize)+1)
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || !strings.Contains(line, tt.want) {
				t.Fatalf("answer %q, %v; want %s", line, err, tt.want)
			}
		})
	}
}

// TestAPI_RestoreThenRestart: a registry restarted after a restore, over
// the same data dir, starts (its log, whose entries before the restore
// the snapshot covers, still checks) and holds the restored catalog and
// the writes made after it.
func TestAPI_RestoreThenRestart(t *testing.T) {
	h := start(t, nil)
	ctx := context.Background()
	kept := h.Key(t, "web")
	var backup bytes.Buffer
	if _, err := h.Admin.Snapshot(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		h.Key(t, "db")
	}
	if status, _, eb := putSnapshot(t, h.Srv.URL(), h.AdminToken(t), backup.Bytes()); status != http.StatusOK {
		t.Fatalf("restore: %d %+v", status, eb)
	}
	after := h.Key(t, "after")
	index := h.Srv.Catalog().Index()
	if err := h.Srv.Close(); err != nil {
		t.Fatal(err)
	}

	again := start(t, func(c *server.Config) { c.DataDir = h.Dir })
	keys, err := again.Admin.Keys(ctx)
	if err != nil || len(keys) != 2 || keys[0].ID == keys[1].ID {
		t.Fatalf("keys after the restart: %+v, %v", keys, err)
	}
	for _, k := range keys {
		if k.ID != kept.ID && k.ID != after.ID {
			t.Errorf("key %s came back from before the restore", k.ID)
		}
	}
	if got := again.Srv.Catalog().Index(); got != index {
		t.Errorf("index after the restart %d, before it %d", got, index)
	}
}
