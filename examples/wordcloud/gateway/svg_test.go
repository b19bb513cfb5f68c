package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/musterhq/muster/client"
	"github.com/musterhq/muster/examples/wordcloud/wordcloud"
)

func TestSanitizeSVG(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // "" when it must fail
		errHas   string
	}{
		{"plain", `<svg xmlns="http://www.w3.org/2000/svg" width="10"><text class="word" x="1.5" y="-2">go &amp; rust</text></svg>`,
			`<svg xmlns="http://www.w3.org/2000/svg" width="10"><text class="word" x="1.5" y="-2">go &amp; rust</text></svg>`, ""},
		{"prolog, comments and doctype dropped", `<?xml version="1.0"?><!DOCTYPE svg><!-- hi --><svg><title>T</title></svg>`,
			`<svg xmlns="http://www.w3.org/2000/svg"><title>T</title></svg>`, ""},
		{"text is re-escaped", `<svg><text>&lt;script&gt;alert(1)&lt;/script&gt;</text></svg>`,
			`<svg xmlns="http://www.w3.org/2000/svg"><text>&lt;script&gt;alert(1)&lt;/script&gt;</text></svg>`, ""},
		{"script element", `<svg><script>alert(1)</script></svg>`, "", "<script>"},
		{"foreignObject", `<svg><foreignObject><div/></foreignObject></svg>`, "", "foreignObject"},
		{"event handler", `<svg onload="alert(1)"></svg>`, "", "onload"},
		{"href", `<svg><a href="javascript:alert(1)">x</a></svg>`, "", "<a>"},
		{"xlink href", `<svg xmlns:xlink="http://www.w3.org/1999/xlink"><text xlink:href="#x">x</text></svg>`, "", "xlink"},
		{"style attribute", `<svg><text style="x">x</text></svg>`, "", "style"},
		{"url in a value", `<svg><rect fill="url(#evil)"/></svg>`, "", "not allowed"},
		{"quote in a value", `<svg><rect fill="&quot;&gt;&lt;script&gt;"/></svg>`, "", "not allowed"},
		{"html namespace", `<svg><h:p xmlns:h="http://www.w3.org/1999/xhtml">x</h:p></svg>`, "", "namespace"},
		{"not svg", `<html><body/></html>`, "", "root"},
		{"two roots", `<svg></svg><svg></svg>`, "", "root"},
		{"text outside", `hello<svg></svg>`, "", "outside"},
		{"unknown entity", `<svg><text>&evil;</text></svg>`, "", "parse"},
		{"unclosed", `<svg><text>`, "", "parse"},
		{"empty", ``, "", "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sanitizeSVG([]byte(tt.in))
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("sanitizeSVG(%q) = %q, %v; want an error about %q", tt.in, got, err, tt.errHas)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("sanitizeSVG(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestSanitizeSVG_Render: whatever the wordcloud package draws passes
// unchanged but for whitespace.
func TestSanitizeSVG_Render(t *testing.T) {
	counts := wordcloud.Frequencies("kubernetes golang golang grpc <b>bold</b> & ampersand façade naïve")
	svg := wordcloud.Render(counts, 0)
	got, err := sanitizeSVG(svg)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != strings.TrimSpace(string(svg)) {
		t.Fatalf("sanitizing changed our own SVG:\n%s\n%s", svg, got)
	}
}

// TestGateway_RogueWordCloud: an SVG with script from a wordcloud instance
// is refused with a message, and none of it reaches the page.
func TestGateway_RogueWordCloud(t *testing.T) {
	rogue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		svg := `<svg xmlns="http://www.w3.org/2000/svg"><script>alert("pwned")</script></svg>`
		json.NewEncoder(w).Encode(map[string]string{"data": base64.StdEncoding.EncodeToString([]byte(svg))})
	}))
	defer rogue.Close()
	ru, _ := url.Parse(rogue.URL)
	// Every request goes to the rogue server, whatever its host.
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host = ru.Scheme, ru.Host
		return http.DefaultTransport.RoundTrip(r)
	})}
	c, _ := client.New(client.Config{})
	res, _ := client.NewResolver(client.ResolverConfig{Client: c})
	g := &gateway{cfg: Config{Resolver: res, HTTPClient: hc}}
	got, err := g.cloud(context.Background(), "some words")
	if err == nil || got != "" || !strings.Contains(err.Error(), "will not show") || !strings.Contains(err.Error(), "<script>") {
		t.Fatalf("cloud() = %q, %v", got, err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func FuzzSanitizeSVG(f *testing.F) {
	f.Add([]byte(`<svg><text class="word" x="1">go</text></svg>`))
	f.Add([]byte(`<svg><script>alert(1)</script></svg>`))
	f.Add(wordcloud.Render(wordcloud.Frequencies("alpha beta beta gamma"), 0))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := sanitizeSVG(in)
		if err != nil {
			return
		}
		// What passes must pass again unchanged, and hold nothing active.
		again, err := sanitizeSVG([]byte(out))
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q → %q, %v", out, again, err)
		}
		tags := tagsOnly(strings.ToLower(string(out)))
		for _, bad := range []string{"<script", "javascript:", " on", "href", "<foreignobject", "url(", "style"} {
			if strings.Contains(tags, bad) {
				t.Fatalf("sanitized output has %q in a tag: %q", bad, out)
			}
		}
	})
}

// tagsOnly returns the tags of s, without the text between them (where
// "on" and the like are harmless words).
func tagsOnly(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		if r == '<' {
			in = true
		}
		if in {
			b.WriteRune(r)
		}
		if r == '>' {
			in = false
		}
	}
	return b.String()
}
