package gateway_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/examples/wordcloud/fetchurl"
	"github.com/musterhq/muster/examples/wordcloud/gateway"
	"github.com/musterhq/muster/examples/wordcloud/jobboard"
	"github.com/musterhq/muster/examples/wordcloud/scraper"
	"github.com/musterhq/muster/examples/wordcloud/wordcloud"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"golang.org/x/net/html"
)

const adminToken = "ma_test-admin-token"

// startRegistry runs an embedded registry on 127.0.0.1:0 and returns its
// URL and an enrolment key for every service.
func startRegistry(tb testing.TB) (string, string) {
	tb.Helper()
	s := testserver.Start(tb, func(c *server.Config) { c.AdminToken = adminToken })
	ctx := context.Background()
	admin, err := client.New(client.Config{Addr: s.URL(), Token: adminToken})
	if err != nil {
		tb.Fatal(err)
	}
	k, err := admin.CreateKey(ctx, []string{"*"}, "wordcloud demo test")
	if err != nil {
		tb.Fatal(err)
	}
	return s.URL(), k.Secret
}

// register serves h on 127.0.0.1:0 as an instance of name, registered with
// the registry (as client.Serve does, but on a listener the test owns), and
// returns once the registry has it. The instance deregisters at cleanup.
func register(tb testing.TB, registry, key, name string, meta map[string]string, h http.Handler) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	reg, err := client.NewRegistration(client.ServiceConfig{
		Name: name, Meta: meta, Address: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
		Registry: registry, Key: key, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, DrainDelay: -1,
	})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(api.DefaultVerifyPath, reg.VerifyHandler())
	mux.Handle("/", h)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if _, err := reg.WaitRegistered(wctx); err != nil {
		tb.Fatalf("%s never registered: %v (last error %v)", name, err, reg.State().LastError)
	}
}

// answer is what a gateway page shows.
type answer struct {
	status  int
	message string
	results []li     // ul#results
	words   []string // the cloud's text.word elements
	cloud   bool     // div#cloud is present
	raw     string
}

type li struct{ class, text string }

func parsePage(tb testing.TB, resp *http.Response) answer {
	tb.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	doc, err := html.Parse(strings.NewReader(string(body)))
	if err != nil {
		tb.Fatal(err)
	}
	a := answer{status: resp.StatusCode, raw: string(body)}
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		switch {
		case n.Data == "p" && attr(n, "id") == "message":
			a.message = text(n)
		case n.Data == "li" && n.Parent != nil && attr(n.Parent, "id") == "results":
			a.results = append(a.results, li{attr(n, "class"), text(n)})
		case n.Data == "div" && attr(n, "id") == "cloud":
			a.cloud = true
		case n.Data == "text" && attr(n, "class") == "word":
			a.words = append(a.words, text(n))
		}
	}
	return a
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return strings.TrimSpace(b.String())
}

func submit(tb testing.TB, gatewayURL string, urls ...string) answer {
	tb.Helper()
	resp, err := http.PostForm(gatewayURL+"/", url.Values{"urls": {strings.Join(urls, "\n")}})
	if err != nil {
		tb.Fatal(err)
	}
	return parsePage(tb, resp)
}

// demo is the word-cloud demo, in one process: a registry, the job board,
// and a gateway whose resolver revalidates quickly.
type demo struct {
	registry, key string
	boardURL      *url.URL
	gateway       *httptest.Server
}

func startDemo(tb testing.TB, cfg gateway.Config) *demo {
	tb.Helper()
	d := &demo{}
	d.registry, d.key = startRegistry(tb)
	board := httptest.NewServer(jobboard.Handler())
	tb.Cleanup(board.Close)
	d.boardURL, _ = url.Parse(board.URL)
	c, err := client.New(client.Config{Addr: d.registry})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Resolver, err = client.NewResolver(client.ResolverConfig{Client: c, MaxAge: 20 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Logger = testutil.Logger(tb)
	d.gateway = httptest.NewServer(gateway.Handler(cfg))
	tb.Cleanup(d.gateway.Close)
	return d
}

func (d *demo) registerFetchURL(tb testing.TB) {
	cfg := fetchurl.DefaultConfig()
	cfg.Client = fetchurl.NewClient(http.ProxyURL(d.boardURL))
	register(tb, d.registry, d.key, fetchurl.ServiceName, nil, fetchurl.Handler(cfg))
}

func (d *demo) registerScraper(tb testing.TB, site string) {
	l, ok := scraper.LayoutFor(site)
	if !ok {
		tb.Fatalf("no layout for %s", site)
	}
	register(tb, d.registry, d.key, scraper.ServiceName, l.Meta(), scraper.Handler(l))
}

func (d *demo) registerWordCloud(tb testing.TB) {
	register(tb, d.registry, d.key, wordcloud.ServiceName, nil, wordcloud.Handler())
}

// settle waits out the resolver's MaxAge, so that lookups see the latest
// registrations.
func settle() { time.Sleep(50 * time.Millisecond) }

// TestGateway_EndToEnd brings the services up one at a time and checks
// what the page says at each step: the gateway finds everything through
// the registry, and a missing service costs one line, not the page.
func TestGateway_EndToEnd(t *testing.T) {
	d := startDemo(t, gateway.Config{})
	samples := jobboard.SampleURLs()
	dice, example := samples[0], samples[2]

	// Only a dice.com scraper: nothing can be fetched.
	d.registerScraper(t, "dice.com")
	settle()
	a := submit(t, d.gateway.URL, dice)
	if len(a.results) != 1 || a.results[0].class != "error" || !strings.Contains(a.results[0].text, "no fetch_url instance is registered") || a.cloud {
		t.Fatalf("without fetch_url: %+v", a)
	}

	// fetch_url too: the text is extracted, but nobody draws it.
	d.registerFetchURL(t)
	settle()
	a = submit(t, d.gateway.URL, dice)
	if len(a.results) != 1 || a.results[0].class != "ok" || a.cloud || !strings.Contains(a.message, "no wordcloud instance is registered") {
		t.Fatalf("without wordcloud: %+v", a)
	}

	// wordcloud too: dice.com works, jobs.example.com has no scraper yet.
	d.registerWordCloud(t)
	settle()
	a = submit(t, d.gateway.URL, dice, "", "  "+example+"  ")
	if a.status != http.StatusOK || len(a.results) != 2 {
		t.Fatalf("%d with results %+v\n%s", a.status, a.results, a.raw)
	}
	if r := a.results[0]; r.class != "ok" || !strings.Contains(r.text, dice) || !strings.Contains(r.text, "dice.com scraper") {
		t.Errorf("dice.com: %+v", r)
	}
	if r := a.results[1]; r.class != "error" || !strings.Contains(r.text, example) || !strings.Contains(r.text, "no scraper supports jobs.example.com yet") {
		t.Errorf("jobs.example.com: %+v", r)
	}
	if !a.cloud || len(a.words) < 20 || !contains(a.words, "golang") {
		t.Fatalf("cloud %v with words %v", a.cloud, a.words)
	}
	if contains(a.words, "frontend") {
		t.Fatal("the cloud has words of the page nobody could scrape")
	}

	// A jobs.example.com scraper registers: the same submission now reads both.
	d.registerScraper(t, "jobs.example.com")
	settle()
	a = submit(t, d.gateway.URL, dice, example)
	if len(a.results) != 2 || a.results[0].class != "ok" || a.results[1].class != "ok" {
		t.Fatalf("after the jobs.example.com scraper registered: %+v", a.results)
	}
	if !a.cloud || !contains(a.words, "golang") || !contains(a.words, "prometheus") || !strings.Contains(a.raw, "<svg") {
		t.Fatalf("cloud %v with words %v", a.cloud, a.words)
	}
}

// TestGateway_PerURLErrors: every kind of bad URL gets its own line, and a
// submission where nothing worked says so instead of showing a cloud.
func TestGateway_PerURLErrors(t *testing.T) {
	d := startDemo(t, gateway.Config{MaxURLs: 6})
	d.registerFetchURL(t)
	d.registerScraper(t, "dice.com")
	// A scraper for example.org that reads the wrong layout.
	register(t, d.registry, d.key, scraper.ServiceName, map[string]string{scraper.MetaSite: "example.org"},
		scraper.Handler(scraper.Layout{Site: "example.org", Selector: "div#jobdescSec"}))
	d.registerWordCloud(t)
	settle()

	tests := []struct {
		url, want string
	}{
		{"not a url", "not an absolute http or https URL"},
		{"/jobs/detail/1", "not an absolute http or https URL"},
		{"ftp://www.dice.com/file", "not an absolute http or https URL"},
		{"http://www.monster.com/job/1", "no scraper supports monster.com yet"},
		{"http://www.dice.com/jobs/detail/gone", "could not fetch the page: http://www.dice.com/jobs/detail/gone answered 404 Not Found"},
		{"http://www.example.org/careers/application-security-engineer", "the page does not look like a example.org job posting: it has no div#jobdescSec"},
		{"http://www.dice.com/seventh-is-over-the-limit", ""},
	}
	var urls []string
	for _, tt := range tests {
		urls = append(urls, tt.url)
	}
	a := submit(t, d.gateway.URL, urls...)
	if len(a.results) != 6 {
		t.Fatalf("%d results, want 6 (MaxURLs): %+v", len(a.results), a.results)
	}
	for i, r := range a.results {
		if r.class != "error" || !strings.Contains(r.text, tests[i].url) || !strings.Contains(r.text, tests[i].want) {
			t.Errorf("%s: %+v, want an error saying %q", tests[i].url, r, tests[i].want)
		}
	}
	if a.cloud || !strings.Contains(a.message, "no word cloud") || !strings.Contains(a.message, "1 more were left out") {
		t.Fatalf("cloud %v, message %q", a.cloud, a.message)
	}

	// One good URL among the bad ones is enough for a cloud.
	a = submit(t, d.gateway.URL, "not a url", jobboard.SampleURLs()[1])
	if len(a.results) != 2 || a.results[0].class != "error" || a.results[1].class != "ok" || !a.cloud || a.message != "" {
		t.Fatalf("%+v", a)
	}
}

func TestGateway_Form(t *testing.T) {
	d := startDemo(t, gateway.Config{Examples: jobboard.SampleURLs()})
	resp, err := http.Get(d.gateway.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	a := parsePage(t, resp)
	for _, want := range []string{`<form method="post" action="/">`, `<textarea name="urls"`, `id="submit"`, jobboard.SampleURLs()[4]} {
		if !strings.Contains(a.raw, want) {
			t.Errorf("the form page lacks %q", want)
		}
	}
	if a.cloud || a.results != nil {
		t.Error("the empty form shows results")
	}

	for _, tt := range []struct {
		name   string
		method string
		path   string
		body   string
		want   int
		has    string
	}{
		{"healthz", "GET", "/healthz", "", 200, "ok"},
		{"no urls", "POST", "/", "urls=%0A+%0A", 400, "Enter at least one URL"},
		{"no field", "POST", "/", "", 400, "Enter at least one URL"},
		{"markup in a URL is escaped", "POST", "/", "urls=" + url.QueryEscape("<script>alert(1)</script>"), 200, "&lt;script&gt;alert(1)&lt;/script&gt;"},
		{"form too large", "POST", "/", "urls=" + strings.Repeat("x", 300<<10), 400, "could not be read"},
		{"unknown path", "GET", "/nope", "", 404, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, d.gateway.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want || !strings.Contains(string(body), tt.has) {
				t.Fatalf("%d, want %d with %q:\n%s", resp.StatusCode, tt.want, tt.has, body)
			}
			if strings.Contains(string(body), "<script>") {
				t.Fatal("unescaped markup in the page")
			}
		})
	}
}

// TestServiceNames: the names the gateway looks up are the ones the
// services register under.
func TestServiceNames(t *testing.T) {
	for _, tt := range [][2]string{
		{gateway.ServiceFetchURL, fetchurl.ServiceName},
		{gateway.ServiceScraper, scraper.ServiceName},
		{gateway.MetaSite, scraper.MetaSite},
		{gateway.ServiceWordCloud, wordcloud.ServiceName},
	} {
		if tt[0] != tt[1] {
			t.Errorf("gateway uses %q, the service %q", tt[0], tt[1])
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	c, _ := client.New(client.Config{})
	r, _ := client.NewResolver(client.ResolverConfig{Client: c})
	for _, tt := range []struct {
		name string
		cfg  gateway.Config
		ok   bool
	}{
		{"no resolver", gateway.Config{}, false},
		{"resolver", gateway.Config{Resolver: r}, true},
		{"negative", gateway.Config{Resolver: r, MaxURLs: -1}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
}

func contains(words []string, w string) bool {
	for _, x := range words {
		if x == w {
			return true
		}
	}
	return false
}
