package httpapi

import (
	"bytes"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/registry"
)

// FuzzDecodeRegister feeds arbitrary bodies through the registration
// decoder, and what decodes through the registry's error table: they must
// never panic, and every refusal must be a 4xx with a code and a message.
// (The validator's own invariants are fuzzed in package registry, where it
// moved with the workflows.)
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
		if err := registry.ValidateRegistration(req); err != nil {
			checkErr(t, APIError(err))
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
		if err := (registry.KeySpec{Services: req.Services, Description: req.Description}).Validate(); err != nil {
			checkErr(t, APIError(err))
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
		switch lq.Status {
		case "passing", "critical", "draining", "any":
		default:
			t.Fatalf("parser accepted status %q", lq.Status)
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

// FuzzWatchQuery: any query and Last-Event-ID either parse into valid
// service names and an index, or are a 400 naming the field.
func FuzzWatchQuery(f *testing.F) {
	for _, s := range [][2]string{
		{"service=web&service=db", ""}, {"after=12", ""}, {"after=12", "40"}, {"", "7"}, {"service=Web", ""},
		{"after=-1", ""}, {"after=18446744073709551616", ""}, {"x=1", ""}, {"", "abc"}, {"service=", " 3 "},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, raw, lastID string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		services, after, resume, perr := parseWatchQuery(q, lastID)
		if perr != nil {
			checkErr(t, perr)
			if perr.Field == "" {
				t.Fatalf("error names no field: %+v", perr)
			}
			return
		}
		for _, s := range services {
			if registry.CheckServiceName(s) != nil {
				t.Fatalf("parser accepted service %q", s)
			}
		}
		if !resume && after != 0 {
			t.Fatalf("after %d without resume", after)
		}
		if lastID != "" && !resume {
			t.Fatalf("Last-Event-ID %q accepted without resuming", lastID)
		}
	})
}

// FuzzAuditQuery: any query string either parses into a query the audit
// log accepts (a valid limit, action, outcome and service, a cursor, a
// wait only with one) or is a 400 naming the field; never a panic.
func FuzzAuditQuery(f *testing.F) {
	for _, s := range []string{
		"since=1h&service=web&action=register&outcome=refused&limit=50", "since=2026-12-10T09:00:00Z", "after=1.2.3.4&wait=20s",
		"wait=1s", "limit=0", "limit=1001", "limit=-5", "action=drop", "outcome=maybe", "since=yesterday", "since=-1h",
		"after=1.2.3", "after=01.2.3.4", "service=Web", "x=1", "%zz", "", "wait=11m&after=0.0.0.0", "limit=1e3",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 10, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		aq, wait, perr := parseAuditQuery(q, now)
		if perr != nil {
			checkErr(t, perr)
			if perr.Field == "" {
				t.Fatalf("error names no field: %+v", perr)
			}
			return
		}
		if err := aq.Validate(); err != nil {
			t.Fatalf("parser accepted a query the log refuses: %+v: %v", aq, err)
		}
		if aq.Service != "" && registry.CheckServiceName(aq.Service) != nil {
			t.Fatalf("parser accepted service %q", aq.Service)
		}
		if wait < 0 || wait > registry.MaxWait || (wait > 0 && aq.After == nil) {
			t.Fatalf("parser accepted wait %s with after %v", wait, aq.After)
		}
	})
}
