package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/musterhq/muster/api"
)

// FuzzDecodeRegister feeds arbitrary bodies through the registration
// decoder and validator: they must never panic, and every refusal must be a
// 4xx with a code and a message.
func FuzzDecodeRegister(f *testing.F) {
	for _, s := range []string{
		`{"address":"127.0.0.1","port":8888,"scheme":"http","tags":["v2"],"meta":{"site":"dice.com"},"ttl":"10s","verify_path":"/.well-known/muster/verify","nonce":"n"}`,
		`{"address":"localhost","port":1,"ttl":"1h","deregister_after":"2h"}`,
		`{"address":"::1","port":65535,"scheme":"https"}`,
		`{"address":"127.0.0.1","port":80,"bogus":true}`,
		`{"port":"x"}`, `[]`, `null`, `{`, ``, `{"meta":{"":""}}`, `{"ttl":"-1s","address":"a","port":2}`,
		"{\"address\":\"\xff\",\"port\":2}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req api.RegisterRequest
		if err := decodeReader(bytes.NewReader(body), 64<<10, &req); err != nil {
			checkErr(t, err)
			return
		}
		reg, err := validateRegister(req)
		if err != nil {
			checkErr(t, err)
			return
		}
		if reg.ttl < MinTTL || reg.ttl > MaxTTL || reg.deregisterAfter < reg.ttl || reg.Port < 1 || reg.Port > 65535 {
			t.Fatalf("validator accepted %+v", reg)
		}
		if reg.Scheme != "http" && reg.Scheme != "https" {
			t.Fatalf("validator accepted scheme %q", reg.Scheme)
		}
	})
}

// FuzzDecodeCreateKey does the same for POST /v1/keys bodies.
func FuzzDecodeCreateKey(f *testing.F) {
	for _, s := range []string{`{"services":["fetch_*","dice_scraper"]}`, `{"services":[]}`, `{"services":["*"],"description":"x"}`, `{"services":"x"}`, `{}`, `x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req api.CreateKeyRequest
		if err := decodeReader(bytes.NewReader(body), 64<<10, &req); err != nil {
			checkErr(t, err)
			return
		}
		if err := validateCreateKey(&req); err != nil {
			checkErr(t, err)
		}
	})
}

// FuzzLookupQuery feeds arbitrary query strings to the lookup parser.
func FuzzLookupQuery(f *testing.F) {
	for _, s := range []string{"tag=v2&tag=eu", "meta=site:dice.com", "status=any", "status=stale", "meta=x", "x=1", "%zz", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		lq, perr := parseLookupQuery(q)
		if perr != nil {
			checkErr(t, perr)
			return
		}
		switch lq.status {
		case "passing", "critical", "draining", "any":
		default:
			t.Fatalf("parser accepted status %q", lq.status)
		}
	})
}

func checkErr(t *testing.T, e *Error) {
	t.Helper()
	if e.Status < 400 || e.Status >= 500 || e.Code == "" || e.Message == "" {
		t.Fatalf("bad error %+v", e)
	}
	if e.Status != http.StatusBadRequest && e.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("unexpected status %d", e.Status)
	}
}

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
		a, err := parseSeedAddr(rawURL, rawPort)
		if err != nil {
			checkErr(t, err)
			return
		}
		if a.port < 1 || a.port > 65535 || (a.scheme != "http" && a.scheme != "https") || !validHost(a.host) {
			t.Fatalf("parser accepted %+v from %q %q", a, rawURL, rawPort)
		}
	})
}

// FuzzCheckSeedReply feeds arbitrary verify answers of the tutorial
// protocol to their checker: only the right phrase and secret pass.
func FuzzCheckSeedReply(f *testing.F) {
	const phrase, secret = "That is why I carry an umbrella", "s3cret"
	for _, s := range []string{
		`{"name":"a","url":"http://localhost","port":8888,"reply":"That is why I carry an umbrella","secret":"s3cret"}`,
		`{"reply":"That is why I carry an umbrella","secret":"other"}`,
		`{"reply":"nope","secret":"s3cret"}`, `[]`, `null`, `{`, ``, `{"reply":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := checkSeedReply(data, phrase, secret)
		if err == nil {
			var v struct{ Reply, Secret string }
			if json.Unmarshal(data, &v) != nil || v.Reply != phrase || v.Secret != secret {
				t.Fatalf("accepted %q", data)
			}
		}
	})
}
