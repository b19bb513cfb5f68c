package scraper

import (
	"fmt"
	"net"
	"strings"
)

// ServiceName is the name every scraper registers under; instances differ
// by their MetaSite meta.
const ServiceName = "scraper"

// MetaSite is the meta key that carries the site a scraper instance reads.
const MetaSite = "site"

// Layout is one job site's page layout: where on a posting the job
// description is.
type Layout struct {
	// Site is the site's host without www. (dice.com).
	Site string
	// Selector finds the element holding the description; see
	// ParseSelector for the forms it may take.
	Selector string
}

// Layouts returns the built-in layouts, a fresh slice on each call:
// dice.com reads div#jobdescSec (the tutorial's), jobs.example.com
// div.job-description, and example.org article#posting.
func Layouts() []Layout {
	return []Layout{
		{Site: "dice.com", Selector: "div#jobdescSec"},
		{Site: "jobs.example.com", Selector: "div.job-description"},
		{Site: "example.org", Selector: "article#posting"},
	}
}

// LayoutFor returns the built-in layout for site. The site may be given as
// a host: case, a port and a leading www. are ignored.
func LayoutFor(site string) (Layout, bool) {
	site = Site(site)
	for _, l := range Layouts() {
		if l.Site == site {
			return l, true
		}
	}
	return Layout{}, false
}

// Site returns the site a host belongs to, as scrapers register it: lower
// case, without a port, without a leading www.
func Site(host string) string {
	host = strings.ToLower(strings.TrimSpace(host))
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimPrefix(host, "www.")
}

// Validate reports whether the layout has a site and a selector that
// parses.
func (l Layout) Validate() error {
	if l.Site == "" || l.Site != Site(l.Site) {
		return fmt.Errorf("scraper: layout site %q must be a lower-case host without www. or port", l.Site)
	}
	if _, err := ParseSelector(l.Selector); err != nil {
		return fmt.Errorf("scraper: layout for %s: %w", l.Site, err)
	}
	return nil
}

// Meta returns the registration meta of a scraper for this layout:
// {MetaSite: l.Site}.
func (l Layout) Meta() map[string]string {
	return map[string]string{MetaSite: l.Site}
}
