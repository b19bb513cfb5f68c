package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/catalog"
)

// adminCheck identifies the admin token to the other members without
// revealing it: a hash of the hash the registry keeps. Members whose
// checks differ refuse each other (cluster.Config.AdminCheck).
func adminCheck(token string) []byte {
	h := sha256.Sum256(append([]byte("muster admin check v1\x00"), catalog.HashSecret(token)...))
	return h[:]
}

// joinClient asks members' HTTP APIs for their Raft address: no
// redirects, no proxy, small answers. A member served over HTTPS is
// asked without checking its certificate: the answer is only where to
// dial, and the Raft connection that follows authenticates both ends
// with the cluster secret or the cluster CA, so a server that lied
// could only make the join fail (docs/security.md, "Joining over
// HTTPS"). Nothing secret is sent.
var joinClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}, //nolint:gosec // discovery only; see above
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// joinResolver returns what turns an entry of --join (a member's HTTP
// address, host:port or a URL) into its Raft address, from GET
// /v1/cluster/self. A host:port is asked over HTTPS when this server
// serves its own API over HTTPS (a cluster's servers serve theirs
// alike), else over plain HTTP; a URL says which.
func joinResolver(https bool) func(ctx context.Context, addr string) (string, error) {
	scheme := "http://"
	if https {
		scheme = "https://"
	}
	return func(ctx context.Context, addr string) (string, error) {
		base := addr
		if !strings.Contains(base, "://") {
			base = scheme + base
		}
		return resolveJoin(ctx, addr, base)
	}
}

// resolveJoin asks base (addr as a URL) for its Raft address.
func resolveJoin(ctx context.Context, addr, base string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/v1/cluster/self", nil)
	if err != nil {
		return "", err
	}
	resp, err := joinClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// net/http's answer to plain HTTP on a TLS port.
		if b, _ := io.ReadAll(io.LimitReader(resp.Body, 512)); resp.StatusCode == http.StatusBadRequest &&
			strings.HasPrefix(base, "http://") && strings.Contains(string(b), "HTTPS server") {
			return "", fmt.Errorf("%s serves its API over HTTPS: give --join https://%s", addr, strings.TrimPrefix(base, "http://"))
		}
		return "", fmt.Errorf("GET /v1/cluster/self answered %s; is %s a muster server?", resp.Status, addr)
	}
	var self api.ClusterSelf
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&self); err != nil {
		return "", fmt.Errorf("GET /v1/cluster/self: %w", err)
	}
	if !self.Clustered || self.RaftAddr == "" {
		return "", errors.New("the server at " + addr + " has no cluster credential, so it cannot be joined; start every server with the same --cluster-secret-file, or with certificates from the same CA (--tls-ca, --tls-cert, --tls-key)")
	}
	return self.RaftAddr, nil
}
