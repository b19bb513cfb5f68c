// Package jobboard is the word-cloud demo's offline job board: a handful of
// sample job postings from three fictional layouts of job sites (dice.com,
// jobs.example.com, example.org), served as an HTTP forward proxy so that
// the fetch_url service can fetch "real" URLs without the internet.
//
// Handler answers proxy requests (absolute-form request URIs, as a client
// sends them when its HTTP_PROXY points here) for the sample pages and 404
// for anything else. It refuses CONNECT, so https URLs cannot be tunnelled,
// and it never forwards a request anywhere: the package has no outbound
// HTTP client at all. The same pages are served for direct requests at
// /{host}/{path}, and / lists them, so a browser can view them.
//
//	srv := &http.Server{Addr: "127.0.0.1:8880", Handler: jobboard.Handler()}
//	go srv.ListenAndServe()
//	// in fetch_url's process:
//	hc := fetchurl.NewClient(http.ProxyURL(&url.URL{Scheme: "http", Host: "127.0.0.1:8880"}))
//	// or HTTP_PROXY=http://127.0.0.1:8880 with the default client
//	for _, u := range jobboard.SampleURLs() { ... }
package jobboard
