package scraper

import (
	"fmt"
	"strings"

	"golang.org/x/net/html"
)

// Selector is a parsed simple CSS selector: an optional tag name and at
// most one of an id or a class.
type Selector struct {
	// Tag is the element name in lower case; empty matches any element.
	Tag string
	// ID, when set, must equal the element's id attribute.
	ID string
	// Class, when set, must be one of the element's classes.
	Class string
}

// ParseSelector parses a selector of the form tag#id, tag.class, #id,
// .class or tag. Tag names are letters, digits and '-' starting with a
// letter; ids and classes are letters, digits, '-' and '_'. Anything else
// (combinators, several classes, attributes, pseudo-classes) is an error.
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	rest := s
	i := strings.IndexAny(rest, "#.")
	tag := rest
	if i >= 0 {
		tag, rest = rest[:i], rest[i:]
	} else {
		rest = ""
	}
	if tag != "" {
		if !isTagName(tag) {
			return Selector{}, fmt.Errorf("scraper: selector %q: %q is not a tag name", s, tag)
		}
		sel.Tag = strings.ToLower(tag)
	}
	if rest != "" {
		kind, name := rest[0], rest[1:]
		if !isIdent(name) {
			return Selector{}, fmt.Errorf("scraper: selector %q: %q is not a simple id or class name (only tag#id, tag.class, #id, .class or tag)", s, name)
		}
		if kind == '#' {
			sel.ID = name
		} else {
			sel.Class = name
		}
	}
	if sel == (Selector{}) {
		return Selector{}, fmt.Errorf("scraper: selector %q is empty", s)
	}
	return sel, nil
}

func isTagName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !(letter || i > 0 && (c >= '0' && c <= '9' || c == '-')) {
			return false
		}
	}
	return s != ""
}

func isIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}

// String returns the selector in CSS form.
func (s Selector) String() string {
	switch {
	case s.ID != "":
		return s.Tag + "#" + s.ID
	case s.Class != "":
		return s.Tag + "." + s.Class
	}
	return s.Tag
}

// Match reports whether n is an element the selector matches.
func (s Selector) Match(n *html.Node) bool {
	if n == nil || n.Type != html.ElementNode {
		return false
	}
	if s.Tag != "" && n.Data != s.Tag {
		return false
	}
	if s.ID != "" && attr(n, "id") != s.ID {
		return false
	}
	if s.Class != "" {
		found := false
		for _, c := range strings.Fields(attr(n, "class")) {
			if c == s.Class {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// First returns the first node under root (root included), in document
// order, that the selector matches, or nil.
func (s Selector) First(root *html.Node) *html.Node {
	// An explicit stack: pages are untrusted and may nest deeply.
	stack := []*html.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s.Match(n) {
			return n
		}
		for c := n.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, c)
		}
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val
		}
	}
	return ""
}
