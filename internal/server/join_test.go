package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
)

// TestJoinResolver: a --join entry given as host:port is asked over
// HTTPS by a server that serves its own API over HTTPS, and over plain
// HTTP otherwise; asking a member that speaks HTTPS over plain HTTP
// says to give the https:// URL rather than doubting it is a muster
// server.
func TestJoinResolver(t *testing.T) {
	member := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.ClusterSelf{Node: "n1", Clustered: true, RaftAddr: "127.0.0.1:9301"})
	}))
	defer member.Close()
	addr := strings.TrimPrefix(member.URL, "https://")
	ctx := context.Background()

	if got, err := joinResolver(true)(ctx, addr); err != nil || got != "127.0.0.1:9301" {
		t.Errorf("an HTTPS server joining %s: %q, %v", addr, got, err)
	}
	if got, err := joinResolver(false)(ctx, "https://"+addr); err != nil || got != "127.0.0.1:9301" {
		t.Errorf("a plain server joining https://%s: %q, %v", addr, got, err)
	}
	_, err := joinResolver(false)(ctx, addr)
	if err == nil || !strings.Contains(err.Error(), "give --join https://"+addr) {
		t.Errorf("a plain server joining %s, which speaks HTTPS: %v, want the https:// hint", addr, err)
	}
}
