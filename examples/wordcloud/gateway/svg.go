package gateway

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"html/template"
	"io"
	"strings"
)

const svgNamespace = "http://www.w3.org/2000/svg"

// svgElement reports whether an SVG element may appear in the page.
func svgElement(name string) bool {
	switch name {
	case "svg", "g", "title", "desc", "text", "tspan", "rect":
		return true
	}
	return false
}

// svgAttribute reports whether an attribute may appear in the page.
func svgAttribute(name string) bool {
	switch name {
	case "width", "height", "viewBox", "x", "y", "dx", "dy", "rx", "ry",
		"font-size", "font-family", "font-weight", "fill", "stroke", "stroke-width",
		"text-anchor", "class", "data-count", "role", "aria-label", "opacity":
		return true
	}
	return false
}

// safeValue reports whether an attribute value is plain: letters, digits,
// spaces and , . _ # % -. Without ':', '(' or quotes no value can hold a
// URL, a javascript: scheme or a CSS function.
func safeValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" ,._#%-", c) >= 0) {
			return false
		}
	}
	return true
}

// sanitizeSVG rebuilds an SVG document from an allowlist, for embedding
// inline in the page: one <svg> root; only the elements of svgElement and
// the attributes of svgAttribute, with plain values (safeValue); text
// re-escaped; comments, processing instructions and doctypes dropped.
// Anything else (a <script>, an event handler, an href, a foreign
// namespace) makes it fail rather than be quietly dropped: the wordcloud
// service never sends such things, so whoever did is not to be trusted.
func sanitizeSVG(in []byte) (template.HTML, error) {
	d := xml.NewDecoder(bytes.NewReader(in))
	d.Strict = true
	var out strings.Builder
	var stack []string
	roots := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("svg does not parse: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name.Local
			if t.Name.Space != "" && t.Name.Space != svgNamespace {
				return "", fmt.Errorf("svg has an element <%s> in namespace %q", name, t.Name.Space)
			}
			if len(stack) == 0 {
				if name != "svg" || roots > 0 {
					return "", fmt.Errorf("svg must have one <svg> root, found <%s>", name)
				}
				roots++
			}
			if !svgElement(name) {
				return "", fmt.Errorf("svg has a <%s> element, which is not allowed", name)
			}
			out.WriteString("<" + name)
			if len(stack) == 0 {
				out.WriteString(` xmlns="` + svgNamespace + `"`)
			}
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
					continue // namespace declarations; the root's is written above
				}
				if a.Name.Space != "" || !svgAttribute(a.Name.Local) {
					return "", fmt.Errorf("svg element <%s> has an attribute %q, which is not allowed", name, attrName(a.Name))
				}
				if !safeValue(a.Value) {
					return "", fmt.Errorf("svg attribute %s=%q has characters that are not allowed", a.Name.Local, a.Value)
				}
				out.WriteString(" " + a.Name.Local + `="` + a.Value + `"`)
			}
			out.WriteString(">")
			stack = append(stack, name)
		case xml.EndElement:
			// The strict decoder has checked that it matches.
			out.WriteString("</" + stack[len(stack)-1] + ">")
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) > 0 {
					return "", errors.New("svg has text outside its root element")
				}
				continue
			}
			// The strict decoder has rejected characters XML does not allow.
			out.WriteString(template.HTMLEscapeString(string(t)))
		case xml.Comment, xml.ProcInst, xml.Directive:
			// dropped
		}
	}
	if roots == 0 {
		return "", errors.New("svg is empty")
	}
	return template.HTML(out.String()), nil
}

func attrName(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}
