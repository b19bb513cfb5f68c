// Package servicetest holds the helpers the word-cloud services' tests
// share: posting a form and reading the services' {"data"} or {"error"}
// answer, and checking the status of bare requests. Only _test files
// import it.
//
//	status, data, e := servicetest.PostForm(t, srv.URL+"/api/v1/words", form)
package servicetest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/musterhq/muster/api"
)

// PostForm posts form to u and returns the status and the answer's data
// or error.
func PostForm(tb testing.TB, u string, form url.Values) (int, string, api.ErrorDetail) {
	tb.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data  string
		Error api.ErrorDetail
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, body.Data, body.Error
}

// Route is a bare request and the status it must get.
type Route struct {
	Method, Path string
	Want         int
}

// CheckRoutes sends each route's request, with no body, to base and
// reports the ones answered with another status.
func CheckRoutes(t *testing.T, base string, routes []Route) {
	t.Helper()
	for _, rt := range routes {
		req, _ := http.NewRequest(rt.Method, base+rt.Path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != rt.Want {
			t.Errorf("%s %s = %d, want %d", rt.Method, rt.Path, resp.StatusCode, rt.Want)
		}
	}
}
