package seedapi

import (
	"net/http"
	"testing"

	"github.com/musterhq/muster/internal/httpapi"
	"github.com/musterhq/muster/internal/registry"
)

// FuzzSeedAddr feeds arbitrary url and port form fields of the tutorial
// protocol to their parser.
func FuzzSeedAddr(f *testing.F) {
	for _, s := range [][2]string{
		{"http://localhost", "8888"}, {"https://127.0.0.1", "443"}, {"http://[::1]", "80"},
		{"http://localhost:80", "80"}, {"ftp://x", "1"}, {"http://x/path", "1"}, {"", ""}, {"http://", "0"},
		{"http://user@host", "1"}, {"http://h?q=1", "1"}, {"%zz", "x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, rawURL, rawPort string) {
		a, err := parseAddr(rawURL, rawPort)
		if err != nil {
			if e := httpapi.APIError(err); e.Status != http.StatusBadRequest || e.Code == "" || e.Message == "" {
				t.Fatalf("bad error %+v", e)
			}
			return
		}
		if h, ok := registry.CanonicalHost(a.Host); a.Port < 1 || a.Port > 65535 || (a.Scheme != "http" && a.Scheme != "https") || !ok || h != a.Host {
			t.Fatalf("parser accepted %+v from %q %q", a, rawURL, rawPort)
		}
	})
}
