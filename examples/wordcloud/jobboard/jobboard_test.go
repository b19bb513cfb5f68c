package jobboard_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/musterhq/muster/examples/wordcloud/jobboard"
)

// startBoard runs the job board on 127.0.0.1:0 and returns its URL and a
// client that uses it as its proxy for every request.
func startBoard(tb testing.TB) (*url.URL, *http.Client) {
	tb.Helper()
	srv := httptest.NewServer(jobboard.Handler())
	tb.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		tb.Fatal(err)
	}
	return u, &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
}

func get(tb testing.TB, c *http.Client, method, target string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestSampleURLs(t *testing.T) {
	hosts := map[string]int{}
	for _, raw := range jobboard.SampleURLs() {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || u.Path == "" {
			t.Errorf("sample URL %q is not an absolute http URL with a path", raw)
			continue
		}
		hosts[u.Host]++
	}
	want := map[string]int{"www.dice.com": 2, "jobs.example.com": 2, "www.example.org": 1}
	if fmt.Sprint(hosts) != fmt.Sprint(want) {
		t.Fatalf("sample hosts = %v, want %v", hosts, want)
	}
}

func TestHandler_Proxy(t *testing.T) {
	_, c := startBoard(t)
	urls := jobboard.SampleURLs()
	tests := []struct {
		name, method, url string
		want              int
		contains          string
	}{
		{"dice 1", "GET", urls[0], 200, `<div id="jobdescSec"`},
		{"dice 2", "GET", urls[1], 200, `<div id="jobdescSec"`},
		{"example.com 1", "GET", urls[2], 200, `class="posting-body job-description"`},
		{"example.com 2", "GET", urls[3], 200, `class="posting-body job-description"`},
		{"example.org", "GET", urls[4], 200, `<article id="posting"`},
		{"www. is optional", "GET", strings.Replace(urls[0], "www.dice.com", "dice.com", 1), 200, `jobdescSec`},
		{"www. may be added", "GET", strings.Replace(urls[2], "jobs.example.com", "www.jobs.example.com", 1), 200, `job-description`},
		{"host case and port 80", "GET", strings.Replace(urls[4], "www.example.org", "WWW.Example.ORG:80", 1), 200, `posting`},
		{"trailing slash", "GET", urls[1] + "/", 200, `jobdescSec`},
		{"query ignored", "GET", urls[1] + "?src=search", 200, `jobdescSec`},
		{"head", "HEAD", urls[0], 200, ""},
		{"unknown host", "GET", "http://www.google.com/", 404, "never forwards"},
		{"unknown path on a known host", "GET", "http://www.dice.com/jobs/detail/nope", 404, "no sample page"},
		{"post", "POST", urls[0], 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := get(t, c, tt.method, tt.url)
			if status != tt.want || !strings.Contains(body, tt.contains) {
				t.Fatalf("%s %s = %d %.200q, want %d containing %q", tt.method, tt.url, status, body, tt.want, tt.contains)
			}
		})
	}
}

func TestHandler_PagesAreDistinct(t *testing.T) {
	_, c := startBoard(t)
	seen := map[string]string{}
	for _, u := range jobboard.SampleURLs() {
		_, body := get(t, c, "GET", u)
		if other, dup := seen[body]; dup {
			t.Errorf("%s and %s serve the same page", u, other)
		}
		seen[body] = u
	}
}

// TestHandler_NeverForwards: a proxy request for a server that exists gets
// 404 from the board, and the server never hears of it.
func TestHandler_NeverForwards(t *testing.T) {
	var hits atomic.Int64
	internet := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, "the real internet")
	}))
	defer internet.Close()
	_, c := startBoard(t)
	status, body := get(t, c, "GET", internet.URL+"/")
	if status != http.StatusNotFound || strings.Contains(body, "real internet") || hits.Load() != 0 {
		t.Fatalf("proxied request to a live server: %d %q, server hits %d", status, body, hits.Load())
	}
}

// TestHandler_RefusesConnect speaks raw HTTP, since a client only sends
// CONNECT for https, and also checks that an https fetch through the board
// fails.
func TestHandler_RefusesConnect(t *testing.T) {
	u, c := startBoard(t)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "CONNECT www.dice.com:443 HTTP/1.1\r\nHost: www.dice.com:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("CONNECT answered %s, want 405", resp.Status)
	}
	if _, err := c.Get("https://www.dice.com/"); err == nil {
		t.Fatal("an https request through the board succeeded")
	}
}

func TestHandler_Direct(t *testing.T) {
	srv := httptest.NewServer(jobboard.Handler())
	defer srv.Close()
	tests := []struct {
		name, path string
		want       int
		contains   string
	}{
		{"index lists every sample", "/", 200, "jobs.example.com/postings/8812-platform-reliability-engineer"},
		{"dice page", "/www.dice.com/jobs/detail/senior-go-engineer-distributed-systems/7f3c2a91", 200, "jobdescSec"},
		{"without www", "/example.org/careers/application-security-engineer", 200, `id="posting"`},
		{"unknown", "/www.dice.com/nope", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := get(t, srv.Client(), "GET", srv.URL+tt.path)
			if status != tt.want || !strings.Contains(body, tt.contains) {
				t.Fatalf("GET %s = %d, want %d containing %q", tt.path, status, tt.want, tt.contains)
			}
		})
	}
}
