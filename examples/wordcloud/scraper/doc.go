// Package scraper is the word-cloud demo's scraper service: one instance
// per job-site layout, each extracting the job description from a posting's
// HTML, in the shape of the tutorial's dice_scraper.
//
//	POST /api/v1/words   (form field html)
//	200 {"data": "<the description's text, whitespace collapsed>"}
//
// A Layout names the site and a simple CSS selector (tag#id, tag.class,
// #id, .class or tag) for the element that holds the description; the first
// element in document order that matches wins. A page with no such element
// gets 422 ("the page does not look like a dice.com job posting"), a
// missing html field 400, a body over MaxBodyBytes 413.
//
// Each instance registers as ServiceName with the site in its meta, so that
// the gateway finds the right one with a lookup:
//
//	l, _ := scraper.LayoutFor("dice.com")
//	err := client.Serve(ctx, client.ServiceConfig{
//		Name: scraper.ServiceName, Meta: l.Meta(), Address: "127.0.0.1", Port: 8887,
//	}, scraper.Handler(l))
//	// gateway side:
//	res, err := resolver.Lookup(ctx, scraper.ServiceName, client.WithMeta(scraper.MetaSite, "dice.com"))
package scraper
