package scraper

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/examples/wordcloud/internal/reply"
	"golang.org/x/net/html"
)

// MaxBodyBytes caps a request's form body.
const MaxBodyBytes = 4 << 20

// CodeNoMatch is the error code (422) of a page on which the layout's
// selector matches nothing, or only an empty element.
const CodeNoMatch = "not_a_posting"

// ErrNoMatch means the selector matches no element of the page.
var ErrNoMatch = errors.New("scraper: no element matches the selector")

// Extract returns the text (see Text) of the first element of page that
// sel matches. The error wraps ErrNoMatch when nothing matches; a page too
// broken (or too deeply nested) for the HTML parser gives its parse error.
// An element without text gives "" and no error.
func Extract(page string, sel Selector) (string, error) {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return "", fmt.Errorf("scraper: parse page: %w", err)
	}
	n := sel.First(doc)
	if n == nil {
		return "", fmt.Errorf("%w: %s", ErrNoMatch, sel)
	}
	return Text(n), nil
}

// Handler returns the scraper for layout l: POST /api/v1/words with form
// field html. It panics if l.Validate fails.
func Handler(l Layout) http.Handler {
	if err := l.Validate(); err != nil {
		panic(err)
	}
	sel, _ := ParseSelector(l.Selector)
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/words", func(w http.ResponseWriter, r *http.Request) {
		if !reply.Form(w, r, MaxBodyBytes, "use POST /api/v1/words with form field html") {
			return
		}
		page := r.PostForm.Get("html")
		if strings.TrimSpace(page) == "" {
			reply.Error(w, http.StatusBadRequest, api.CodeInvalidArgument, "the form field html is required and must hold the page's HTML")
			return
		}
		text, err := Extract(page, sel)
		switch {
		case errors.Is(err, ErrNoMatch):
			reply.Error(w, http.StatusUnprocessableEntity, CodeNoMatch, fmt.Sprintf("the page does not look like a %s job posting: it has no %s", l.Site, sel))
			return
		case err != nil:
			reply.Error(w, http.StatusUnprocessableEntity, CodeNoMatch, fmt.Sprintf("the page does not look like a %s job posting: %v", l.Site, err))
			return
		}
		if text == "" {
			reply.Error(w, http.StatusUnprocessableEntity, CodeNoMatch, fmt.Sprintf("the page's %s holds no text", sel))
			return
		}
		reply.JSON(w, http.StatusOK, struct {
			Data string `json:"data"`
		}{text})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply.Error(w, http.StatusNotFound, api.CodeNotFound, "no such endpoint "+r.URL.Path+"; try POST /api/v1/words")
	})
	return mux
}
