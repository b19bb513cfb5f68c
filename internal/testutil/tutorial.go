package testutil

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TutorialOptions configure a TutorialService.
type TutorialOptions struct {
	// Registry is the registry's base URL (http://127.0.0.1:port).
	Registry string
	// Name is the service name it registers.
	Name string
	// URL is the url it advertises; "http://localhost" (the tutorial's)
	// when empty.
	URL string
	// Response is the phrase it answers the challenge with; the
	// tutorial's ("That is why I carry an umbrella") when empty.
	Response string
	// Interval is how often it pings once verified; 0 never.
	Interval time.Duration
	// Silent services listen but never serve: the registry's challenge
	// waits in the listen backlog until the registry gives up.
	Silent bool
	// Hold, when set, is waited on by the verify handler before it
	// answers (or until the registry hangs up).
	Hold <-chan struct{}
}

// TutorialService is a service written as the tutorial's Microservice
// base class is: it listens (Tornado's app.listen), registers with a
// blocking POST to the registry's /api/v1/register/ (requests.post), and
// only once that has returned starts serving (IOLoop.start). So the
// registry's challenge, POSTed to {url}:{port}/api/v1/verify/, waits in
// the listen backlog until the registration has been answered. The verify
// handler keeps the secret it is sent and answers {"name", "url", "port",
// "reply", "secret"}; from then on the service pings every Interval with
// that secret, until StopPinging or the end of the test.
type TutorialService struct {
	// Port is the port it listens on (127.0.0.1, which localhost resolves
	// to first).
	Port int
	// RegisterStatus and RegisterBody are the registry's answer to the
	// registration, which arrived before the service served anything.
	RegisterStatus int
	RegisterBody   []byte
	// Registered is when the registration's answer arrived.
	Registered time.Time

	opts TutorialOptions
	srv  *http.Server
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	secret     string
	challenge  string
	challenges int
	pingOK     int
	pingFailed int
	stopOnce   sync.Once
}

// StartTutorialService runs a TutorialService and returns once its
// registration has been answered (and it has begun to serve, unless
// Silent). It stops serving and pinging when the test ends.
func StartTutorialService(tb testing.TB, opts TutorialOptions) *TutorialService {
	tb.Helper()
	if opts.URL == "" {
		opts.URL = "http://localhost"
	}
	if opts.Response == "" {
		opts.Response = "That is why I carry an umbrella"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &TutorialService{Port: ln.Addr().(*net.TCPAddr).Port, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/verify/", s.verify)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	tb.Cleanup(func() {
		s.StopPinging()
		<-s.done
		s.srv.Close()
		ln.Close()
	})

	// The blocking registration: nothing is served until it returns.
	form := url.Values{"name": {opts.Name}, "url": {opts.URL}, "port": {strconv.Itoa(s.Port)}}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.PostForm(opts.Registry+"/api/v1/register/", form)
	if err != nil {
		close(s.done)
		tb.Fatalf("tutorial service %s: register: %v", opts.Name, err)
	}
	s.RegisterBody, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	s.RegisterStatus, s.Registered = resp.StatusCode, time.Now()

	if !opts.Silent {
		go s.srv.Serve(ln)
	}
	go s.pingLoop()
	return s
}

// verify answers the registry's challenge as the tutorial's base class
// does, keeping the secret for its pings.
func (s *TutorialService) verify(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	secret := r.PostForm.Get("secret")
	s.mu.Lock()
	s.secret, s.challenge = secret, r.PostForm.Get("challenge")
	s.challenges++
	s.mu.Unlock()
	if s.opts.Hold != nil {
		select {
		case <-s.opts.Hold:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"name": s.opts.Name, "url": s.opts.URL, "port": s.Port, "reply": s.opts.Response, "secret": secret})
}

// pingLoop pings every Interval once the service holds a secret.
func (s *TutorialService) pingLoop() {
	defer close(s.done)
	if s.opts.Interval <= 0 {
		return
	}
	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()
	c := &http.Client{Timeout: s.opts.Interval}
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		secret := s.Secret()
		if secret == "" {
			continue
		}
		form := url.Values{"name": {s.opts.Name}, "url": {s.opts.URL}, "port": {strconv.Itoa(s.Port)}, "secret": {secret}}
		resp, err := c.PostForm(s.opts.Registry+"/api/v1/ping/", form)
		ok := err == nil && resp.StatusCode == http.StatusOK
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		s.mu.Lock()
		if ok {
			s.pingOK++
		} else {
			s.pingFailed++
		}
		s.mu.Unlock()
	}
}

// StopPinging stops the pings; the service still serves.
func (s *TutorialService) StopPinging() {
	s.stopOnce.Do(func() { close(s.stop) })
}

// Secret returns the secret of the last challenge received, "" before one.
func (s *TutorialService) Secret() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.secret
}

// Challenge returns the phrase of the last challenge received and how
// many were received.
func (s *TutorialService) Challenge() (phrase string, answered int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.challenge, s.challenges
}

// Pings returns how many pings the registry answered 200, and how many it
// refused (or that failed).
func (s *TutorialService) Pings() (ok, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pingOK, s.pingFailed
}

// TutorialData decodes the registry's {"data": {...}} answer.
func TutorialData(body []byte) (map[string]any, error) {
	var v struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	if v.Data == nil {
		return nil, errors.New("no data field in " + strings.TrimSpace(string(body)))
	}
	return v.Data, nil
}

// TutorialLookup looks service up as the tutorial's clients do (GET
// /api/v1/register/?service_name=...) and returns the status and the
// answer's data.
func TutorialLookup(ctx context.Context, registry, service string) (int, map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, registry+"/api/v1/register/?service_name="+url.QueryEscape(service), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	data, _ := TutorialData(body)
	return resp.StatusCode, data, nil
}
