package wordcloud

import (
	"encoding/base64"
	"errors"
	"fmt"
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
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			reply.Error(w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "use POST /api/v1/wordcloud with form field words")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		if err := parseForm(r); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				reply.Error(w, http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge, fmt.Sprintf("the form is larger than %d bytes", MaxBodyBytes))
				return
			}
			reply.Error(w, http.StatusBadRequest, api.CodeInvalidArgument, "cannot read the form: "+err.Error())
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

// parseForm parses an application/x-www-form-urlencoded or
// multipart/form-data body into r.PostForm.
func parseForm(r *http.Request) error {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		return r.ParseMultipartForm(MaxBodyBytes)
	}
	return r.ParseForm()
}
