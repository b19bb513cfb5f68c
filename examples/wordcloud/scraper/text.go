package scraper

import (
	"strings"

	"golang.org/x/net/html"
)

// Text returns the text content of n, as a reader sees it: the text of
// script, style, template and noscript elements and comments is left out,
// block-level elements and <br> separate words (inline ones do not), and
// runs of whitespace collapse to one space.
func Text(n *html.Node) string {
	var b strings.Builder
	type frame struct {
		n    *html.Node
		exit bool
	}
	stack := []frame{{n: n}}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch {
		case f.exit:
			b.WriteByte(' ')
			continue
		case f.n.Type == html.TextNode:
			b.WriteString(f.n.Data)
			continue
		case f.n.Type == html.ElementNode && skipped(f.n.Data):
			continue
		case f.n.Type != html.ElementNode && f.n.Type != html.DocumentNode:
			continue // comments, doctypes
		}
		block := f.n.Type == html.ElementNode && !inline(f.n.Data)
		if block {
			b.WriteByte(' ')
			stack = append(stack, frame{n: f.n, exit: true})
		}
		for c := f.n.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, frame{n: c})
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// skipped reports whether an element's text is not for reading.
func skipped(tag string) bool {
	switch tag {
	case "script", "style", "template", "noscript", "head", "title", "iframe", "object", "svg", "math":
		return true
	}
	return false
}

// inline reports whether an element flows inside a line, so that its text
// joins its neighbours' without a space (<b>Go</b>lang is one word).
func inline(tag string) bool {
	switch tag {
	case "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "i", "kbd",
		"mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var",
		"font", "tt", "big", "strike", "ins", "del", "label":
		return true
	}
	return false
}
