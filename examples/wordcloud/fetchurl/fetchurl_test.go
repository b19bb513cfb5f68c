package fetchurl_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/musterhq/muster/examples/wordcloud/internal/servicetest"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/examples/wordcloud/fetchurl"
	"github.com/musterhq/muster/examples/wordcloud/jobboard"
)

const page = "<html><body><p>hello from upstream</p></body></html>"

// upstream is a web site with the pages the tests fetch.
func upstream(tb testing.TB, maxBytes int) *httptest.Server {
	tb.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, page) })
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", http.StatusInternalServerError) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", maxBytes+1)))
	})
	mux.HandleFunc("/big-chunked", func(w http.ResponseWriter, r *http.Request) {
		for range maxBytes + 1 {
			w.Write([]byte("x"))
			w.(http.Flusher).Flush() // no Content-Length: the cap must hold while reading
		}
	})
	mux.HandleFunc("/exact", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", maxBytes)))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	mux.HandleFunc("/slow-body", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	// /redirect/N redirects N times, then serves the page.
	mux.HandleFunc("/redirect/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n == 0 {
			fmt.Fprint(w, page)
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/redirect/%d", n-1), http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv
}

// fetch asks the fetch_url server for target and decodes the answer.
func fetch(tb testing.TB, fetchURL, target string) (status int, data []byte, eb api.ErrorBody) {
	tb.Helper()
	u := fetchURL + "/api/v1/fetchurl/"
	if target != "-" {
		u += "?url=" + url.QueryEscape(target)
	}
	resp, err := http.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		tb.Errorf("Content-Type = %q", ct)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		var ok struct{ Data string }
		if err := json.Unmarshal(body, &ok); err != nil {
			tb.Fatalf("decode %s: %v", body, err)
		}
		data, err = base64.StdEncoding.DecodeString(ok.Data)
		if err != nil {
			tb.Fatal(err)
		}
		return resp.StatusCode, data, eb
	}
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
		tb.Fatalf("error answer %s is not {\"error\": {\"code\", \"message\"}}", body)
	}
	return resp.StatusCode, nil, eb
}

func TestHandler_Fetch(t *testing.T) {
	const maxBytes = 1024
	up := upstream(t, maxBytes)
	svc := httptest.NewServer(fetchurl.Handler(fetchurl.Config{Timeout: 300 * time.Millisecond, MaxBytes: maxBytes, Client: fetchurl.NewClient(nil)}))
	defer svc.Close()
	// A port that nobody listens on.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	tests := []struct {
		name       string
		target     string // "-" sends no url parameter at all
		wantStatus int
		wantCode   string
		wantMsg    string // in the error message
		wantBody   string // the page, when 200
	}{
		{"ok", up.URL + "/ok", 200, "", "", page},
		{"exactly max bytes", up.URL + "/exact", 200, "", "", strings.Repeat("x", maxBytes)},
		{"five redirects are followed", up.URL + "/redirect/5", 200, "", "", page},
		{"six redirects are not", up.URL + "/redirect/6", 502, fetchurl.CodeTooManyRedirects, "more than 5", ""},
		{"upstream 404", up.URL + "/missing", 502, fetchurl.CodeUpstreamStatus, "answered 404 Not Found", ""},
		{"upstream 500", up.URL + "/broken", 502, fetchurl.CodeUpstreamStatus, "500 Internal Server Error", ""},
		{"oversize with Content-Length", up.URL + "/big", 502, fetchurl.CodeTooLarge, "larger than the 1024-byte limit", ""},
		{"oversize chunked", up.URL + "/big-chunked", 502, fetchurl.CodeTooLarge, "1024-byte", ""},
		{"timeout before headers", up.URL + "/slow", 504, fetchurl.CodeTimeout, "within 300ms", ""},
		{"timeout reading the body", up.URL + "/slow-body", 504, fetchurl.CodeTimeout, "within 300ms", ""},
		{"unreachable", deadURL + "/ok", 502, fetchurl.CodeUnreachable, "cannot reach", ""},
		{"missing url", "-", 400, api.CodeInvalidArgument, "required", ""},
		{"empty url", "", 400, api.CodeInvalidArgument, "required", ""},
		{"relative url", "/jobs/1", 400, api.CodeInvalidArgument, "not an absolute http or https URL", ""},
		{"no scheme", "www.dice.com/jobs/1", 400, api.CodeInvalidArgument, "not an absolute", ""},
		{"ftp", "ftp://example.org/file", 400, api.CodeInvalidArgument, "not an absolute http or https URL", ""},
		{"javascript", "javascript:alert(1)", 400, api.CodeInvalidArgument, "not an absolute", ""},
		{"no host", "http:///path", 400, api.CodeInvalidArgument, "not an absolute", ""},
		{"unparseable", "http://[::1", 400, api.CodeInvalidArgument, "does not parse", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, data, eb := fetch(t, svc.URL, tt.target)
			if status != tt.wantStatus {
				t.Fatalf("status %d (%+v), want %d", status, eb.Error, tt.wantStatus)
			}
			if status == 200 {
				if string(data) != tt.wantBody {
					t.Fatalf("data = %.80q, want %.80q", data, tt.wantBody)
				}
				return
			}
			if eb.Error.Code != tt.wantCode || !strings.Contains(eb.Error.Message, tt.wantMsg) {
				t.Fatalf("error = %+v, want code %s and a message containing %q", eb.Error, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestHandler_Routes(t *testing.T) {
	svc := httptest.NewServer(fetchurl.Handler(fetchurl.Config{}))
	defer svc.Close()
	servicetest.CheckRoutes(t, svc.URL, []servicetest.Route{
		{Method: "GET", Path: "/api/v1/fetchurl", Want: 400}, // without the trailing slash, still the endpoint
		{Method: "POST", Path: "/api/v1/fetchurl/", Want: 405},
		{Method: "GET", Path: "/api/v1/fetchurl/more", Want: 404},
		{Method: "GET", Path: "/", Want: 404},
	})
}

// TestHandler_ThroughJobBoard fetches the sample pages with the job board as
// the proxy, as the demo does.
func TestHandler_ThroughJobBoard(t *testing.T) {
	board := httptest.NewServer(jobboard.Handler())
	defer board.Close()
	boardURL, _ := url.Parse(board.URL)
	cfg := fetchurl.DefaultConfig()
	cfg.Client = fetchurl.NewClient(http.ProxyURL(boardURL))
	svc := httptest.NewServer(fetchurl.Handler(cfg))
	defer svc.Close()

	for _, u := range jobboard.SampleURLs() {
		t.Run(u, func(t *testing.T) {
			status, data, eb := fetch(t, svc.URL, u)
			if status != 200 || !strings.Contains(string(data), "<!DOCTYPE html>") {
				t.Fatalf("status %d %+v, data %.60q", status, eb.Error, data)
			}
		})
	}
	t.Run("not on the board", func(t *testing.T) {
		status, _, eb := fetch(t, svc.URL, "http://www.dice.com/jobs/detail/unknown")
		if status != 502 || eb.Error.Code != fetchurl.CodeUpstreamStatus || !strings.Contains(eb.Error.Message, "404") {
			t.Fatalf("status %d %+v", status, eb.Error)
		}
	})
	t.Run("https cannot be tunnelled", func(t *testing.T) {
		status, _, eb := fetch(t, svc.URL, "https://www.dice.com/")
		if status != 502 || eb.Error.Code != fetchurl.CodeUnreachable {
			t.Fatalf("status %d %+v", status, eb.Error)
		}
	})
}

func TestConfig_Validate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  fetchurl.Config
		ok   bool
	}{
		{"zero", fetchurl.Config{}, true},
		{"default", fetchurl.DefaultConfig(), true},
		{"negative timeout", fetchurl.Config{Timeout: -1}, false},
		{"negative size", fetchurl.Config{MaxBytes: -1}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
