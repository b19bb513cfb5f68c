package jobboard

import (
	"embed"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// pages holds the sample postings. It is read-only.
//
//go:embed pages/*.html
var pages embed.FS

// sample is one page of the board.
type sample struct {
	// host as it appears in the sample URL (with www. where the site uses it).
	host string
	path string
	file string
	// title is shown on the index page.
	title string
}

// samples returns the board's table of pages. Each call returns a fresh
// slice.
func samples() []sample {
	return []sample{
		{"www.dice.com", "/jobs/detail/senior-go-engineer-distributed-systems/7f3c2a91", "pages/dice-senior-go-engineer.html", "Senior Go Engineer, Distributed Systems (dice.com)"},
		{"www.dice.com", "/jobs/detail/data-platform-engineer/c41e08d2", "pages/dice-data-platform-engineer.html", "Data Platform Engineer (dice.com)"},
		{"jobs.example.com", "/postings/8812-platform-reliability-engineer", "pages/example-jobs-platform-sre.html", "Platform Reliability Engineer (jobs.example.com)"},
		{"jobs.example.com", "/postings/9034-senior-frontend-engineer-design-systems", "pages/example-jobs-frontend-engineer.html", "Senior Frontend Engineer, Design Systems (jobs.example.com)"},
		{"www.example.org", "/careers/application-security-engineer", "pages/example-org-security-engineer.html", "Application Security Engineer (example.org)"},
	}
}

func (s sample) url() string { return "http://" + s.host + s.path }

// SampleURLs returns the URLs of the board's pages: two on www.dice.com,
// two on jobs.example.com and one on www.example.org, all http. Fetch them
// through the board as a proxy, or view them at /{host}/{path}.
func SampleURLs() []string {
	ss := samples()
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.url()
	}
	return out
}

// site is host in lower case, without a port and without a leading www.:
// the board answers for www.dice.com and dice.com alike.
func site(host string) string {
	host = strings.ToLower(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimPrefix(host, "www.")
}

// find returns the page for host and path, ignoring a trailing slash.
func find(host, path string) (sample, bool) {
	st := site(host)
	if path != "/" {
		path = strings.TrimSuffix(path, "/")
	}
	for _, s := range samples() {
		if site(s.host) == st && s.path == path {
			return s, true
		}
	}
	return sample{}, false
}

// Handler returns the job board. Requests whose URI is in absolute form
// (r.URL.Host set) are proxy requests: they get the sample page for that URL
// or 404, and nothing is ever forwarded. CONNECT is refused with 405.
// Other requests are direct: GET / lists the pages and GET /{host}/{path}
// shows one.
func Handler() http.Handler {
	index := template.Must(template.New("index").Parse(indexPage))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		type link struct{ URL, View, Title string }
		var links []link
		for _, s := range samples() {
			links = append(links, link{URL: s.url(), View: "/" + s.host + s.path, Title: s.title})
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := index.Execute(w, links); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /{host}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		servePage(w, r, r.PathValue("host"), "/"+r.PathValue("path"))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "jobboard: CONNECT is not supported; this offline job board serves its sample pages over plain http only", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Host == "" {
			mux.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "jobboard: only GET and HEAD are supported", http.StatusMethodNotAllowed)
			return
		}
		servePage(w, r, r.URL.Host, r.URL.Path)
	})
}

// servePage writes the sample page for host and path, or 404.
func servePage(w http.ResponseWriter, r *http.Request, host, path string) {
	s, ok := find(host, path)
	if !ok {
		target := (&url.URL{Scheme: "http", Host: host, Path: path}).String()
		http.Error(w, fmt.Sprintf("jobboard: no sample page at %s; this offline job board never forwards requests to the internet", target), http.StatusNotFound)
		return
	}
	body, err := pages.ReadFile(s.file)
	if err != nil {
		http.Error(w, "jobboard: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

const indexPage = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Offline job board</title></head>
<body>
<h1>Offline job board</h1>
<p>These sample postings are what the word-cloud demo fetches instead of the internet.
Give their URLs to the gateway; the links below show the pages themselves.</p>
<ul id="samples">
{{range .}}<li><a href="{{.View}}">{{.Title}}</a><br><code>{{.URL}}</code></li>
{{end}}</ul>
</body>
</html>
`
