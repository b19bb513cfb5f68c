package seedapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/api"
	"github.com/musterhq/muster/internal/registry"
	"github.com/musterhq/muster/internal/server"
	"github.com/musterhq/muster/internal/testserver"
	"github.com/musterhq/muster/internal/testutil"
	"github.com/musterhq/muster/internal/verify"
)

// tutorialService is a service written against the tutorial's protocol: it
// answers POST /api/v1/verify/ (form fields challenge and secret) with
// JSON {name, url, port, reply, secret}.
type tutorialService struct {
	srv  *httptest.Server
	name string

	mu        sync.Mutex
	reply     string // the response phrase it answers with
	badSecret bool   // echo a different secret
	secret    string // the secret received in the last callback
	challenge string
	ctype     string
}

func newTutorialService(t *testing.T, name string) *tutorialService {
	s := &tutorialService{name: name, reply: "That is why I carry an umbrella"}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/verify/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/verify/" {
			http.NotFound(w, r)
			return
		}
		r.ParseForm()
		s.mu.Lock()
		s.challenge, s.secret, s.ctype = r.PostForm.Get("challenge"), r.PostForm.Get("secret"), r.Header.Get("Content-Type")
		reply, secret := s.reply, s.secret
		if s.badSecret {
			secret = "not-" + secret
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"name": s.name, "url": "http://localhost", "port": s.port(), "reply": reply, "secret": secret})
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *tutorialService) port() int { return s.srv.Listener.Addr().(*net.TCPAddr).Port }

func (s *tutorialService) last() (challenge, secret, ctype string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.challenge, s.secret, s.ctype
}

// postForm sends a form body exactly as the tutorial's Python services do.
func postForm(t *testing.T, u, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(u, "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func seedLookup(t *testing.T, base, name string) (int, map[string]any, string) {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/register/?service_name=" + url.QueryEscape(name))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data map[string]any `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Data, resp.Header.Get("Content-Type")
}

// lastLine returns the last line of logs that contains substr, or "".
func lastLine(logs, substr string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], substr) {
			return lines[i]
		}
	}
	return ""
}

// waitLookup polls the tutorial's lookup of name until it answers want.
func waitLookup(t *testing.T, base, name string, want int) {
	t.Helper()
	testserver.Eventually(t, 5*time.Second, fmt.Sprintf("the lookup of %s to answer %d", name, want), func() bool {
		status, _, _ := seedLookup(t, base, name)
		return status == want
	})
}

func TestSeedProtocol(t *testing.T) {
	const interval = 300 * time.Millisecond
	h := testserver.NewHarness(t, func(c *server.Config) {
		sc := registry.DefaultSeedConfig()
		sc.HeartbeatInterval = interval
		sc.Services = []string{"fetch_url", "wordcloud"}
		c.Registry.Seed = &sc
	})
	base := h.Srv.URL()
	svc := newTutorialService(t, "fetch_url")
	form := func(kv ...string) string {
		var b strings.Builder
		for i := 0; i < len(kv); i += 2 {
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(kv[i] + "=" + url.QueryEscape(kv[i+1]))
		}
		return b.String()
	}
	port := strconv.Itoa(svc.port())

	// Register: the registry answers at once, then calls the service back
	// and registers it once the answer is right.
	status, body := postForm(t, base+"/api/v1/register/", form("name", "fetch_url", "url", "http://localhost", "port", port))
	if status != 200 {
		t.Fatalf("register: %d %s", status, body)
	}
	if data, err := testutil.TutorialData(body); err != nil || data["status"] != "verifying" || data["url"] != "http://localhost" {
		t.Fatalf("register answer: %s (%v), want data with status verifying", body, err)
	}
	waitLookup(t, base, "fetch_url", 200)
	challenge, secret, ctype := svc.last()
	if challenge != "It jolly well looks like it might rain" || len(secret) < 32 || ctype != "application/x-www-form-urlencoded" {
		t.Fatalf("callback: challenge %q, secret %q, content type %q", challenge, secret, ctype)
	}
	if strings.Contains(string(body), secret) {
		t.Fatal("the session secret leaked into the register answer")
	}

	// Lookup, as the tutorial's clients do it.
	status, data, ct := seedLookup(t, base, "fetch_url")
	if status != 200 || ct != "application/json" || data["name"] != "fetch_url" || data["url"] != "http://localhost" || data["port"] != float64(svc.port()) {
		t.Fatalf("lookup: %d %q %v", status, ct, data)
	}
	// It is an ordinary catalog instance.
	res, err := h.Anon.Lookup(t.Context(), "fetch_url")
	if err != nil || len(res.Instances) != 1 || res.Instances[0].Meta["protocol"] != "seed" || res.Instances[0].TTLMS != 3*interval.Milliseconds() {
		t.Fatalf("/v1 lookup: %+v, %v", res, err)
	}

	// Pings.
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"good", form("name", "fetch_url", "url", "http://localhost", "port", port, "secret", secret), 200},
		{"wrong secret", form("name", "fetch_url", "url", "http://localhost", "port", port, "secret", "guess"), 400},
		{"different port", form("name", "fetch_url", "url", "http://localhost", "port", "1", "secret", secret), 400},
		{"different url", form("name", "fetch_url", "url", "https://localhost", "port", port, "secret", secret), 400},
		{"unknown name", form("name", "dice_scraper", "url", "http://localhost", "port", port, "secret", secret), 400},
		{"missing secret", form("name", "fetch_url", "url", "http://localhost", "port", port), 400},
	} {
		t.Run("ping "+tc.name, func(t *testing.T) {
			if status, body := postForm(t, base+"/api/v1/ping/", tc.body); status != tc.want {
				t.Fatalf("ping: %d %s, want %d", status, body, tc.want)
			}
		})
	}

	// Refused registrations store nothing. A form or an address that is
	// wrong is refused at once (400); a wrong answer to the challenge is
	// known only once the service answers, after the 200, and ends the
	// verification without registering anything.
	other := newTutorialService(t, "wordcloud")
	oport := strconv.Itoa(other.port())
	for _, tc := range []struct {
		name     string
		setup    func()
		body     string
		accepted bool // answered 200, refused by the verification
	}{
		{"wrong phrase", func() { other.reply = "I forgot my umbrella" }, form("name", "wordcloud", "url", "http://localhost", "port", oport), true},
		{"wrong secret", func() { other.reply, other.badSecret = "That is why I carry an umbrella", true }, form("name", "wordcloud", "url", "http://localhost", "port", oport), true},
		{"missing port", nil, form("name", "wordcloud", "url", "http://localhost"), false},
		{"missing name", nil, form("url", "http://localhost", "port", oport), false},
		{"bad port", nil, form("name", "wordcloud", "url", "http://localhost", "port", "eighty"), false},
		{"url with a path", nil, form("name", "wordcloud", "url", "http://localhost/x", "port", oport), false},
		{"outside the allowlist", nil, form("name", "wordcloud", "url", "http://8.8.8.8", "port", oport), false},
	} {
		t.Run("register "+tc.name, func(t *testing.T) {
			if tc.setup != nil {
				other.mu.Lock()
				tc.setup()
				other.mu.Unlock()
			}
			ended := strings.Count(h.Logs.String(), `msg="seed verification ended" service=wordcloud`)
			status, body := postForm(t, base+"/api/v1/register/", tc.body)
			switch {
			case tc.accepted && status == 200:
				testserver.Eventually(t, 5*time.Second, "the verification to end", func() bool {
					return strings.Count(h.Logs.String(), `msg="seed verification ended" service=wordcloud`) > ended
				})
				if line := lastLine(h.Logs.String(), `msg="seed verification ended" service=wordcloud`); !strings.Contains(line, "outcome=refused reason=bad_proof") {
					t.Fatalf("verification ended with %q, want it refused for a bad proof", line)
				}
			case tc.accepted:
				t.Fatalf("register: %d %s, want 200 (accepted for verification)", status, body)
			case status != 400:
				t.Fatalf("register: %d %s, want 400", status, body)
			}
			if status, _, _ := seedLookup(t, base, "wordcloud"); status != 400 {
				t.Fatalf("refused service is looked up: %d", status)
			}
		})
	}

	// An invalid name is refused naming the protocol's field, "name".
	status, body = postForm(t, base+"/api/v1/register/", form("name", "Word.Cloud", "url", "http://localhost", "port", oport))
	var eb api.ErrorBody
	if err := json.Unmarshal(body, &eb); status != 400 || err != nil || eb.Error.Code != api.CodeInvalidArgument || eb.Error.Field != "name" {
		t.Fatalf("register with an invalid name: %d %s, want 400 invalid_argument field name", status, body)
	}

	// Two instances: lookups rotate among them.
	second := newTutorialService(t, "fetch_url")
	if status, body := postForm(t, base+"/api/v1/register/", form("name", "fetch_url", "url", "http://localhost", "port", strconv.Itoa(second.port()))); status != 200 {
		t.Fatalf("second register: %d %s", status, body)
	}
	testserver.Eventually(t, 5*time.Second, "the second instance to be registered", func() bool {
		res, err := h.Anon.Lookup(t.Context(), "fetch_url")
		return err == nil && len(res.Instances) == 2
	})
	_, secret2, _ := second.last()
	seen := map[float64]int{}
	for i := 0; i < 4; i++ {
		_, data, _ := seedLookup(t, base, "fetch_url")
		seen[data["port"].(float64)]++
	}
	if seen[float64(svc.port())] != 2 || seen[float64(second.port())] != 2 {
		t.Fatalf("lookups did not rotate: %v", seen)
	}

	// Keep the second alive; let the first stop pinging. Once its TTL has
	// passed it is never returned again, and when no instance is fresh the
	// lookup answers 400.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				http.Post(base+"/api/v1/ping/", "application/x-www-form-urlencoded",
					strings.NewReader(form("name", "fetch_url", "url", "http://localhost", "port", strconv.Itoa(second.port()), "secret", secret2)))
			}
		}
	}()
	lastPing := time.Now()
	postForm(t, base+"/api/v1/ping/", form("name", "fetch_url", "url", "http://localhost", "port", port, "secret", secret))
	time.Sleep(3*interval + 100*time.Millisecond)
	for i := 0; i < 6; i++ {
		_, data, _ := seedLookup(t, base, "fetch_url")
		if data["port"] != float64(second.port()) {
			t.Fatalf("lookup %s after the last ping returned the expired instance: %v", time.Since(lastPing), data)
		}
	}
	close(stop)
	wg.Wait()
	stoppedAt := time.Now()
	deadline := stoppedAt.Add(5 * time.Second)
	for {
		status, _, _ := seedLookup(t, base, "fetch_url")
		if status == 400 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lookup still answers 200 long after every instance stopped pinging")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(stoppedAt); d > 3*interval+2*time.Second {
		t.Fatalf("lookup went on answering for %s", d)
	}
	if status, _, _ := seedLookup(t, base, "never_registered"); status != 400 {
		t.Fatalf("unknown service: %d", status)
	}
}

// TestSeedProtocol_OffByDefault: without --seed-compat the tutorial's paths
// do not exist.
func TestSeedProtocol_OffByDefault(t *testing.T) {
	h := testserver.NewHarness(t, nil)
	status, _ := postForm(t, h.Srv.URL()+"/api/v1/register/", "name=a&url=http%3A%2F%2Flocalhost&port=1")
	if status != 404 {
		t.Fatalf("seed register without --seed-compat: %d", status)
	}
}

// TestSeedProtocol_Scope: without an enrolment key, the tutorial protocol
// registers only names in --seed-services, and never joins a service that
// is registered through /v1.
func TestSeedProtocol_Scope(t *testing.T) {
	h := testserver.NewHarness(t, func(c *server.Config) {
		sc := registry.DefaultSeedConfig()
		sc.Services = []string{"fetch_*", "payments"}
		c.Registry.Seed = &sc
	})
	ctx := t.Context()
	k := h.Key(t, "payments")
	owner := testutil.NewInstance(t, k.Secret, verify.Proof)
	if _, err := h.Anon.Register(ctx, "payments", k.Secret, api.RegisterRequest{Address: "127.0.0.1", Port: owner.Port()}); err != nil {
		t.Fatal(err)
	}
	svc := newTutorialService(t, "x")
	port := strconv.Itoa(svc.port())
	for _, tc := range []struct {
		name string
		want int
		code string
	}{
		{"wordcloud", 400, api.CodeForbidden}, // outside --seed-services
		{"payments", 400, api.CodeForbidden},  // a /v1 service
		{"fetch_url", 200, ""},
	} {
		status, body := postForm(t, h.Srv.URL()+"/api/v1/register/", "name="+tc.name+"&url=http%3A%2F%2Flocalhost&port="+port)
		if status != tc.want {
			t.Fatalf("register %s: %d %s, want %d", tc.name, status, body, tc.want)
		}
		if tc.code != "" {
			var eb api.ErrorBody
			if json.Unmarshal(body, &eb); eb.Error.Code != tc.code || eb.Error.Field != "name" {
				t.Fatalf("register %s: %s, want code %s on field name", tc.name, body, tc.code)
			}
		}
	}
	res, err := h.Anon.Lookup(ctx, "payments")
	if err != nil || len(res.Instances) != 1 || res.Instances[0].Port != owner.Port() {
		t.Fatalf("payments after the attempt: %+v, %v", res, err)
	}
	// A rolling restart deregisters every /v1 instance of payments before
	// registering again: the keyless protocol still cannot take the name.
	if err := h.Admin.Deregister(ctx, res.Instances[0].ID, h.AdminToken(t)); err != nil {
		t.Fatal(err)
	}
	status, body := postForm(t, h.Srv.URL()+"/api/v1/register/", "name=payments&url=http%3A%2F%2Flocalhost&port="+port)
	if status != 400 {
		t.Fatalf("squatting payments while it has no instance: %d %s", status, body)
	}
	if res, err := h.Anon.Lookup(ctx, "payments"); err == nil && len(res.Instances) != 0 {
		t.Fatalf("payments serves %+v after a squatting attempt", res.Instances)
	}
	// Nor does /v1 join a service of the tutorial protocol.
	k2 := h.Key(t, "fetch_url")
	other := testutil.NewInstance(t, k2.Secret, verify.Proof)
	status, eb, raw := h.Post(t, "fetch_url", k2.Secret, testserver.RegBody(t, api.RegisterRequest{Address: "127.0.0.1", Port: other.Port()}))
	if status != 409 || eb.Error.Code != api.CodeConflict {
		t.Fatalf("/v1 joining a seed service: %d %s", status, raw)
	}
}
