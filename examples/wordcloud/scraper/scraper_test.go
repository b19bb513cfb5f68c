package scraper_test

import (
	"github.com/musterhq/muster/examples/wordcloud/internal/servicetest"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/examples/wordcloud/jobboard"
	"github.com/musterhq/muster/examples/wordcloud/scraper"
	"golang.org/x/net/html"
)

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in   string
		want scraper.Selector
		ok   bool
	}{
		{"div#jobdescSec", scraper.Selector{Tag: "div", ID: "jobdescSec"}, true},
		{"DIV.job-description", scraper.Selector{Tag: "div", Class: "job-description"}, true},
		{"#posting", scraper.Selector{ID: "posting"}, true},
		{".job_description", scraper.Selector{Class: "job_description"}, true},
		{"article", scraper.Selector{Tag: "article"}, true},
		{"h1", scraper.Selector{Tag: "h1"}, true},
		{"", scraper.Selector{}, false},
		{"#", scraper.Selector{}, false},
		{"div.", scraper.Selector{}, false},
		{"div#a.b", scraper.Selector{}, false},
		{"div .a", scraper.Selector{}, false},
		{"div > p", scraper.Selector{}, false},
		{"div.a.b", scraper.Selector{}, false},
		{"a[href]", scraper.Selector{}, false},
		{"p:first-child", scraper.Selector{}, false},
		{"1div", scraper.Selector{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := scraper.ParseSelector(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseSelector(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
			if tt.ok {
				if again, _ := scraper.ParseSelector(got.String()); again != got {
					t.Fatalf("String() = %q does not parse back to %+v", got.String(), got)
				}
			}
		})
	}
}

func TestExtract(t *testing.T) {
	const doc = `<html><head><title>T</title><style>.x{}</style></head><body>
<div class="job-description-section">not this one</div>
<div id="a" class="first  job-description  last">
  <h2>Role</h2><p>We use <b>Go</b>lang   and
  <a href="/k8s">Kubernetes</a>.</p><ul><li>gRPC</li><li>Kafka</li></ul>
  <script>var secret = "tracking";</script><!-- a comment --><br>Remote<br>OK
</div>
<div class="job-description">the second match</div>
<section id="empty"><p>  </p></section>
</body></html>`
	tests := []struct {
		sel, want string
		wantErr   bool
	}{
		{"div.job-description", "Role We use Golang and Kubernetes. gRPC Kafka Remote OK", false},
		{"#a", "Role We use Golang and Kubernetes. gRPC Kafka Remote OK", false},
		{"div#a", "Role We use Golang and Kubernetes. gRPC Kafka Remote OK", false},
		{"li", "gRPC", false},
		{".job-description-section", "not this one", false},
		{"section#empty", "", false},
		{"div#jobdescSec", "", true},
		{"span.job-description", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.sel, func(t *testing.T) {
			sel, err := scraper.ParseSelector(tt.sel)
			if err != nil {
				t.Fatal(err)
			}
			got, err := scraper.Extract(doc, sel)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("Extract(%s) = %q, %v; want %q (error %v)", tt.sel, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestExtract_DeepNesting(t *testing.T) {
	sel, _ := scraper.ParseSelector("#deep")
	page := strings.Repeat("<div>", 400) + `<span id="deep">found</span>` + strings.Repeat("</div>", 400)
	if got, err := scraper.Extract(page, sel); err != nil || got != "found" {
		t.Fatalf("Extract = %q, %v", got, err)
	}
	if _, err := scraper.Extract(strings.Repeat("<dl>", 5000), sel); err == nil {
		t.Fatal("a page nested beyond the parser's limit extracted")
	}
}

func TestLayouts(t *testing.T) {
	want := map[string]string{"dice.com": "div#jobdescSec", "jobs.example.com": "div.job-description", "example.org": "article#posting"}
	got := scraper.Layouts()
	if len(got) != len(want) {
		t.Fatalf("Layouts() = %v", got)
	}
	for _, l := range got {
		if want[l.Site] != l.Selector {
			t.Errorf("layout %+v, want selector %q", l, want[l.Site])
		}
		if err := l.Validate(); err != nil {
			t.Error(err)
		}
		if l.Meta()[scraper.MetaSite] != l.Site {
			t.Errorf("Meta() = %v", l.Meta())
		}
	}
	for _, tt := range []struct {
		in   string
		site string
		ok   bool
	}{
		{"dice.com", "dice.com", true},
		{"www.dice.com", "dice.com", true},
		{"WWW.Dice.com:80", "dice.com", true},
		{"jobs.example.com", "jobs.example.com", true},
		{"www.example.org", "example.org", true},
		{"example.com", "", false},
		{"monster.com", "", false},
	} {
		l, ok := scraper.LayoutFor(tt.in)
		if ok != tt.ok || l.Site != tt.site {
			t.Errorf("LayoutFor(%q) = %+v, %v", tt.in, l, ok)
		}
	}
	for _, bad := range []scraper.Layout{{}, {Site: "www.dice.com", Selector: "div"}, {Site: "dice.com", Selector: "div p"}} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) passed", bad)
		}
	}
}

// boardPages fetches every sample page from the job board, keyed by URL.
func boardPages(tb testing.TB) map[string]string {
	tb.Helper()
	board := httptest.NewServer(jobboard.Handler())
	defer board.Close()
	bu, _ := url.Parse(board.URL)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(bu)}}
	pages := map[string]string{}
	for _, u := range jobboard.SampleURLs() {
		resp, err := c.Get(u)
		if err != nil {
			tb.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pages[u] = string(b)
	}
	return pages
}

// post sends form to a scraper and returns the status, data and error.
func post(tb testing.TB, srvURL string, form url.Values) (int, string, api.ErrorDetail) {
	tb.Helper()
	return servicetest.PostForm(tb, srvURL+"/api/v1/words", form)
}

// TestHandler_SamplePages runs every layout's scraper on every sample page:
// a page of the scraper's own site gives its description (and nothing of
// the navigation around it), any other page 422.
func TestHandler_SamplePages(t *testing.T) {
	pages := boardPages(t)
	// Phrases from each page's description, and from outside it.
	inside := map[string]string{
		jobboard.SampleURLs()[0]: "Northwind Logistics moves four million parcels a day",
		jobboard.SampleURLs()[1]: "Bluebird Health Analytics helps hospitals predict patient demand",
		jobboard.SampleURLs()[2]: "Quarry Cloud runs managed databases",
		jobboard.SampleURLs()[3]: "Lumen Learning Labs builds the online classroom",
		jobboard.SampleURLs()[4]: "Example Org is a nonprofit that runs open infrastructure",
	}
	outside := []string{"Sign In", "Similar jobs", "All rights reserved", "My account", "Salary range", "Donate", "dataLayer"}
	for _, l := range scraper.Layouts() {
		srv := httptest.NewServer(scraper.Handler(l))
		defer srv.Close()
		for _, u := range jobboard.SampleURLs() {
			pu, _ := url.Parse(u)
			own := scraper.Site(pu.Host) == l.Site
			t.Run(l.Site+" on "+u, func(t *testing.T) {
				status, data, e := post(t, srv.URL, url.Values{"html": {pages[u]}})
				if !own {
					if status != http.StatusUnprocessableEntity || e.Code != scraper.CodeNoMatch || !strings.Contains(e.Message, "does not look like a "+l.Site+" job posting") {
						t.Fatalf("foreign page: %d %+v", status, e)
					}
					return
				}
				if status != http.StatusOK || !strings.Contains(data, inside[u]) {
					t.Fatalf("own page: %d %+v, data %.100q", status, e, data)
				}
				for _, o := range outside {
					if strings.Contains(data, o) {
						t.Errorf("extracted text has %q from outside the description", o)
					}
				}
				if strings.Contains(data, "  ") || strings.TrimSpace(data) != data || len(strings.Fields(data)) < 150 {
					t.Errorf("text is not whitespace-collapsed or is short: %d words", len(strings.Fields(data)))
				}
			})
		}
	}
}

func TestHandler_Errors(t *testing.T) {
	l, _ := scraper.LayoutFor("dice.com")
	srv := httptest.NewServer(scraper.Handler(l))
	defer srv.Close()
	tests := []struct {
		name     string
		form     url.Values
		want     int
		wantCode string
		wantMsg  string
	}{
		{"missing html", url.Values{"page": {"<p>x</p>"}}, 400, api.CodeInvalidArgument, "html is required"},
		{"empty html", url.Values{"html": {"  "}}, 400, api.CodeInvalidArgument, "html is required"},
		{"not a dice page", url.Values{"html": {"<p>hello</p>"}}, 422, scraper.CodeNoMatch, "does not look like a dice.com job posting: it has no div#jobdescSec"},
		{"empty description", url.Values{"html": {`<div id="jobdescSec"> <p></p> </div>`}}, 422, scraper.CodeNoMatch, "holds no text"},
		{"too deep to parse", url.Values{"html": {strings.Repeat("<dl>", 600)}}, 422, scraper.CodeNoMatch, "does not look like"},
		{"too large", url.Values{"html": {strings.Repeat("x", scraper.MaxBodyBytes)}}, 413, api.CodeBodyTooLarge, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, e := post(t, srv.URL, tt.form)
			if status != tt.want || e.Code != tt.wantCode || !strings.Contains(e.Message, tt.wantMsg) {
				t.Fatalf("%d %+v; want %d %s %q", status, e, tt.want, tt.wantCode, tt.wantMsg)
			}
		})
	}
	servicetest.CheckRoutes(t, srv.URL, []servicetest.Route{
		{Method: "GET", Path: "/api/v1/words", Want: 405},
		{Method: "POST", Path: "/api/v1/wordz", Want: 404},
	})
}

func TestHandler_Multipart(t *testing.T) {
	l, _ := scraper.LayoutFor("example.org")
	srv := httptest.NewServer(scraper.Handler(l))
	defer srv.Close()
	body := "--XX\r\nContent-Disposition: form-data; name=\"html\"\r\n\r\n<article id=\"posting\">Rust and Go</article>\r\n--XX--\r\n"
	resp, err := http.Post(srv.URL+"/api/v1/words", "multipart/form-data; boundary=XX", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"Rust and Go"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

func TestSelector_FirstInDocumentOrder(t *testing.T) {
	doc, _ := html.Parse(strings.NewReader(`<div class="x"><p class="x" id="inner">a</p></div><p class="x">b</p>`))
	sel, _ := scraper.ParseSelector("p.x")
	if n := sel.First(doc); n == nil || scraper.Text(n) != "a" {
		t.Fatalf("First found %v", n)
	}
	sel, _ = scraper.ParseSelector(".x")
	if n := sel.First(doc); n == nil || n.Data != "div" {
		t.Fatalf("First found %v, want the outer div", n)
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"div#jobdescSec", ".a", "#b", "p", "a.b.c", "div > p", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := scraper.ParseSelector(s)
		if err != nil {
			return
		}
		again, err := scraper.ParseSelector(sel.String())
		if err != nil || again != sel {
			t.Fatalf("%q parsed to %+v, whose String %q parses to %+v, %v", s, sel, sel.String(), again, err)
		}
	})
}

func FuzzExtract(f *testing.F) {
	f.Add(`<div id="jobdescSec"><p>Go</p></div>`, "div#jobdescSec")
	f.Add(`<div class="a b"><script>x</script>t</div>`, ".b")
	f.Fuzz(func(t *testing.T, page, selector string) {
		sel, err := scraper.ParseSelector(selector)
		if err != nil {
			return
		}
		text, err := scraper.Extract(page, sel)
		if err == nil && (strings.TrimSpace(text) != text || strings.Contains(text, "  ")) {
			t.Fatalf("text %q is not collapsed", text)
		}
	})
}
