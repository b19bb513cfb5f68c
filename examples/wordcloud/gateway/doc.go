// Package gateway is the word-cloud demo's web front end, the tutorial's
// "API gateway": a page where a user pastes job posting URLs, one per line,
// and gets back a word cloud of the job descriptions.
//
// It finds every service through the registry and writes no address
// anywhere. For each URL it looks up a scraper for the URL's site
// (ServiceScraper with meta MetaSite=<host without www.>), fetches the page
// through fetch_url, has the chosen scraper instance extract the
// description, and finally has wordcloud draw all the text. fetch_url and
// wordcloud are called by name through the resolver's service-aware HTTP
// client (http://fetch_url/…, http://wordcloud/…); a scraper is called at
// the URL of the instance the lookup returned. Each URL gets its own line
// of result, so a site nobody scrapes yet says "no scraper supports <site>
// yet" instead of failing the whole page.
//
//	c, _ := client.New(client.Config{Addr: os.Getenv("MUSTER_ADDR")})
//	resolver, _ := client.NewResolver(client.ResolverConfig{Client: c})
//	cfg := gateway.DefaultConfig()
//	cfg.Resolver = resolver
//	cfg.Examples = jobboard.SampleURLs()
//	http.ListenAndServe("127.0.0.1:8080", gateway.Handler(cfg))
//
// The SVG from wordcloud is embedded inline, but only after it has been
// rebuilt from an allowlist of elements and attributes: a rogue wordcloud
// instance cannot inject script into the page.
package gateway
