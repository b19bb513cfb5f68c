package wordcloud

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/examples/wordcloud/internal/reply"
)

// ServiceName is the name the service registers under.
const ServiceName = "wordcloud"

// MaxBodyBytes caps a request's form body.
const MaxBodyBytes = 4 << 20

// CodeNoWords is the error code (422) of a text with no word to draw.
const CodeNoWords = "no_words"

// Handler returns the wordcloud service: POST /api/v1/wordcloud with form
// field words answers {"data": base64 of Render(Frequencies(words),
// DefaultMaxWords)}; a text with no countable word answers 422 "no words to
// draw".
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/wordcloud", func(w http.ResponseWriter, r *http.Request) {
		if !reply.Form(w, r, MaxBodyBytes, "use POST /api/v1/wordcloud with form field words") {
			return
		}
		words, ok := r.PostForm["words"]
		if !ok {
			reply.Error(w, http.StatusBadRequest, api.CodeInvalidArgument, "the form field words is required")
			return
		}
		counts := Frequencies(strings.Join(words, "\n"))
		if len(counts) == 0 {
			reply.Error(w, http.StatusUnprocessableEntity, CodeNoWords, "no words to draw")
			return
		}
		reply.JSON(w, http.StatusOK, struct {
			Data string `json:"data"`
		}{base64.StdEncoding.EncodeToString(Render(counts, DefaultMaxWords))})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply.Error(w, http.StatusNotFound, api.CodeNotFound, "no such endpoint "+r.URL.Path+"; try POST /api/v1/wordcloud")
	})
	return mux
}
